package trace

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// Filter is a compiled filter expression. A nil *Filter matches everything.
//
// The language, close to Wireshark's display filters:
//
//	expr    = or
//	or      = and { ("or" | "||") and }
//	and     = unary { ("and" | "&&") unary }
//	unary   = ("not" | "!") unary | "(" expr ")" | test
//	test    = PROTOCOL | FIELD OP VALUE
//	OP      = "==" | "=" | "!=" | "<" | "<=" | ">" | ">="
//
// PROTOCOL is one of eth, arp, ip, ipv6, icmp, icmpv6, udp, tcp, dhcp, rhcp,
// tunnel, malformed, truncated. FIELD is one of the names of FilterFields.
// A test on a field is false for a packet without that field's protocol, and
// "!=" means "has the field and no value of it equals" (ip.addr != X is true
// when neither source nor destination is X).
type Filter struct {
	src  string
	root node
}

// String returns the expression the filter was parsed from.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	return f.src
}

// Match reports whether s passes the filter; ifs is the ring's interface
// table (for node and iface tests).
func (f *Filter) Match(s *Summary, ifs []Interface) bool {
	if f == nil {
		return true
	}
	return f.root.match(s, ifs)
}

// SyntaxError is a filter that does not parse; Pos is the byte offset of the
// offending token, for a marker under the text the user typed.
type SyntaxError struct {
	Pos int
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filter: column %d: %s", e.Pos+1, e.Msg)
}

type node interface {
	match(s *Summary, ifs []Interface) bool
}

type andNode struct{ a, b node }
type orNode struct{ a, b node }
type notNode struct{ a node }
type flagNode struct{ need Flags }

func (n andNode) match(s *Summary, ifs []Interface) bool {
	return n.a.match(s, ifs) && n.b.match(s, ifs)
}
func (n orNode) match(s *Summary, ifs []Interface) bool {
	return n.a.match(s, ifs) || n.b.match(s, ifs)
}
func (n notNode) match(s *Summary, ifs []Interface) bool { return !n.a.match(s, ifs) }
func (n flagNode) match(s *Summary, _ []Interface) bool  { return s.Flags&n.need != 0 }

// protocols maps the bare protocol words to the layer flags they test.
var protocols = map[string]Flags{
	"eth": HasEthernet, "arp": HasARP, "ip": HasIPv4, "ipv4": HasIPv4, "ipv6": HasIPv6, "ip6": HasIPv6,
	"icmp": HasICMPv4, "icmpv6": HasICMPv6, "udp": HasUDP, "tcp": HasTCP,
	"dhcp": HasDHCP, "bootp": HasDHCP, "rhcp": HasRHCP, "tunnel": HasTunnel,
	"malformed": Malformed, "truncated": Truncated,
}

type fieldKind uint8

const (
	kindNum fieldKind = iota
	kindAddr
	kindName
)

// field describes one comparable field: which layers it needs and how to read
// it (up to two values: ip.addr is source or destination).
type field struct {
	need  Flags
	kind  fieldKind
	enum  map[string]uint64
	nums  func(s *Summary) (a, b uint64, two bool)
	addrs func(s *Summary) (a, b netip.Addr)
	name  func(s *Summary, ifs []Interface) string
	doc   string
}

func one(f func(s *Summary) uint64) func(s *Summary) (uint64, uint64, bool) {
	return func(s *Summary) (uint64, uint64, bool) { return f(s), 0, false }
}

func ports(s *Summary) (uint64, uint64, bool) { return uint64(s.SrcPort), uint64(s.DstPort), true }

var dhcpTypes = map[string]uint64{
	"discover": 1, "offer": 2, "request": 3, "decline": 4, "ack": 5, "nak": 6, "release": 7, "inform": 8,
	"forcerenew": 9,
}

var dirs = map[string]uint64{"in": 1, "out": 2, "other": 3, "bcast": 4, "broadcast": 4}

func ifaceOf(s *Summary, ifs []Interface) Interface {
	if int(s.Iface) < len(ifs) {
		return ifs[s.Iface]
	}
	return Interface{}
}

// fields is the table of comparable fields; FilterFields lists its names.
var fields = map[string]field{
	"ip.addr":      {need: HasIPv4 | HasIPv6, kind: kindAddr, addrs: func(s *Summary) (netip.Addr, netip.Addr) { return s.SrcAddr(), s.DstAddr() }, doc: "source or destination IP address, or a prefix"},
	"ip.src":       {need: HasIPv4 | HasIPv6, kind: kindAddr, addrs: func(s *Summary) (netip.Addr, netip.Addr) { return s.SrcAddr(), netip.Addr{} }, doc: "source IP address or prefix"},
	"ip.dst":       {need: HasIPv4 | HasIPv6, kind: kindAddr, addrs: func(s *Summary) (netip.Addr, netip.Addr) { return s.DstAddr(), netip.Addr{} }, doc: "destination IP address or prefix"},
	"arp.addr":     {need: HasARP, kind: kindAddr, addrs: func(s *Summary) (netip.Addr, netip.Addr) { return s.SrcAddr(), s.DstAddr() }, doc: "ARP sender or target protocol address"},
	"port":         {need: HasUDP | HasTCP, nums: ports, doc: "UDP or TCP source or destination port"},
	"udp.port":     {need: HasUDP, nums: ports, doc: "UDP source or destination port"},
	"udp.srcport":  {need: HasUDP, nums: one(func(s *Summary) uint64 { return uint64(s.SrcPort) }), doc: "UDP source port"},
	"udp.dstport":  {need: HasUDP, nums: one(func(s *Summary) uint64 { return uint64(s.DstPort) }), doc: "UDP destination port"},
	"tcp.port":     {need: HasTCP, nums: ports, doc: "TCP source or destination port"},
	"tcp.srcport":  {need: HasTCP, nums: one(func(s *Summary) uint64 { return uint64(s.SrcPort) }), doc: "TCP source port"},
	"tcp.dstport":  {need: HasTCP, nums: one(func(s *Summary) uint64 { return uint64(s.DstPort) }), doc: "TCP destination port"},
	"icmp.type":    {need: HasICMPv4 | HasICMPv6, nums: one(func(s *Summary) uint64 { return uint64(s.Type) }), doc: "ICMP or ICMPv6 type"},
	"len":          {nums: one(func(s *Summary) uint64 { return uint64(s.Len) }), doc: "frame length on the wire"},
	"frame.len":    {nums: one(func(s *Summary) uint64 { return uint64(s.Len) }), doc: "frame length on the wire"},
	"dir":          {enum: dirs, nums: one(func(s *Summary) uint64 { return uint64(s.Dir) }), doc: "direction: in, out, other, bcast"},
	"node":         {kind: kindName, name: func(s *Summary, ifs []Interface) string { return ifaceOf(s, ifs).Node }, doc: "node the frame was captured on"},
	"iface":        {kind: kindName, name: func(s *Summary, ifs []Interface) string { return ifaceOf(s, ifs).Name }, doc: "interface the frame was captured on"},
	"dhcp.xid":     {need: HasDHCP, nums: one(func(s *Summary) uint64 { return uint64(s.ID) }), doc: "DHCP transaction ID"},
	"dhcp.type":    {need: HasDHCP, enum: dhcpTypes, nums: one(func(s *Summary) uint64 { return uint64(s.Type) }), doc: "DHCP message type: discover, offer, request, decline, ack, nak, release, inform, forcerenew"},
	"dhcp.addr":    {need: HasDHCP, kind: kindAddr, addrs: func(s *Summary) (netip.Addr, netip.Addr) { return s.AuxAddr(), netip.Addr{} }, doc: "address a DHCP message is about (yiaddr, requested, ciaddr)"},
	"dhcp.server":  {need: HasDHCP, kind: kindAddr, addrs: func(s *Summary) (netip.Addr, netip.Addr) { return s.DHCPServer(), netip.Addr{} }, doc: "DHCP server identifier (option 54)"},
	"rhcp.type":    {need: HasRHCP, enum: rhcpTypeValues, nums: one(func(s *Summary) uint64 { return uint64(s.Type) }), doc: "RHCP message type: probe, stop"},
	"rhcp.addr":    {need: HasRHCP, kind: kindAddr, addrs: func(s *Summary) (netip.Addr, netip.Addr) { return s.AuxAddr(), netip.Addr{} }, doc: "maintenance address an RHCP message carries"},
	"rhcp.client":  {need: HasRHCP, kind: kindName, name: func(s *Summary, _ []Interface) string { return s.ClientID() }, doc: "RHCP client ID (ESN; the first 16 bytes)"},
	"tunnel.index": {need: HasTunnel, nums: one(func(s *Summary) uint64 { return uint64(s.ID) }), doc: "tunnel index (the server's index, in both directions once the establishment response was seen)"},
	"tunnel.type":  {need: HasTunnel, enum: tunnelTypeValues, nums: one(func(s *Summary) uint64 { return uint64(s.Type) }), doc: "tunnel message type"},
}

// FilterFields lists the field names the language knows, with a line of
// help each, for completion and the help screen.
func FilterFields() map[string]string {
	out := make(map[string]string, len(fields)+len(protocols))
	for k, f := range fields {
		out[k] = f.doc
	}
	for k := range protocols {
		out[k] = "packets that carry " + k
	}
	return out
}

type op uint8

const (
	opEq op = iota
	opNe
	opLt
	opLe
	opGt
	opGe
)

type cmpNode struct {
	f      *field
	op     op
	num    uint64
	prefix netip.Prefix
	str    string
}

func (n *cmpNode) match(s *Summary, ifs []Interface) bool {
	if n.f.need != 0 && s.Flags&n.f.need == 0 {
		return false
	}
	switch n.f.kind {
	case kindName:
		eq := n.f.name(s, ifs) == n.str
		return eq == (n.op == opEq)
	case kindAddr:
		a, b := n.f.addrs(s)
		eq := a.IsValid() && n.prefix.Contains(a) || b.IsValid() && n.prefix.Contains(b)
		if !a.IsValid() && !b.IsValid() {
			return false
		}
		return eq == (n.op == opEq)
	}
	a, b, two := n.f.nums(s)
	if n.op == opNe {
		return a != n.num && (!two || b != n.num)
	}
	return n.cmp(a) || two && n.cmp(b)
}

func (n *cmpNode) cmp(v uint64) bool {
	switch n.op {
	case opEq:
		return v == n.num
	case opLt:
		return v < n.num
	case opLe:
		return v <= n.num
	case opGt:
		return v > n.num
	case opGe:
		return v >= n.num
	}
	return false
}

// ---- lexer ----

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokWord
	tokOp
	tokAnd
	tokOr
	tokNot
	tokLParen
	tokRParen
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == ':' || c == '/' || c == '-'
}

func isOpByte(c byte) bool { return c == '=' || c == '!' || c == '<' || c == '>' }

func lex(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			toks = append(toks, token{tokLParen, "(", i})
			i++
		case c == ')':
			toks = append(toks, token{tokRParen, ")", i})
			i++
		case c == '&' || c == '|':
			if i+1 >= len(src) || src[i+1] != c {
				return nil, &SyntaxError{i, fmt.Sprintf("%q must be doubled (%s%s), or use %q", c, string(c), string(c), map[byte]string{'&': "and", '|': "or"}[c])}
			}
			k := map[byte]tokKind{'&': tokAnd, '|': tokOr}[c]
			toks = append(toks, token{k, src[i : i+2], i})
			i += 2
		case isOpByte(c):
			// Take the whole run of operator characters, so "=>" is
			// reported as one unknown operator rather than two tokens.
			j := i
			for j < len(src) && isOpByte(src[j]) {
				j++
			}
			if strings.Trim(src[i:j], "!") == "" {
				for ; i < j; i++ {
					toks = append(toks, token{tokNot, "!", i})
				}
				continue
			}
			toks = append(toks, token{tokOp, src[i:j], i})
			i = j
		case c == '"':
			j := strings.IndexByte(src[i+1:], '"')
			if j < 0 {
				return nil, &SyntaxError{i, "unterminated string"}
			}
			toks = append(toks, token{tokWord, src[i+1 : i+1+j], i})
			i += j + 2
		case isWordByte(c):
			j := i
			for j < len(src) && isWordByte(src[j]) {
				j++
			}
			w := src[i:j]
			switch strings.ToLower(w) {
			case "and":
				toks = append(toks, token{tokAnd, w, i})
			case "or":
				toks = append(toks, token{tokOr, w, i})
			case "not":
				toks = append(toks, token{tokNot, w, i})
			default:
				toks = append(toks, token{tokWord, w, i})
			}
			i = j
		default:
			return nil, &SyntaxError{i, fmt.Sprintf("unexpected character %q", c)}
		}
	}
	return append(toks, token{tokEOF, "", len(src)}), nil
}

// ---- parser ----

type parser struct {
	toks  []token
	i     int
	depth int
}

// maxDepth bounds nesting so a pathological expression cannot exhaust the stack.
const maxDepth = 100

// ParseFilter compiles a filter expression. An empty (or blank) expression
// gives a nil filter, which matches everything. Errors are *SyntaxError.
func ParseFilter(src string) (*Filter, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	root, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		if t.kind == tokRParen {
			return nil, &SyntaxError{t.pos, "unbalanced )"}
		}
		return nil, &SyntaxError{t.pos, fmt.Sprintf("expected and, or or the end, found %q", t.text)}
	}
	return &Filter{src: src, root: root}, nil
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *parser) or() (node, error) {
	a, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek().kind == tokOr {
		p.next()
		b, err := p.and()
		if err != nil {
			return nil, err
		}
		a = orNode{a, b}
	}
	return a, nil
}

func (p *parser) and() (node, error) {
	a, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peek().kind == tokAnd {
		p.next()
		b, err := p.unary()
		if err != nil {
			return nil, err
		}
		a = andNode{a, b}
	}
	return a, nil
}

func (p *parser) unary() (node, error) {
	p.depth++
	defer func() { p.depth-- }()
	t := p.peek()
	if p.depth > maxDepth {
		return nil, &SyntaxError{t.pos, "expression nested too deeply"}
	}
	switch t.kind {
	case tokNot:
		p.next()
		a, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notNode{a}, nil
	case tokLParen:
		p.next()
		a, err := p.or()
		if err != nil {
			return nil, err
		}
		if c := p.peek(); c.kind != tokRParen {
			return nil, &SyntaxError{c.pos, fmt.Sprintf("expected ) to close the ( at column %d", t.pos+1)}
		}
		p.next()
		return a, nil
	case tokWord:
		return p.test()
	case tokEOF:
		return nil, &SyntaxError{t.pos, "expression ends too early: expected a protocol or a field test"}
	}
	return nil, &SyntaxError{t.pos, fmt.Sprintf("expected a protocol or a field test, found %q", t.text)}
}

func (p *parser) test() (node, error) {
	w := p.next()
	name := strings.ToLower(w.text)
	if p.peek().kind != tokOp {
		if fl, ok := protocols[name]; ok {
			return flagNode{fl}, nil
		}
		if _, ok := fields[name]; ok {
			return nil, &SyntaxError{p.peek().pos, fmt.Sprintf("%s needs a comparison, e.g. %s==VALUE", name, name)}
		}
		return nil, &SyntaxError{w.pos, fmt.Sprintf("unknown protocol %q (known: %s)", w.text, knownProtocols())}
	}
	f, ok := fields[name]
	if !ok {
		return nil, &SyntaxError{w.pos, fmt.Sprintf("unknown field %q (known: %s)", w.text, knownFields())}
	}
	ot := p.next()
	o, ok := map[string]op{"==": opEq, "=": opEq, "!=": opNe, "<": opLt, "<=": opLe, ">": opGt, ">=": opGe}[ot.text]
	if !ok {
		return nil, &SyntaxError{ot.pos, fmt.Sprintf("unknown operator %q", ot.text)}
	}
	vt := p.next()
	if vt.kind != tokWord {
		return nil, &SyntaxError{vt.pos, fmt.Sprintf("expected a value after %s", ot.text)}
	}
	n := &cmpNode{f: &f, op: o}
	if f.kind != kindNum && o != opEq && o != opNe {
		return nil, &SyntaxError{ot.pos, fmt.Sprintf("%s compares only with == or !=", name)}
	}
	switch f.kind {
	case kindName:
		n.str = vt.text
	case kindAddr:
		pfx, err := parsePrefix(vt.text)
		if err != nil {
			return nil, &SyntaxError{vt.pos, fmt.Sprintf("%s wants an IP address or prefix, not %q", name, vt.text)}
		}
		n.prefix = pfx
	default:
		v, err := parseNum(vt.text, f.enum)
		if err != nil {
			return nil, &SyntaxError{vt.pos, fmt.Sprintf("%s wants %s, not %q", name, numWant(f.enum), vt.text)}
		}
		n.num = v
	}
	return n, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func parseNum(s string, enum map[string]uint64) (uint64, error) {
	if v, ok := enum[strings.ToLower(s)]; ok {
		return v, nil
	}
	return strconv.ParseUint(s, 0, 32)
}

func numWant(enum map[string]uint64) string {
	if len(enum) == 0 {
		return "a number"
	}
	names := make([]string, 0, len(enum))
	for k := range enum {
		names = append(names, k)
	}
	sort.Strings(names)
	return "a number or one of " + strings.Join(names, ", ")
}

func knownProtocols() string {
	names := make([]string, 0, len(protocols))
	for k := range protocols {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func knownFields() string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
