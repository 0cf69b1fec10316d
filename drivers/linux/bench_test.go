package linux

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/engine"
)

// BenchmarkUDPRoundTrip: one datagram a0 → b0 and its echo back, through
// sockets the driver created in two namespaces joined by a veth pair.
func BenchmarkUDPRoundTrip(b *testing.B) {
	requireRoot(b)
	ha, hb, _, _ := twoHosts(b)
	srv, err := hb.ListenUDP(netip.MustParseAddrPort("192.0.2.2:0"), engine.UDPOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	cli, err := ha.ListenUDP(netip.AddrPort{}, engine.UDPOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			srv.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	dst := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(srv.LocalAddr().(*net.UDPAddr).Port))
	msg, buf := make([]byte, 100), make([]byte, 2048)
	cli.SetReadDeadline(time.Now().Add(time.Minute))
	b.ResetTimer()
	for b.Loop() {
		if _, err := cli.WriteToUDPAddrPort(msg, dst); err != nil {
			b.Fatal(err)
		}
		if _, _, err := cli.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPacketRead: frames sent from a UDP socket in a and read on a
// raw AF_PACKET socket in b (the RHCP client's receive path).
func BenchmarkPacketRead(b *testing.B) {
	requireRoot(b)
	ha, hb, _, _ := twoHosts(b)
	pc, err := hb.OpenPacket("b0", engine.PacketOptions{Protocol: engine.EthIPv4})
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	cli, err := ha.ListenUDP(netip.AddrPort{}, engine.UDPOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	dst := netip.MustParseAddrPort("192.0.2.2:9") // discard: b has no socket there
	msg, buf := make([]byte, 100), make([]byte, 2048)
	pc.SetReadDeadline(time.Now().Add(time.Minute))
	b.ResetTimer()
	for b.Loop() {
		if _, err := cli.WriteToUDPAddrPort(msg, dst); err != nil {
			b.Fatal(err)
		}
		if _, _, err := pc.ReadPacket(buf); err != nil {
			b.Fatal(err)
		}
	}
}
