package trace

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/fieldcon/fieldcon/engine/rhcp"
	"github.com/fieldcon/fieldcon/engine/tunnel"
)

// Test frames are built with gopacket's serializers and the protocol
// packages' own encoders, never by hand, so the decoder is checked against
// what the rest of fieldcon really sends.

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ethIPv4UDP(t testing.TB, src, dst string, sport, dport uint16, payload gopacket.SerializableLayer) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, eth, ip, udp, payload)
}

func arpRequest(t testing.TB, sender, target string) []byte {
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: net.ParseIP(sender).To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP(target).To4()}
	return serialize(t, eth, arp)
}

func dhcpFrame(t testing.TB, mt layers.DHCPMsgType, xid uint32, yiaddr string) []byte {
	d := &layers.DHCPv4{Operation: layers.DHCPOpReply, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6,
		Xid: xid, ClientIP: net.IPv4zero.To4(), YourClientIP: net.ParseIP(yiaddr).To4(),
		NextServerIP: net.IPv4zero.To4(), RelayAgentIP: net.IPv4zero.To4(), ClientHWAddr: macB,
		Options: layers.DHCPOptions{
			layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(mt)}),
			layers.NewDHCPOption(layers.DHCPOptServerID, []byte{198, 51, 100, 1}),
			layers.NewDHCPOption(layers.DHCPOptLeaseTime, []byte{0, 0, 0x0e, 0x10}),
		}}
	if mt == layers.DHCPMsgTypeDiscover || mt == layers.DHCPMsgTypeRequest {
		d.Operation = layers.DHCPOpRequest
	}
	return ethIPv4UDP(t, "198.51.100.1", yiaddr, 67, 68, d)
}

func tcpFrame(t testing.TB) []byte {
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
		SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 5201, SYN: true, Window: 64240}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, eth, ip, tcp)
}

func icmpEcho(t testing.TB) []byte {
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4,
		SrcIP: net.IP{198, 51, 100, 1}, DstIP: net.IP{198, 51, 100, 2}}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 3}
	return serialize(t, eth, ip, icmp, gopacket.Payload([]byte("ping")))
}

var testKey = []byte("test-site-key-0123456789abcdef")

func rhcpProbe(t testing.TB, seq uint64) []byte {
	t.Helper()
	m := rhcp.Message{Type: rhcp.TypeProbe, ClientID: "ESN-0001",
		Address: netip.MustParsePrefix("203.0.113.21/24"), Gateway: netip.MustParseAddr("192.0.2.1"),
		Routes: []rhcp.Route{{Dst: netip.MustParsePrefix("198.51.100.0/24")}},
		Server: netip.MustParseAddr("198.51.100.1"), Sequence: seq,
		Issued: time.Unix(1_800_000_000, 0), Lifetime: 300 * time.Second}
	b, err := m.Marshal(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rhcpStop(t testing.TB, seq uint64) []byte {
	t.Helper()
	m := rhcp.Message{Type: rhcp.TypeStop, ClientID: "ESN-0001",
		Address: netip.MustParsePrefix("203.0.113.21/24"), Sequence: seq, AckSeq: 41}
	b, err := m.Marshal(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tunnelMessages runs a real handshake and returns a request, a response
// (tunnel index idx) and a heartbeat sent to the server.
func tunnelMessages(t testing.TB, idx uint32) (req, resp, hb []byte) {
	t.Helper()
	server, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	client, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	req, in, err := tunnel.Initiate(client, tunnel.PublicKey(server.Public), 77, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	acc, _, err := tunnel.NewResponder(server, 0).Accept(req, netip.MustParseAddrPort("203.0.113.9:4000"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err = acc.Respond(idx, tunnel.Assignment{Address: netip.MustParsePrefix("198.19.0.2/24"),
		Gateway: netip.MustParseAddr("198.19.0.1"), Idle: 60, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	sess, _, err := in.Complete(resp, client.Public)
	if err != nil {
		t.Fatal(err)
	}
	hb = sess.Seal(nil, tunnel.TypeHeartbeat, nil)
	return req, resp, hb
}
