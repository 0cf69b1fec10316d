package rhcp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Port is the default UDP port of RHCP on servers and devices
// (docs/protocols/rhcp.md "Transport").
const Port = 6655

// Wire constants (docs/protocols/rhcp.md "Message").
const (
	Version    = 1
	headerLen  = 8
	macLen     = sha256.Size
	MinLen     = headerLen + macLen
	MaxLen     = 1400
	maxRoutes  = 16
	maxIDLen   = 64
	magic0     = 'R'
	magic1     = 'H'
	skewWindow = 30 * time.Second
)

// Type is a message type.
type Type uint8

// Message types.
const (
	TypeProbe   Type = 1
	TypeStop    Type = 2
	TypeRelease Type = 3
	TypeAck     Type = 4
)

func (t Type) String() string {
	switch t {
	case TypeProbe:
		return "probe"
	case TypeStop:
		return "stop"
	case TypeRelease:
		return "release"
	case TypeAck:
		return "ack"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// TLV types.
const (
	tlvClientID    = 1
	tlvAddress     = 2
	tlvGateway     = 3
	tlvRoute       = 4
	tlvServer      = 5
	tlvDHCPServer  = 6
	tlvSequence    = 7
	tlvValidity    = 8
	tlvFormal      = 9
	tlvAckSequence = 10
)

// Errors of Parse. A receiver reports the reason with Reason.
var (
	ErrTruncated = errors.New("rhcp: message truncated or length mismatch")
	ErrBadMAC    = errors.New("rhcp: hmac does not verify")
	ErrMalformed = errors.New("rhcp: malformed message")
)

// Route is a route a probe tells the device to install. Via is unset when
// the probe's gateway is the next hop.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// Message is one RHCP message of any type; which fields are set depends on
// Type (docs/protocols/rhcp.md "Required TLVs per type").
type Message struct {
	Type       Type
	ClientID   string
	Address    netip.Prefix
	Gateway    netip.Addr
	Routes     []Route
	Server     netip.Addr
	DHCPServer netip.Addr
	Sequence   uint64
	// Issued and Lifetime bound the probe's validity (VALIDITY TLV, seconds).
	Issued   time.Time
	Lifetime time.Duration
	Formal   netip.Prefix
	AckSeq   uint64
}

// Marshal encodes m and appends the HMAC-SHA256 keyed with key.
func (m *Message) Marshal(key []byte) ([]byte, error) {
	if len(key) == 0 {
		return nil, errors.New("rhcp: empty key")
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	b := make([]byte, headerLen, 128)
	b[0], b[1], b[2], b[3] = magic0, magic1, Version, byte(m.Type)
	b = appendTLV(b, tlvClientID, []byte(m.ClientID))
	if m.Address.IsValid() {
		b = appendTLV(b, tlvAddress, prefixBytes(m.Address))
	}
	if m.Gateway.IsValid() {
		b = appendTLV(b, tlvGateway, m.Gateway.AsSlice())
	}
	for _, r := range m.Routes {
		v := prefixBytes(r.Dst)
		if r.Via.IsValid() {
			v = append(v, r.Via.AsSlice()...)
		}
		b = appendTLV(b, tlvRoute, v)
	}
	if m.Server.IsValid() {
		b = appendTLV(b, tlvServer, m.Server.AsSlice())
	}
	if m.DHCPServer.IsValid() {
		b = appendTLV(b, tlvDHCPServer, m.DHCPServer.AsSlice())
	}
	b = appendTLV(b, tlvSequence, binary.BigEndian.AppendUint64(nil, m.Sequence))
	if m.Type == TypeProbe {
		v := binary.BigEndian.AppendUint64(nil, uint64(m.Issued.Unix()))
		v = binary.BigEndian.AppendUint32(v, uint32(m.Lifetime/time.Second))
		b = appendTLV(b, tlvValidity, v)
	}
	if m.Formal.IsValid() {
		b = appendTLV(b, tlvFormal, prefixBytes(m.Formal))
	}
	if m.Type == TypeStop || m.Type == TypeAck {
		b = appendTLV(b, tlvAckSequence, binary.BigEndian.AppendUint64(nil, m.AckSeq))
	}
	total := len(b) + macLen
	if total > MaxLen {
		return nil, fmt.Errorf("rhcp: %s of %d bytes exceeds %d", m.Type, total, MaxLen)
	}
	binary.BigEndian.PutUint16(b[4:6], uint16(total))
	return appendMAC(b, key), nil
}

func appendMAC(b, key []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(b)
	return mac.Sum(b)
}

// check enforces what a receiver requires, so we never send what we would
// reject.
func (m *Message) check() error {
	if len(m.ClientID) == 0 || len(m.ClientID) > maxIDLen || !printable(m.ClientID) {
		return fmt.Errorf("rhcp: client id %q must be 1-%d printable ASCII characters", m.ClientID, maxIDLen)
	}
	if len(m.Routes) > maxRoutes {
		return fmt.Errorf("rhcp: %d routes exceed %d", len(m.Routes), maxRoutes)
	}
	for _, r := range m.Routes {
		if !r.Dst.IsValid() || r.Via.IsValid() && r.Via.Is4() != r.Dst.Addr().Is4() {
			return fmt.Errorf("rhcp: route %v via %v is not valid", r.Dst, r.Via)
		}
	}
	switch m.Type {
	case TypeProbe:
		if !m.Address.IsValid() || !m.Server.IsValid() || m.Lifetime < time.Second {
			return errors.New("rhcp: a probe needs an address, a server and a lifetime of at least 1s")
		}
	case TypeStop:
		if !m.Address.IsValid() {
			return errors.New("rhcp: a stop needs the address")
		}
	case TypeRelease:
		if !m.Address.IsValid() || !m.Formal.IsValid() {
			return errors.New("rhcp: a release needs the temporary and the formal address")
		}
	case TypeAck:
	default:
		return fmt.Errorf("rhcp: unknown message type %d", m.Type)
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func appendTLV(b []byte, t byte, v []byte) []byte {
	b = append(b, t, byte(len(v)))
	return append(b, v...)
}

func prefixBytes(p netip.Prefix) []byte {
	return append(p.Addr().AsSlice(), byte(p.Bits()))
}

// Parse verifies and decodes one message. The HMAC is checked before any TLV
// is read, so an unauthenticated sender learns nothing from error details.
// Errors wrap ErrTruncated, ErrBadMAC or ErrMalformed.
func Parse(b, key []byte) (*Message, error) {
	if len(b) < MinLen || len(b) > MaxLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrTruncated, len(b))
	}
	if b[0] != magic0 || b[1] != magic1 {
		return nil, fmt.Errorf("%w: not an RHCP message", ErrMalformed)
	}
	if n := int(binary.BigEndian.Uint16(b[4:6])); n != len(b) {
		return nil, fmt.Errorf("%w: length field %d, datagram %d", ErrTruncated, n, len(b))
	}
	body, sum := b[:len(b)-macLen], b[len(b)-macLen:]
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	if !hmac.Equal(mac.Sum(nil), sum) {
		return nil, ErrBadMAC
	}
	if b[2] != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, b[2], Version)
	}
	m := &Message{Type: Type(b[3])}
	seen, err := m.parseTLVs(body[headerLen:])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, m.Type, err)
	}
	if err := m.required(seen); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, m.Type, err)
	}
	return m, nil
}

// parseTLVs decodes the TLVs into m and returns the types it saw.
func (m *Message) parseTLVs(b []byte) (map[byte]bool, error) {
	seen := map[byte]bool{}
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, errors.New("TLV header truncated")
		}
		t, l := b[0], int(b[1])
		if len(b) < 2+l {
			return nil, fmt.Errorf("TLV %d truncated", t)
		}
		v := b[2 : 2+l]
		b = b[2+l:]
		if t != tlvRoute && seen[t] {
			return nil, fmt.Errorf("TLV %d repeated", t)
		}
		seen[t] = true
		if err := m.setTLV(t, v); err != nil {
			return nil, err
		}
	}
	return seen, nil
}

func (m *Message) setTLV(t byte, v []byte) error {
	var ok bool
	switch t {
	case tlvClientID:
		m.ClientID, ok = string(v), len(v) >= 1 && len(v) <= maxIDLen && printable(string(v))
	case tlvAddress:
		m.Address, ok = parsePrefix(v)
	case tlvGateway:
		m.Gateway, ok = netip.AddrFromSlice(v)
	case tlvRoute:
		var r Route
		r, ok = parseRoute(v)
		if len(m.Routes) >= maxRoutes {
			return fmt.Errorf("more than %d routes", maxRoutes)
		}
		m.Routes = append(m.Routes, r)
	case tlvServer:
		m.Server, ok = netip.AddrFromSlice(v)
	case tlvDHCPServer:
		m.DHCPServer, ok = netip.AddrFromSlice(v)
	case tlvSequence:
		if ok = len(v) == 8; ok {
			m.Sequence = binary.BigEndian.Uint64(v)
		}
	case tlvValidity:
		if ok = len(v) == 12; ok {
			secs := binary.BigEndian.Uint64(v[:8])
			if secs > 1<<40 { // beyond year 36000: garbage, and time.Unix would overflow arithmetic
				return errors.New("validity issue time out of range")
			}
			m.Issued = time.Unix(int64(secs), 0)
			m.Lifetime = time.Duration(binary.BigEndian.Uint32(v[8:])) * time.Second
		}
	case tlvFormal:
		m.Formal, ok = parsePrefix(v)
	case tlvAckSequence:
		if ok = len(v) == 8; ok {
			m.AckSeq = binary.BigEndian.Uint64(v)
		}
	default:
		return nil // unknown TLVs are skipped (docs/protocols/rhcp.md "TLV")
	}
	if !ok {
		return fmt.Errorf("TLV %d has a bad length %d or value", t, len(v))
	}
	return nil
}

func parsePrefix(v []byte) (netip.Prefix, bool) {
	if len(v) != 5 && len(v) != 17 {
		return netip.Prefix{}, false
	}
	a, _ := netip.AddrFromSlice(v[:len(v)-1])
	p := netip.PrefixFrom(a, int(v[len(v)-1]))
	return p, p.IsValid()
}

func parseRoute(v []byte) (Route, bool) {
	switch len(v) {
	case 5, 17:
		p, ok := parsePrefix(v)
		return Route{Dst: p}, ok
	case 9, 33:
		n := len(v) - (len(v)-1)/2 // prefix part: 5 of 9, 17 of 33
		p, ok := parsePrefix(v[:n])
		via, _ := netip.AddrFromSlice(v[n:])
		return Route{Dst: p, Via: via}, ok && via.Is4() == p.Addr().Is4()
	}
	return Route{}, false
}

// required checks that the TLVs docs/protocols/rhcp.md requires for m's
// type were seen.
func (m *Message) required(seen map[byte]bool) error {
	need := map[Type][]struct {
		ok   bool
		name string
	}{
		TypeProbe:   {{m.Address.IsValid(), "ADDRESS"}, {m.Server.IsValid(), "SERVER"}, {!m.Issued.IsZero(), "VALIDITY"}},
		TypeStop:    {{m.Address.IsValid(), "ADDRESS"}, {seen[tlvAckSequence], "ACK_SEQUENCE"}},
		TypeRelease: {{m.Address.IsValid(), "ADDRESS"}, {m.Formal.IsValid(), "FORMAL_ADDRESS"}},
		TypeAck:     {{seen[tlvAckSequence], "ACK_SEQUENCE"}},
	}
	list, known := need[m.Type]
	if !known {
		return errors.New("unknown message type")
	}
	if m.ClientID == "" {
		return errors.New("CLIENT_ID missing")
	}
	if m.Sequence == 0 {
		return errors.New("SEQUENCE missing")
	}
	for _, r := range list {
		if !r.ok {
			return fmt.Errorf("%s missing", r.name)
		}
	}
	return nil
}

// Reason is the short reason a rejected message is reported with
// (rhcp.probe.rejected "reason").
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrBadMAC):
		return "bad-hmac"
	case errors.Is(err, ErrTruncated):
		return "truncated"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	}
	return "invalid"
}
