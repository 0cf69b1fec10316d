package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func TestFrameRoundTrip(t *testing.T) {
	f := Frame{SrcMAC: cliMAC, Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: netip.MustParseAddrPort("255.255.255.255:67"), Payload: []byte("hello dhcp")}
	b := BuildFrame(f)
	if !bytes.Equal(b[0:6], broadcastMAC) {
		t.Errorf("nil DstMAC must be broadcast")
	}
	g, err := ParseFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	if g.Src != f.Src || g.Dst != f.Dst || !bytes.Equal(g.Payload, f.Payload) || g.SrcMAC.String() != cliMAC.String() {
		t.Errorf("round trip %+v", g)
	}
	// UDP checksum over the pseudo-header verifies to zero.
	udp := b[ethHeaderLen+ipv4HeaderLen:]
	var pseudo uint32 = 0xffff + 0xffff + 17 + uint32(len(udp))
	if cs := checksum(udp, pseudo); cs != 0 {
		t.Errorf("udp checksum does not verify: %#x", cs)
	}
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:30] }},
		{"bad ip checksum", func(b []byte) []byte { b[ethHeaderLen+10] ^= 0xff; return b }},
		{"fragment", func(b []byte) []byte { b[ethHeaderLen+6] = 0x20; return b }},
		{"udp length too big", func(b []byte) []byte { b[ethHeaderLen+ipv4HeaderLen+4] = 0xff; return b }},
		{"not udp", func(b []byte) []byte { b[ethHeaderLen+9] = 6; return b }},
		{"arp", func(b []byte) []byte { b[12], b[13] = 8, 6; return b }},
	} {
		if _, err := ParseFrame(tc.mod(BuildFrame(f))); err == nil {
			t.Errorf("%s: parsed", tc.name)
		}
	}
}

func TestARPRoundTrip(t *testing.T) {
	a := ARP{Op: 2, EthSrc: srvMAC, SenderMAC: srvMAC, SenderIP: srvAddr, TargetMAC: cliMAC, TargetIP: netip.MustParseAddr("192.0.2.100")}
	g, err := ParseARP(BuildARP(a))
	if err != nil || g.Op != 2 || g.SenderIP != a.SenderIP || g.TargetIP != a.TargetIP || g.SenderMAC.String() != srvMAC.String() {
		t.Fatalf("%+v %v", g, err)
	}
}

func TestClientIDEncoding(t *testing.T) {
	if got := EncodeClientID("ESN-1"); !bytes.Equal(got, []byte("\x00ESN-1")) {
		t.Errorf("ESN: %q", got)
	}
	if got := EncodeClientID("hex:01020304"); !bytes.Equal(got, []byte{1, 2, 3, 4}) {
		t.Errorf("hex: %x", got)
	}
}

// FuzzParseFrame: frames from the wire never panic the parser, and what
// parses re-encodes to the same addresses and payload.
func FuzzParseFrame(f *testing.F) {
	f.Add(BuildFrame(Frame{SrcMAC: cliMAC, Src: netip.MustParseAddrPort("0.0.0.0:68"), Dst: netip.MustParseAddrPort("255.255.255.255:67"), Payload: []byte{1, 2, 3}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err != nil {
			return
		}
		g, err := ParseFrame(BuildFrame(fr))
		if err != nil || g.Src != fr.Src || g.Dst != fr.Dst || !bytes.Equal(g.Payload, fr.Payload) {
			t.Fatalf("re-encode: %v %+v %+v", err, g, fr)
		}
	})
}

func FuzzParseARP(f *testing.F) {
	f.Add(BuildARP(ARP{Op: 1, EthSrc: cliMAC, SenderMAC: cliMAC, TargetIP: srvAddr}))
	f.Fuzz(func(t *testing.T, b []byte) { ParseARP(b) })
}

// FuzzVerifyForceRenew: arbitrary bytes never panic verification, and no
// mutation of a signed message verifies unless it leaves the signed bytes
// alone.
func FuzzVerifyForceRenew(f *testing.F) {
	nonce := []byte("0123456789abcdef")
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(cliMAC), dhcpv4.WithMessageType(MessageTypeForceRenew))
	raw, _ := SignForceRenew(m, 5, nonce)
	f.Add(raw, 10, byte(1))
	f.Add([]byte{}, 0, byte(0))
	f.Fuzz(func(t *testing.T, b []byte, pos int, x byte) {
		VerifyForceRenew(b, nonce, 0)
		if pos < 0 || pos >= len(raw) || x == 0 || pos == 3 || (pos >= 24 && pos < 28) {
			return // hops and giaddr are outside the digest (RFC 3118 §2)
		}
		mut := append([]byte(nil), raw...)
		mut[pos] ^= x
		if _, err := VerifyForceRenew(mut, nonce, 0); err == nil {
			t.Fatalf("mutation at %d verified", pos)
		}
	})
}

// FuzzClientReceive: whatever arrives, the client never panics, in every
// state that reads messages.
func FuzzClientReceive(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	s := testServer(nil)
	c := NewClient(ClientConfig{MAC: cliMAC})
	acts := c.Start(now)
	req, _ := dhcpv4.FromBytes(acts[0].Msg.ToBytes())
	offer := s.Handle(req, link, now).Msg.ToBytes()
	f.Add(offer)
	f.Add(offer[:100])
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, prev := range []netip.Addr{{}, netip.MustParseAddr("192.0.2.100")} {
			c := NewClient(ClientConfig{MAC: cliMAC, Previous: prev, Probe: true, NonceCapable: true})
			c.Start(now)
			c.Receive(now, b, Source{MAC: srvMAC, IP: srvAddr})
			c.Tick(now.Add(time.Hour))
		}
		bc := NewClient(ClientConfig{MAC: cliMAC})
		bc.SetLease(&Lease{Address: netip.MustParsePrefix("192.0.2.100/24"), Server: srvAddr, LeaseTime: time.Hour, T1: time.Minute, T2: 2 * time.Minute, Acquired: now, Nonce: []byte("0123456789abcdef")})
		bc.Receive(now, b, Source{})
	})
}

// FuzzServerHandle: malformed requests (truncated, bad options, huge
// lengths) never panic the server or the relay.
func FuzzServerHandle(f *testing.F) {
	d, _ := dhcpv4.NewDiscovery(cliMAC, dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte("x"))))
	f.Add(d.ToBytes())
	r, _ := dhcpv4.NewDiscovery(cliMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IP{192, 0, 2, 100}))
	f.Add(r.ToBytes())
	f.Add(append(d.ToBytes()[:240], 53, 255, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		s := testServer(func(c *ServerConfig) {
			c.Reservations = []Reservation{{MAC: cliMAC, Address: netip.MustParseAddr("192.0.2.50")}}
		})
		rep := s.Handle(m, link, time.Now())
		if rep.Msg != nil {
			rep.Msg.ToBytes()
		}
		relay := NewRelay(RelayConfig{Downstream: map[string]netip.Addr{"eth1": srvAddr}, Upstream: "eth0", Servers: []netip.Addr{srvAddr}, RemoteID: "R"})
		relay.Request(m, "eth1")
		m2, _ := dhcpv4.FromBytes(b)
		relay.Reply(m2, srvAddr, "eth0")
	})
}
