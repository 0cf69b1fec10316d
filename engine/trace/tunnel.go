package trace

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/fieldcon/fieldcon/engine/tunnel"
)

// LayerTypeTunnel is the gopacket layer of TN tunnel messages
// (docs/protocols/tunnel.md), registered once at init like LayerTypeRHCP.
var LayerTypeTunnel = gopacket.RegisterLayerType(layerNumTunnel, gopacket.LayerTypeMetadata{
	Name: "TNTunnel", Decoder: gopacket.DecodeFunc(decodeTunnel),
})

var tunnelTypeNames = map[uint8]string{
	tunnel.TypeRequest: "request", tunnel.TypeResponse: "response", tunnel.TypeCookie: "cookie",
	tunnel.TypeData: "data", tunnel.TypeHeartbeat: "heartbeat", tunnel.TypeClose: "close",
}

// tunnelTypeValues are the names tunnel.type compares with.
var tunnelTypeValues = map[string]uint64{
	"request": uint64(tunnel.TypeRequest), "response": uint64(tunnel.TypeResponse),
	"cookie": uint64(tunnel.TypeCookie), "data": uint64(tunnel.TypeData),
	"heartbeat": uint64(tunnel.TypeHeartbeat), "close": uint64(tunnel.TypeClose),
}

func tunnelTypeName(t uint8) string {
	if n, ok := tunnelTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type-%d", t)
}

// Tunnel is a decoded tunnel message header: what a trace may show. The
// Noise handshake bytes, MACs, cookies and sealed payloads are encrypted or
// key-derived; only their sizes are kept.
type Tunnel struct {
	layers.BaseLayer
	Type    uint8
	Version uint8
	// Sender is the sender index of a request (client's) or a response (the
	// server's: the tunnel index).
	Sender uint32
	// Receiver is the receiver index of a response, cookie reply or transport
	// message (to the server: the tunnel index).
	Receiver uint32
	// Counter is a transport message's nonce counter.
	Counter uint64
	// SealedLen is the size of the encrypted part (Noise message or AEAD
	// ciphertext with its tag).
	SealedLen int
}

// LayerType implements gopacket.Layer.
func (m *Tunnel) LayerType() gopacket.LayerType { return LayerTypeTunnel }

// CanDecode implements gopacket.DecodingLayer.
func (m *Tunnel) CanDecode() gopacket.LayerClass { return LayerTypeTunnel }

// NextLayerType implements gopacket.DecodingLayer: the payload is sealed.
func (m *Tunnel) NextLayerType() gopacket.LayerType { return gopacket.LayerTypeZero }

// looksLikeTunnel: a sound common header with the exact size of its type
// (tunnel.MessageType), for recognising the handshake on any port. Transport
// messages have no fixed size and are recognised on tunnel ports only.
func looksLikeTunnel(b []byte, onPort bool) bool {
	t, err := tunnel.MessageType(b)
	return err == nil && (onPort || t == tunnel.TypeRequest || t == tunnel.TypeResponse || t == tunnel.TypeCookie)
}

// DecodeFromBytes implements gopacket.DecodingLayer with the tunnel
// package's codec.
func (m *Tunnel) DecodeFromBytes(b []byte, df gopacket.DecodeFeedback) error {
	*m = Tunnel{}
	if len(b) >= 4 {
		m.Type, m.Version = b[0], b[1]
	}
	m.BaseLayer = layers.BaseLayer{Contents: b}
	t, err := tunnel.MessageType(b)
	if err != nil {
		if len(b) >= 8 {
			m.Receiver = binary.BigEndian.Uint32(b[4:8])
		}
		df.SetTruncated()
		return err
	}
	switch t {
	case tunnel.TypeRequest:
		r, err := tunnel.ParseRequest(b)
		if err != nil {
			return err
		}
		m.Sender, m.SealedLen = r.Sender, len(r.Noise)
	case tunnel.TypeResponse:
		r, err := tunnel.ParseResponse(b)
		if err != nil {
			return err
		}
		m.Sender, m.Receiver, m.SealedLen = r.Sender, r.Receiver, len(r.Noise)
	case tunnel.TypeCookie:
		r, err := tunnel.ParseCookieReply(b)
		if err != nil {
			return err
		}
		m.Receiver, m.SealedLen = r.Receiver, len(r.Sealed)
	default:
		r, err := tunnel.ParseTransport(b)
		if err != nil {
			return err
		}
		m.Receiver, m.Counter, m.SealedLen = r.Receiver, r.Counter, len(r.Sealed)
	}
	return nil
}

func decodeTunnel(data []byte, p gopacket.PacketBuilder) error {
	m := &Tunnel{}
	err := m.DecodeFromBytes(data, p)
	p.AddLayer(m)
	return err
}

// Index is the tunnel index the message names: the sender index of a
// response (the server's), else the receiver index, else the request's
// sender index.
func (m *Tunnel) Index() uint32 {
	switch {
	case m.Type == tunnel.TypeResponse:
		return m.Sender
	case m.Receiver != 0:
		return m.Receiver
	}
	return m.Sender
}

func (m *Tunnel) summarize(s *Summary) {
	s.Type = m.Type
	s.ID = m.Index()
}

// Fields lists the header fields, for the detail view.
func (m *Tunnel) Fields() [][2]string {
	f := [][2]string{{"type", tunnelTypeName(m.Type)}, {"version", fmt.Sprint(m.Version)}}
	add := func(k, v string) { f = append(f, [2]string{k, v}) }
	switch m.Type {
	case tunnel.TypeRequest:
		add("sender-index", fmt.Sprint(m.Sender))
		add("noise-message-1", fmt.Sprintf("%d bytes (encrypted)", m.SealedLen))
	case tunnel.TypeResponse:
		add("tunnel-index", fmt.Sprint(m.Sender))
		add("receiver-index", fmt.Sprint(m.Receiver))
		add("noise-message-2", fmt.Sprintf("%d bytes (encrypted)", m.SealedLen))
	case tunnel.TypeCookie:
		add("receiver-index", fmt.Sprint(m.Receiver))
		add("cookie", fmt.Sprintf("%d bytes (encrypted)", m.SealedLen))
	default:
		add("receiver-index", fmt.Sprint(m.Receiver))
		add("counter", fmt.Sprint(m.Counter))
		add("sealed", fmt.Sprintf("%d bytes (encrypted)", m.SealedLen))
	}
	return f
}

// String is a one-line rendering, for gopacket's layer dump.
func (m *Tunnel) String() string {
	var parts []string
	for _, kv := range m.Fields() {
		parts = append(parts, kv[0]+"="+kv[1])
	}
	return "TNTunnel " + strings.Join(parts, " ")
}
