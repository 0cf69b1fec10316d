package dhcp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/bpf"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
)

func runFilter(t *testing.T, raw []bpf.RawInstruction, frame []byte) bool {
	t.Helper()
	ins, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("filter does not disassemble: %v", ins)
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatalf("filter rejected by the bpf vm: %v", err)
	}
	n, err := vm.Run(frame)
	if err != nil {
		t.Fatalf("run filter: %v", err)
	}
	return n > 0
}

// withIPOptions re-encodes a BuildFrame frame with 4 bytes of IPv4 options
// (IHL 6), so the filter must find the UDP header through the IHL.
func withIPOptions(f []byte) []byte {
	out := make([]byte, 0, len(f)+4)
	out = append(out, f[:ethHeaderLen+ipv4HeaderLen]...)
	out = append(out, 1, 1, 1, 0) // NOP NOP NOP EOL
	out = append(out, f[ethHeaderLen+ipv4HeaderLen:]...)
	ip := out[ethHeaderLen:]
	ip[0] = 0x46
	binary.BigEndian.PutUint16(ip[2:4], binary.BigEndian.Uint16(ip[2:4])+4)
	binary.BigEndian.PutUint16(ip[10:12], 0)
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip[:24], 0))
	return out
}

func TestFiltersAssemble(t *testing.T) {
	for _, p := range [][]bpf.RawInstruction{ClientFilter(), UDPDstPortFilter(6655, true), ARPFilter(netip.MustParseAddr("192.0.2.10"))} {
		if len(p) == 0 || len(p) > 64 {
			t.Fatalf("filter of %d instructions", len(p))
		}
	}
}

func TestClientFilter(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	udp := func(sport, dport uint16) []byte {
		return BuildFrame(Frame{SrcMAC: mac, Src: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), sport),
			Dst: netip.AddrPortFrom(netip.MustParseAddr("255.255.255.255"), dport), Payload: make([]byte, 300)})
	}
	frag := udp(ServerPort, ClientPort)
	binary.BigEndian.PutUint16(frag[ethHeaderLen+6:], 0x0010) // fragment offset 128 bytes
	tcp := udp(ServerPort, ClientPort)
	tcp[ethHeaderLen+9] = 6
	ipv6 := udp(ServerPort, ClientPort)
	binary.BigEndian.PutUint16(ipv6[12:14], 0x86dd)
	arp := BuildARP(ARP{Op: 1, EthSrc: mac, SenderMAC: mac, TargetIP: netip.MustParseAddr("192.0.2.1")})
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"offer to 68", udp(ServerPort, ClientPort), true},
		{"offer to 68 with ip options", withIPOptions(udp(ServerPort, ClientPort)), true},
		{"request to 67", udp(ClientPort, ServerPort), false},
		{"dns", udp(53, 33000), false},
		{"source port 68 only", udp(ClientPort, 5000), false},
		{"non-first fragment", frag, false},
		{"tcp to 68", tcp, false},
		{"not ipv4 ethertype", ipv6, false},
		{"arp", arp, false},
		{"truncated", udp(ServerPort, ClientPort)[:30], false},
		{"empty", nil, false},
	} {
		if got := runFilter(t, ClientFilter(), tc.frame); got != tc.want {
			t.Errorf("%s: accepted = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestUDPDstPortFilterCooked(t *testing.T) {
	f := BuildFrame(Frame{Src: netip.MustParseAddrPort("203.0.113.1:6655"), Dst: netip.MustParseAddrPort("198.51.100.7:6655"), Payload: []byte("probe")})
	other := BuildFrame(Frame{Src: netip.MustParseAddrPort("203.0.113.1:6655"), Dst: netip.MustParseAddrPort("198.51.100.7:6656"), Payload: []byte("x")})
	p := UDPDstPortFilter(6655, true)
	if !runFilter(t, p, f[ethHeaderLen:]) {
		t.Error("cooked filter drops a datagram to its port")
	}
	if runFilter(t, p, other[ethHeaderLen:]) {
		t.Error("cooked filter accepts a datagram to another port")
	}
	if runFilter(t, p, f) {
		t.Error("cooked filter accepts a whole Ethernet frame (offsets must start at the IP header)")
	}
}

func TestARPFilter(t *testing.T) {
	mine := netip.MustParseAddr("192.0.2.10")
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	zero := make(net.HardwareAddr, 6)
	for _, tc := range []struct {
		name string
		a    ARP
		want bool
	}{
		{"reply from the address", ARP{Op: 2, EthSrc: mac, SenderMAC: mac, SenderIP: mine, TargetMAC: mac, TargetIP: netip.MustParseAddr("192.0.2.1")}, true},
		{"another host's probe for it", ARP{Op: 1, EthSrc: mac, SenderMAC: mac, SenderIP: netip.IPv4Unspecified(), TargetMAC: zero, TargetIP: mine}, true},
		{"gratuitous for it", ARP{Op: 1, EthSrc: mac, SenderMAC: mac, SenderIP: mine, TargetMAC: zero, TargetIP: mine}, true},
		{"unrelated request", ARP{Op: 1, EthSrc: mac, SenderMAC: mac, SenderIP: netip.MustParseAddr("192.0.2.1"), TargetMAC: zero, TargetIP: netip.MustParseAddr("192.0.2.2")}, false},
	} {
		if got := runFilter(t, ARPFilter(mine), BuildARP(tc.a)); got != tc.want {
			t.Errorf("%s: accepted = %v, want %v", tc.name, got, tc.want)
		}
	}
	ip := BuildFrame(Frame{SrcMAC: mac, Src: netip.MustParseAddrPort("192.0.2.10:67"), Dst: netip.MustParseAddrPort("192.0.2.10:68")})
	if runFilter(t, ARPFilter(mine), ip) {
		t.Error("arp filter accepts an IPv4 frame")
	}
}

// drivers/fake runs a socket's filter on every injected frame, as the
// kernel does, so unit tests on the fake see what the role would see.
func TestFakeRunsPacketFilter(t *testing.T) {
	h := fake.NewHost("cli", fake.NewNetwork(), "eth0")
	c, err := h.OpenPacket("eth0", engine.PacketOptions{Protocol: engine.EthIPv4, Filter: ClientFilter()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 9}
	h.Inject("eth0", BuildFrame(Frame{SrcMAC: mac, Src: netip.MustParseAddrPort("192.0.2.1:53"), Dst: netip.MustParseAddrPort("192.0.2.9:4000"), Payload: []byte("dns")}))
	h.Inject("eth0", BuildARP(ARP{Op: 1, EthSrc: mac, SenderMAC: mac, TargetIP: netip.MustParseAddr("192.0.2.9")}))
	h.Inject("eth0", BuildFrame(Frame{SrcMAC: mac, Src: netip.MustParseAddrPort("192.0.2.1:67"), Dst: netip.MustParseAddrPort("192.0.2.9:68"), Payload: []byte("offer")}))
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(time.Second))
	n, _, err := c.ReadPacket(buf)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := ParseFrame(buf[:n]); err != nil || string(f.Payload) != "offer" {
		t.Fatalf("first frame read: %+v (%v), want the offer", f, err)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := c.ReadPacket(buf); err == nil {
		t.Error("read a second frame; the filter should have dropped the others")
	}
	// A program the fake cannot run (an ancillary load) is refused.
	anc, _ := bpf.Assemble([]bpf.Instruction{bpf.LoadExtension{Num: bpf.ExtType}, bpf.RetA{}})
	if _, err := h.OpenPacket("eth0", engine.PacketOptions{Filter: anc}); err == nil {
		t.Error("fake accepted a filter with an ancillary load it cannot run")
	}
}
