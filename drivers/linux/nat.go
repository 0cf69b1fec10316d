package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fieldcon/fieldcon/engine"
)

var _ engine.NATHost = (*Host)(nil)

// ifname is an interface name as nftables compares it: IFNAMSIZ bytes,
// NUL padded.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// matchIface is `iifname NAME` or `oifname NAME`.
func matchIface(key expr.MetaKey, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)},
	}
}

// matchSource is `ip saddr PREFIX`.
func matchSource(p netip.Prefix) []expr.Any {
	p = p.Masked()
	mask := net.CIDRMask(p.Bits(), 32)
	return []expr.Any{
		// IPv4 source address: network header offset 12, 4 bytes (RFC 791).
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
	}
}

func port(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

// natRules is the expression list of the one postrouting rule of m.
func natRules(m engine.Masquerade) ([]expr.Any, error) {
	if !m.Source.Addr().Is4() || (m.To.IsValid() && !m.To.Is4()) {
		return nil, fmt.Errorf("source NAT is IPv4 only here; got source %s to %s", m.Source, m.To)
	}
	if m.PortMin > m.PortMax || (m.PortMin == 0) != (m.PortMax == 0) {
		return nil, fmt.Errorf("port range %d-%d is not a range", m.PortMin, m.PortMax)
	}
	ex := matchSource(m.Source)
	if m.OutIface != "" {
		ex = append(ex, matchIface(expr.MetaKeyOIFNAME, m.OutIface)...)
	}
	if m.PortMin != 0 {
		ex = append(ex,
			&expr.Immediate{Register: 2, Data: port(m.PortMin)},
			&expr.Immediate{Register: 3, Data: port(m.PortMax)})
	}
	if !m.To.IsValid() {
		masq := &expr.Masq{}
		if m.PortMin != 0 {
			masq.ToPorts, masq.RegProtoMin, masq.RegProtoMax = true, 2, 3
		}
		return append(ex, masq), nil
	}
	nat := &expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, Specified: true}
	if m.PortMin != 0 {
		nat.RegProtoMin, nat.RegProtoMax = 2, 3
	}
	return append(ex, &expr.Immediate{Register: 1, Data: m.To.AsSlice()}, nat), nil
}

// replaceTable queues creating table name afresh: add (so the delete cannot
// fail), delete, add again — one atomic batch, so a restarted role never
// stacks duplicate rules.
func replaceTable(c *nftables.Conn, name string) *nftables.Table {
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: name}
	c.AddTable(t)
	c.DelTable(t)
	return c.AddTable(t)
}

func (h *Host) nft() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(h.ns)))
	if err != nil {
		return nil, fmt.Errorf("nftables in netns %q: %w", h.name, err)
	}
	return c, nil
}

// removeTable returns the function that deletes table name, once; a table
// already gone is not an error.
func (h *Host) removeTable(name string) func() error {
	var (
		once sync.Once
		err  error
	)
	return func() error {
		once.Do(func() {
			c, cerr := h.nft()
			if cerr != nil {
				err = cerr
				return
			}
			c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: name})
			if ferr := c.Flush(); ferr != nil && !errors.Is(ferr, unix.ENOENT) {
				err = fmt.Errorf("nft delete table ip %s in netns %q: %w", name, h.name, ferr)
			}
		})
		return err
	}
}

// AddMasquerade adds source NAT for packets from m.Source leaving through
// m.OutIface, in a table of its own, fieldcon-NAME. The returned function
// deletes that table.
//
// Equivalent to: `nft add table ip fieldcon-$name; nft add chain ip
// fieldcon-$name postrouting { type nat hook postrouting priority srcnat; };
// nft add rule ip fieldcon-$name postrouting ip saddr $src oifname $out
// masquerade` (or `snat to $to[:$min-$max]`)
func (h *Host) AddMasquerade(m engine.Masquerade) (func() error, error) {
	name := "fieldcon-" + m.Name
	ex, err := natRules(m)
	if err != nil {
		return nil, fmt.Errorf("nft table ip %s: %w", name, err)
	}
	c, err := h.nft()
	if err != nil {
		return nil, err
	}
	t := replaceTable(c, name)
	ch := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex})
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("nft add rule ip %s postrouting ip saddr %s oifname %s masquerade in netns %q: %w", name, m.Source, m.OutIface, h.name, err)
	}
	return h.removeTable(name), nil
}

// AddForwardFilter lets new forwarded flows from f.InIface to f.OutIface
// through only to the UDP ports in f.AllowUDP; replies and related traffic
// pass (conntrack state). It lives in table fieldcon-NAME; the returned
// function deletes that table.
//
// Equivalent to: `nft add chain ip fieldcon-$name forward { type filter hook
// forward priority filter; }; nft add rule ... ct state established,related
// accept; ... iifname $in oifname $out udp dport $port accept; ... iifname
// $in oifname $out drop`
func (h *Host) AddForwardFilter(f engine.ForwardFilter) (func() error, error) {
	name := "fieldcon-" + f.Name
	c, err := h.nft()
	if err != nil {
		return nil, err
	}
	t := replaceTable(c, name)
	ch := c.AddChain(&nftables.Chain{
		Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter,
	})
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	state := make([]byte, 4)
	binary.NativeEndian.PutUint32(state, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: state, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		accept,
	}})
	dir := append(matchIface(expr.MetaKeyIIFNAME, f.InIface), matchIface(expr.MetaKeyOIFNAME, f.OutIface)...)
	for _, p := range f.AllowUDP {
		ex := append(append([]expr.Any{}, dir...),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			// UDP destination port: transport header offset 2 (RFC 768).
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port(p)},
			accept)
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: ex})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(append([]expr.Any{}, dir...), &expr.Verdict{Kind: expr.VerdictDrop})})
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("nft add chain ip %s forward in netns %q: %w", name, h.name, err)
	}
	return h.removeTable(name), nil
}

// tcpStates names conntrack's TCP states (enum tcp_conntrack in
// include/uapi/linux/netfilter/nf_conntrack_tcp.h) as `conntrack -L` does.
var tcpStates = []string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

func addrPort(ip net.IP, p uint16) netip.AddrPort { return netip.AddrPortFrom(fromIP(ip), p) }

func toFlow(f *netlink.ConntrackFlow) engine.ConntrackFlow {
	out := engine.ConntrackFlow{
		Protocol:     f.Forward.Protocol,
		OrigSrc:      addrPort(f.Forward.SrcIP, f.Forward.SrcPort),
		OrigDst:      addrPort(f.Forward.DstIP, f.Forward.DstPort),
		ReplySrc:     addrPort(f.Reverse.SrcIP, f.Reverse.SrcPort),
		ReplyDst:     addrPort(f.Reverse.DstIP, f.Reverse.DstPort),
		PacketsOrig:  f.Forward.Packets,
		BytesOrig:    f.Forward.Bytes,
		PacketsReply: f.Reverse.Packets,
		BytesReply:   f.Reverse.Bytes,
		Timeout:      f.TimeOut,
	}
	if tcp, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP); ok && int(tcp.State) < len(tcpStates) {
		out.State = tcpStates[tcp.State]
	}
	return out
}

// Conntrack lists the namespace's IPv4 connection tracking entries that
// match f.
//
// Equivalent to: `ip netns exec $ns conntrack -L -f ipv4 [-s $src] [-p $proto]`
func (h *Host) Conntrack(f engine.ConntrackFilter) ([]engine.ConntrackFlow, error) {
	list, err := retryDump(func() ([]*netlink.ConntrackFlow, error) {
		return h.handle.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_V4)
	})
	if err != nil {
		return nil, fmt.Errorf("conntrack -L in netns %q: %w", h.name, err)
	}
	var out []engine.ConntrackFlow
	for _, fl := range list {
		if e := toFlow(fl); f.Matches(e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// ctFilter adapts engine.ConntrackFilter to netlink's delete filter.
type ctFilter engine.ConntrackFilter

func (f ctFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	return engine.ConntrackFilter(f).Matches(toFlow(fl))
}

// DeleteConntrack removes the matching IPv4 entries and says how many went.
//
// Equivalent to: `ip netns exec $ns conntrack -D -f ipv4 [-s $src] [-p $proto]`
func (h *Host) DeleteConntrack(f engine.ConntrackFilter) (int, error) {
	n, err := h.handle.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.FAMILY_V4, ctFilter(f))
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return int(n), fmt.Errorf("conntrack -D in netns %q: %w", h.name, err)
	}
	return int(n), nil
}
