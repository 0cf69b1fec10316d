package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/fieldcon/fieldcon/engine/rhcp"
)

// Layer type numbers of fieldcon's own protocols: gopacket reserves numbers
// from 2000 up for applications.
const (
	layerNumRHCP   = 2651
	layerNumTunnel = 2652
)

// LayerTypeRHCP is the gopacket layer of RHCP messages
// (docs/protocols/rhcp.md). Registering a layer type is gopacket's one
// global registry; it is written once at init and only read afterwards.
var LayerTypeRHCP = gopacket.RegisterLayerType(layerNumRHCP, gopacket.LayerTypeMetadata{
	Name: "RHCP", Decoder: gopacket.DecodeFunc(decodeRHCP),
})

func init() {
	// With the default port registered, gopacket.NewPacket decodes RHCP by
	// name in the full layer tree; other ports are handled by Decoder's
	// port table (DecoderOptions).
	layers.RegisterUDPPortLayerType(layers.UDPPort(rhcp.Port), LayerTypeRHCP)
}

// rhcpTypeValues are the names rhcp.type compares with.
var rhcpTypeValues = map[string]uint64{
	"probe": uint64(rhcp.TypeProbe), "stop": uint64(rhcp.TypeStop),
	"release": uint64(rhcp.TypeRelease), "ack": uint64(rhcp.TypeAck),
}

func rhcpTypeName(t uint8) string { return rhcp.Type(t).String() }

// RHCP is a decoded RHCP message, as a trace shows it. Decoding does not
// verify the HMAC (the trace usually has no key); Verify does, with the site
// key, through the rhcp package's codec. The HMAC itself is not a secret
// but it is never shown either: only whether it verifies.
type RHCP struct {
	layers.BaseLayer
	Version  uint8
	Type     rhcp.Type
	Length   uint16
	ClientID []byte // aliases the packet
	// Address is the ADDRESS TLV: the maintenance address (probe, stop) or
	// the temporary one being released.
	Address    netip.Prefix
	Gateway    netip.Addr
	Routes     []rhcp.Route
	Server     netip.Addr
	DHCPServer netip.Addr
	Sequence   uint64
	AckSeq     uint64
	Issued     time.Time
	Lifetime   time.Duration
	Formal     netip.Prefix
	// Unknown counts TLVs of types this version does not know (skipped).
	Unknown int
}

// LayerType implements gopacket.Layer.
func (m *RHCP) LayerType() gopacket.LayerType { return LayerTypeRHCP }

// CanDecode implements gopacket.DecodingLayer.
func (m *RHCP) CanDecode() gopacket.LayerClass { return LayerTypeRHCP }

// NextLayerType implements gopacket.DecodingLayer: RHCP carries nothing else.
func (m *RHCP) NextLayerType() gopacket.LayerType { return gopacket.LayerTypeZero }

var errRHCPShort = errors.New("rhcp: shorter than header and hmac")

// looksLikeRHCP: the magic, version and a Length that matches, so a datagram
// on another port can be recognised (docs/protocols/rhcp.md "Message").
func looksLikeRHCP(b []byte) bool {
	return len(b) >= rhcp.MinLen && b[0] == 'R' && b[1] == 'H' && b[2] == rhcp.Version &&
		int(binary.BigEndian.Uint16(b[4:6])) == len(b)
}

// DecodeFromBytes implements gopacket.DecodingLayer. It walks the TLVs
// without allocating (Routes is reused), so it can run on every packet.
func (m *RHCP) DecodeFromBytes(b []byte, df gopacket.DecodeFeedback) error {
	if len(b) < rhcp.MinLen {
		df.SetTruncated()
		return errRHCPShort
	}
	if b[0] != 'R' || b[1] != 'H' {
		return errors.New("rhcp: bad magic")
	}
	routes := m.Routes[:0]
	*m = RHCP{Version: b[2], Type: rhcp.Type(b[3]), Length: binary.BigEndian.Uint16(b[4:6])}
	m.Routes = routes
	end := len(b)
	if int(m.Length) < end && int(m.Length) >= rhcp.MinLen {
		end = int(m.Length)
	}
	m.BaseLayer = layers.BaseLayer{Contents: b[:end], Payload: b[end:]}
	tlvs := b[8 : end-32]
	for len(tlvs) > 0 {
		if len(tlvs) < 2 || len(tlvs) < 2+int(tlvs[1]) {
			return errors.New("rhcp: TLV truncated")
		}
		m.setTLV(tlvs[0], tlvs[2:2+int(tlvs[1])])
		tlvs = tlvs[2+int(tlvs[1]):]
	}
	if int(m.Length) != len(b) {
		return fmt.Errorf("rhcp: length field %d, datagram %d", m.Length, len(b))
	}
	return nil
}

// setTLV records one TLV; values of a wrong size are left unset, as the
// trace shows what is there rather than judging it (rhcp.Parse judges).
func (m *RHCP) setTLV(t byte, v []byte) {
	prefix := func() netip.Prefix {
		if len(v) != 5 && len(v) != 17 {
			return netip.Prefix{}
		}
		a, _ := netip.AddrFromSlice(v[:len(v)-1])
		return netip.PrefixFrom(a, int(v[len(v)-1]))
	}
	addr := func() netip.Addr { a, _ := netip.AddrFromSlice(v); return a }
	switch t {
	case 1:
		m.ClientID = v
	case 2:
		m.Address = prefix()
	case 3:
		m.Gateway = addr()
	case 4:
		if len(m.Routes) < 16 {
			m.Routes = append(m.Routes, decodeRoute(v))
		}
	case 5:
		m.Server = addr()
	case 6:
		m.DHCPServer = addr()
	case 7:
		if len(v) == 8 {
			m.Sequence = binary.BigEndian.Uint64(v)
		}
	case 8:
		if len(v) == 12 && binary.BigEndian.Uint64(v) < 1<<40 {
			m.Issued = time.Unix(int64(binary.BigEndian.Uint64(v)), 0)
			m.Lifetime = time.Duration(binary.BigEndian.Uint32(v[8:])) * time.Second
		}
	case 9:
		m.Formal = prefix()
	case 10:
		if len(v) == 8 {
			m.AckSeq = binary.BigEndian.Uint64(v)
		}
	default:
		m.Unknown++
	}
}

func decodeRoute(v []byte) rhcp.Route {
	var r rhcp.Route
	n := len(v)
	if n == 9 || n == 33 {
		n = len(v) - (len(v)-1)/2
		r.Via, _ = netip.AddrFromSlice(v[n:])
	}
	if n == 5 || n == 17 {
		a, _ := netip.AddrFromSlice(v[:n-1])
		r.Dst = netip.PrefixFrom(a, int(v[n-1]))
	}
	return r
}

func decodeRHCP(data []byte, p gopacket.PacketBuilder) error {
	m := &RHCP{}
	err := m.DecodeFromBytes(data, p)
	p.AddLayer(m)
	if err != nil {
		return err
	}
	return p.NextDecoder(gopacket.LayerTypePayload)
}

// Verify checks the message's HMAC with the site key through the rhcp codec
// (which also checks required TLVs). The returned error never contains the key.
func (m *RHCP) Verify(key []byte) error {
	_, err := rhcp.Parse(m.Contents, key)
	return err
}

// summarize fills the summary fields of an RHCP message.
func (m *RHCP) summarize(s *Summary) {
	s.Type = uint8(m.Type)
	s.ID = uint32(m.Sequence)
	if a := m.Address; a.IsValid() {
		if a.Addr().Is4() {
			a4 := a.Addr().As4()
			s.Aux = [16]byte{}
			copy(s.Aux[:4], a4[:])
		} else {
			s.Aux = a.Addr().As16()
			s.Flags |= AuxV6
		}
		s.Code = uint8(a.Bits())
		s.Flags |= AuxValid
	}
	copy(s.Name[:], m.ClientID)
}

// Fields lists the message's fields, for the detail view (never the HMAC).
func (m *RHCP) Fields() [][2]string {
	f := [][2]string{{"type", m.Type.String()}, {"version", fmt.Sprint(m.Version)}, {"length", fmt.Sprint(m.Length)}}
	add := func(k, v string) { f = append(f, [2]string{k, v}) }
	if m.ClientID != nil {
		add("client-id", fmt.Sprintf("%q", m.ClientID))
	}
	if m.Address.IsValid() {
		add("address", m.Address.String())
	}
	if m.Gateway.IsValid() {
		add("gateway", m.Gateway.String())
	}
	for _, r := range m.Routes {
		if r.Via.IsValid() {
			add("route", r.Dst.String()+" via "+r.Via.String())
		} else {
			add("route", r.Dst.String())
		}
	}
	if m.Server.IsValid() {
		add("server", m.Server.String())
	}
	if m.DHCPServer.IsValid() {
		add("dhcp-server", m.DHCPServer.String())
	}
	if m.Sequence != 0 {
		add("sequence", fmt.Sprint(m.Sequence))
	}
	if m.AckSeq != 0 {
		add("ack-sequence", fmt.Sprint(m.AckSeq))
	}
	if !m.Issued.IsZero() {
		add("validity", m.Issued.UTC().Format(time.RFC3339)+" for "+m.Lifetime.String())
	}
	if m.Formal.IsValid() {
		add("formal-address", m.Formal.String())
	}
	if m.Unknown > 0 {
		add("unknown-tlvs", fmt.Sprint(m.Unknown))
	}
	add("hmac", "32 bytes (not shown)")
	return f
}

// String is a one-line rendering, for gopacket's layer dump.
func (m *RHCP) String() string {
	var parts []string
	for _, kv := range m.Fields() {
		parts = append(parts, kv[0]+"="+kv[1])
	}
	return "RHCP " + strings.Join(parts, " ")
}
