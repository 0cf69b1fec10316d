package trace

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/fieldcon/fieldcon/engine/rhcp"
)

const testTunnelPort = 51820

func decodeOne(t testing.TB, frame []byte) Summary {
	t.Helper()
	var s Summary
	s.Len = uint32(len(frame))
	NewDecoder(DecoderOptions{TunnelPorts: []uint16{testTunnelPort}}).Decode(layers.LinkTypeEthernet, frame, &s)
	return s
}

func TestDecodeSummaries(t *testing.T) {
	req, resp, hb := tunnelMessages(t, 3)
	tests := []struct {
		name  string
		frame []byte
		proto Proto
		flags Flags
		want  []string // substrings of the one-line text
	}{
		{"arp", arpRequest(t, "192.0.2.1", "192.0.2.2"), ProtoARP, HasEthernet | HasARP,
			[]string{"ARP", "who-has 192.0.2.2 tell 192.0.2.1"}},
		{"dhcp ack", dhcpFrame(t, layers.DHCPMsgTypeAck, 0xdeadbeef, "203.0.113.21"), ProtoDHCP, HasIPv4 | HasUDP | HasDHCP,
			[]string{"DHCP", "198.51.100.1:67 > 203.0.113.21:68", "Ack xid 0xdeadbeef", "chaddr 02:00:00:00:00:0b", "addr 203.0.113.21", "server 198.51.100.1 lease 3600s"}},
		{"tcp over ipv6", tcpFrame(t), ProtoTCP, HasIPv6 | HasTCP,
			[]string{"TCP", "[2001:db8::1]:40000 > [2001:db8::2]:5201", "[S]"}},
		{"icmp echo", icmpEcho(t), ProtoICMPv4, HasIPv4 | HasICMPv4,
			[]string{"ICMP 198.51.100.1 > 198.51.100.2", "EchoRequest", "id 7 seq 3"}},
		{"rhcp probe", ethIPv4UDP(t, "198.51.100.1", "203.0.113.21", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpProbe(t, 42))),
			ProtoRHCP, HasIPv4 | HasUDP | HasRHCP,
			[]string{"RHCP 198.51.100.1:6655 > 203.0.113.21:6655", `probe client "ESN-0001" addr 203.0.113.21/24`}},
		{"rhcp stop on another port", ethIPv4UDP(t, "203.0.113.21", "198.51.100.1", 7000, 7000, gopacket.Payload(rhcpStop(t, 43))),
			ProtoRHCP, HasRHCP, []string{"stop", "203.0.113.21/24"}},
		{"tunnel request", ethIPv4UDP(t, "198.18.0.2", "203.0.113.1", 40000, testTunnelPort, gopacket.Payload(req)),
			ProtoTunnel, HasTunnel, []string{"TUNNEL", "request index 77"}},
		{"tunnel response", ethIPv4UDP(t, "203.0.113.1", "198.18.0.2", testTunnelPort, 40000, gopacket.Payload(resp)),
			ProtoTunnel, HasTunnel, []string{"response index 3"}},
		{"tunnel heartbeat", ethIPv4UDP(t, "198.18.0.2", "203.0.113.1", 40000, testTunnelPort, gopacket.Payload(hb)),
			ProtoTunnel, HasTunnel, []string{"heartbeat index 3"}},
		{"plain udp", ethIPv4UDP(t, "198.51.100.1", "198.51.100.2", 1000, 2000, gopacket.Payload("hello")),
			ProtoUDP, HasUDP, []string{"UDP 198.51.100.1:1000 > 198.51.100.2:2000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := decodeOne(t, tt.frame)
			line := Format(&s, []Interface{{Node: "router", Name: "eth0"}})
			t.Log(line)
			if s.Proto != tt.proto {
				t.Errorf("proto %s, want %s (%s)", s.Proto, tt.proto, line)
			}
			if !s.Has(tt.flags) {
				t.Errorf("flags %b, want %b set", s.Flags, tt.flags)
			}
			if s.Has(Malformed) {
				t.Errorf("marked malformed: %s", line)
			}
			if !strings.Contains(line, "router eth0") {
				t.Errorf("line %q does not name node and interface", line)
			}
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("line %q lacks %q", line, w)
				}
			}
		})
	}
}

// TestTunnelIndexBothWays: messages to the client carry the client's own
// index; after the response the trace shows them with the tunnel index.
func TestTunnelIndexBothWays(t *testing.T) {
	_, resp, _ := tunnelMessages(t, 3)
	d := NewDecoder(DecoderOptions{TunnelPorts: []uint16{testTunnelPort}})
	var s Summary
	d.Decode(layers.LinkTypeEthernet, ethIPv4UDP(t, "203.0.113.1", "198.18.0.2", testTunnelPort, 40000, gopacket.Payload(resp)), &s)
	// A heartbeat from the server names the client's index, 77.
	hb := []byte{5, 1, 0, 0, 0, 0, 0, 77, 0, 0, 0, 0, 0, 0, 0, 1}
	hb = append(hb, make([]byte, 16)...)
	d.Decode(layers.LinkTypeEthernet, ethIPv4UDP(t, "203.0.113.1", "198.18.0.2", testTunnelPort, 40000, gopacket.Payload(hb)), &s)
	if s.Proto != ProtoTunnel || s.ID != 3 {
		t.Errorf("heartbeat to the client: %s, want tunnel index 3", Format(&s, nil))
	}
	var fresh Summary
	NewDecoder(DecoderOptions{TunnelPorts: []uint16{testTunnelPort}}).Decode(layers.LinkTypeEthernet,
		ethIPv4UDP(t, "203.0.113.1", "198.18.0.2", testTunnelPort, 40000, gopacket.Payload(hb)), &fresh)
	if fresh.ID != 77 {
		t.Errorf("without the response, the heartbeat shows index %d, want the receiver index 77", fresh.ID)
	}
}

func TestRHCPOverIPv6(t *testing.T) {
	m := rhcp.Message{Type: rhcp.TypeProbe, ClientID: "ESN-0006",
		Address: netip.MustParsePrefix("2001:db8:1::10/64"), Server: netip.MustParseAddr("2001:db8::1"),
		Sequence: 9, Issued: time.Unix(1_800_000_000, 0), Lifetime: time.Minute}
	b, err := m.Marshal(testKey)
	if err != nil {
		t.Fatal(err)
	}
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
		SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8:1::10")}
	udp := &layers.UDP{SrcPort: rhcp.Port, DstPort: rhcp.Port}
	udp.SetNetworkLayerForChecksum(ip)
	s := decodeOne(t, serialize(t, eth, ip, udp, gopacket.Payload(b)))
	if s.Proto != ProtoRHCP || s.AuxAddr() != netip.MustParseAddr("2001:db8:1::10") || s.Code != 64 {
		t.Errorf("RHCP over IPv6: %s (aux %s)", Format(&s, nil), s.AuxAddr())
	}
	f, _ := ParseFilter("rhcp.addr==2001:db8:1::/64")
	if !f.Match(&s, nil) {
		t.Error("rhcp.addr with an IPv6 prefix does not match")
	}
}

func TestTunnelDataNeedsPort(t *testing.T) {
	_, _, hb := tunnelMessages(t, 3)
	frame := ethIPv4UDP(t, "198.18.0.2", "203.0.113.1", 40000, 40001, gopacket.Payload(hb))
	var s Summary
	NewDecoder(DecoderOptions{}).Decode(layers.LinkTypeEthernet, frame, &s)
	if s.Proto != ProtoUDP {
		t.Errorf("a transport message off the tunnel ports decoded as %s; only handshakes are recognised anywhere", s.Proto)
	}
}

func TestDecodeRawIP(t *testing.T) {
	frame := ethIPv4UDP(t, "198.51.100.1", "203.0.113.21", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpProbe(t, 1)))
	var s Summary
	NewDecoder(DecoderOptions{}).Decode(layers.LinkTypeRaw, frame[14:], &s)
	if s.Proto != ProtoRHCP || s.Has(HasEthernet) {
		t.Errorf("raw IP frame: %s", Format(&s, nil))
	}
	var p Summary
	ppp := append([]byte{0xff, 0x03, 0x00, 0x21}, frame[14:]...)
	NewDecoder(DecoderOptions{}).Decode(layers.LinkTypePPP, ppp, &p)
	if p.Proto != ProtoRHCP {
		t.Errorf("PPP frame: %s", Format(&p, nil))
	}
}

func TestDecodeMalformed(t *testing.T) {
	good := dhcpFrame(t, layers.DHCPMsgTypeOffer, 1, "203.0.113.21")
	var s Summary
	NewDecoder(DecoderOptions{}).Decode(layers.LinkTypeEthernet, good[:60], &s)
	if !s.Has(Malformed) || !s.Has(HasUDP) {
		t.Errorf("cut DHCP: flags %b, want UDP kept and Malformed set: %s", s.Flags, Format(&s, nil))
	}
	if s.Proto != ProtoUDP {
		t.Errorf("cut DHCP: proto %s, want UDP", s.Proto)
	}
}

func TestDecodeAllocs(t *testing.T) {
	frames := [][]byte{
		dhcpFrame(t, layers.DHCPMsgTypeAck, 1, "203.0.113.21"),
		ethIPv4UDP(t, "198.51.100.1", "203.0.113.21", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpProbe(t, 1))),
		tcpFrame(t), arpRequest(t, "192.0.2.1", "192.0.2.2"),
	}
	d := NewDecoder(DecoderOptions{})
	var s Summary
	for _, f := range frames {
		d.Decode(layers.LinkTypeEthernet, f, &s) // warm up reused slices
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, f := range frames {
			d.Decode(layers.LinkTypeEthernet, f, &s)
		}
	})
	if allocs > 0 {
		t.Errorf("summary decode allocates %.1f times per 4 frames; the fast path must not allocate", allocs)
	}
}

func TestDissectRHCPAndDHCP(t *testing.T) {
	frame := ethIPv4UDP(t, "198.51.100.1", "203.0.113.21", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpProbe(t, 42)))
	d := Dissect(layers.LinkTypeEthernet, frame, DecoderOptions{})
	names := layerNames(d)
	if names != "Ethernet IPv4 UDP RHCP" {
		t.Fatalf("layers %q", names)
	}
	f := fieldMap(d.Layers[3])
	for k, v := range map[string]string{"type": "probe", "client-id": `"ESN-0001"`, "address": "203.0.113.21/24",
		"gateway": "192.0.2.1", "route": "198.51.100.0/24", "server": "198.51.100.1", "sequence": "42",
		"hmac": "32 bytes (not shown)"} {
		if f[k] != v {
			t.Errorf("RHCP %s = %q, want %q", k, f[k], v)
		}
	}
	if !strings.Contains(d.Hex, "52 48 01 01") {
		t.Errorf("hex dump lacks the RHCP header:\n%s", d.Hex)
	}
	// Off the default port: still decoded by name.
	frame = ethIPv4UDP(t, "203.0.113.21", "198.51.100.1", 7000, 7000, gopacket.Payload(rhcpStop(t, 43)))
	if n := layerNames(Dissect(layers.LinkTypeEthernet, frame, DecoderOptions{})); n != "Ethernet IPv4 UDP RHCP" {
		t.Errorf("stop on port 7000: layers %q", n)
	}
	d = Dissect(layers.LinkTypeEthernet, dhcpFrame(t, layers.DHCPMsgTypeAck, 0xdeadbeef, "203.0.113.21"), DecoderOptions{})
	f = fieldMap(d.Layers[len(d.Layers)-1])
	if f["xid"] != "0xdeadbeef" || f["yiaddr"] != "203.0.113.21" || f["option 53 MessageType"] != "Ack" ||
		f["option 54 ServerID"] != "198.51.100.1" || f["option 51 LeaseTime"] != "3600s" {
		t.Errorf("DHCP fields %v", f)
	}
}

func TestRHCPVerify(t *testing.T) {
	var m RHCP
	if err := m.DecodeFromBytes(rhcpProbe(t, 5), gopacket.NilDecodeFeedback); err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(testKey); err != nil {
		t.Errorf("verify with the site key: %v", err)
	}
	if err := m.Verify([]byte("another key")); err == nil {
		t.Error("verify with a wrong key passed")
	}
}

func TestDissectTunnel(t *testing.T) {
	req, resp, _ := tunnelMessages(t, 9)
	d := Dissect(layers.LinkTypeEthernet, ethIPv4UDP(t, "203.0.113.1", "198.18.0.2", testTunnelPort, 40000, gopacket.Payload(resp)), DecoderOptions{})
	f := fieldMap(d.Layers[len(d.Layers)-1])
	if f["type"] != "response" || f["tunnel-index"] != "9" || f["receiver-index"] != "77" {
		t.Errorf("tunnel response fields %v (layers %s)", f, layerNames(d))
	}
	d = Dissect(layers.LinkTypeEthernet, ethIPv4UDP(t, "198.18.0.2", "203.0.113.1", 40000, testTunnelPort, gopacket.Payload(req)), DecoderOptions{})
	for _, l := range d.Layers {
		for _, kv := range l.Fields {
			if strings.Contains(kv[1], "[") && l.Name == "TNTunnel" {
				t.Errorf("tunnel field %s shows bytes: %s", kv[0], kv[1])
			}
		}
	}
}

func layerNames(d Detail) string {
	var n []string
	for _, l := range d.Layers {
		n = append(n, l.Name)
	}
	return strings.Join(n, " ")
}

func fieldMap(l Layer) map[string]string {
	m := map[string]string{}
	for _, kv := range l.Fields {
		if _, ok := m[kv[0]]; !ok {
			m[kv[0]] = kv[1]
		}
	}
	return m
}

// FuzzDecode: no frame, however malformed, panics the summary decoder or the
// full dissector, on any link type.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(1), dhcpFrame(f, layers.DHCPMsgTypeAck, 1, "203.0.113.21"))
	f.Add(uint8(1), ethIPv4UDP(f, "198.51.100.1", "203.0.113.21", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpProbe(f, 1))))
	f.Add(uint8(1), arpRequest(f, "192.0.2.1", "192.0.2.2"))
	f.Add(uint8(1), tcpFrame(f))
	f.Add(uint8(101), icmpEcho(f)[14:])
	f.Add(uint8(9), []byte{0xff, 0x03, 0x00, 0x21, 0x45})
	req, _, hb := tunnelMessages(f, 3)
	f.Add(uint8(1), ethIPv4UDP(f, "198.18.0.2", "203.0.113.1", 40000, testTunnelPort, gopacket.Payload(req)))
	f.Add(uint8(1), ethIPv4UDP(f, "198.18.0.2", "203.0.113.1", 40000, testTunnelPort, gopacket.Payload(hb)))
	d := NewDecoder(DecoderOptions{TunnelPorts: []uint16{testTunnelPort}, RHCPPorts: []uint16{7000}})
	f.Fuzz(func(t *testing.T, lt uint8, frame []byte) {
		var s Summary
		d.Decode(layers.LinkType(lt), frame, &s)
		_ = Format(&s, nil)
		_ = Dissect(layers.LinkType(lt), frame, DecoderOptions{TunnelPorts: []uint16{testTunnelPort}})
	})
}

// FuzzRHCPLayer: the RHCP layer alone, on arbitrary datagrams.
func FuzzRHCPLayer(f *testing.F) {
	f.Add(rhcpProbe(f, 1))
	f.Add(rhcpStop(f, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m RHCP
		if m.DecodeFromBytes(b, gopacket.NilDecodeFeedback) == nil {
			_ = m.Fields()
			var s Summary
			m.summarize(&s)
		}
	})
}

// BenchmarkDecodeSummary: the fast path on a mix of DHCP, RHCP, TCP and ARP
// frames (bench/trace.sh measures it on a real lab capture).
func BenchmarkDecodeSummary(b *testing.B) {
	frames := [][]byte{
		dhcpFrame(b, layers.DHCPMsgTypeAck, 1, "203.0.113.21"),
		ethIPv4UDP(b, "198.51.100.1", "203.0.113.21", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpProbe(b, 1))),
		tcpFrame(b), arpRequest(b, "192.0.2.1", "192.0.2.2"),
	}
	d := NewDecoder(DecoderOptions{})
	var s Summary
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		d.Decode(layers.LinkTypeEthernet, frames[i%len(frames)], &s)
	}
}

// FuzzTunnelLayer: the tunnel layer alone, on arbitrary datagrams.
func FuzzTunnelLayer(f *testing.F) {
	req, resp, hb := tunnelMessages(f, 3)
	f.Add(req)
	f.Add(resp)
	f.Add(hb)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Tunnel
		m.DecodeFromBytes(b, gopacket.NilDecodeFeedback)
		_ = m.Fields()
		_ = m.Index()
		looksLikeTunnel(b, true)
	})
}
