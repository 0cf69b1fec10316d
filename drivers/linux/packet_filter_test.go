package linux

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
)

// readAll reads the frames c receives until it has been quiet for quiet.
func readAll(t *testing.T, c engine.PacketConn, quiet time.Duration) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 2048)
	for len(out) < 10000 {
		c.SetReadDeadline(time.Now().Add(quiet))
		n, info, err := c.ReadPacket(buf)
		if err != nil {
			return out
		}
		if info.Direction != engine.DirOut {
			out = append(out, append([]byte(nil), buf[:n]...))
		}
	}
	return out
}

// TestPacketFilterUDPPort attaches the DHCP client's filter (IPv4/UDP to
// port 68) in the kernel. b's link carries a steady stream of datagrams to
// other ports, begun before the socket opens, so a frame queued before the
// filter took effect would show up; the filtered socket must see only the
// datagrams to 68, while an unfiltered socket next to it sees all of them.
func TestPacketFilterUDPPort(t *testing.T) {
	requireRoot(t)
	ha, hb, _, _ := twoHosts(t)
	cli, err := ha.ListenUDP(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 67), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	noise, err := ha.ListenUDP(netip.AddrPort{}, engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer noise.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			noise.WriteToUDPAddrPort([]byte("noise"), netip.MustParseAddrPort("192.0.2.2:4000"))
			noise.WriteToUDPAddrPort([]byte("noise"), netip.MustParseAddrPort("192.0.2.2:67"))
		}
	}()
	var once sync.Once
	stopNoise := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer stopNoise()
	time.Sleep(50 * time.Millisecond)

	all, err := hb.OpenPacket("b0", engine.PacketOptions{Protocol: engine.EthIPv4})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	filtered, err := hb.OpenPacket("b0", engine.PacketOptions{Protocol: engine.EthIPv4, Filter: dhcp.ClientFilter()})
	if err != nil {
		t.Fatal(err)
	}
	defer filtered.Close()
	cooked, err := hb.OpenPacket("b0", engine.PacketOptions{Protocol: engine.EthIPv4, Cooked: true, Filter: dhcp.UDPDstPortFilter(dhcp.ClientPort, true)})
	if err != nil {
		t.Fatal(err)
	}
	defer cooked.Close()
	time.Sleep(50 * time.Millisecond)
	const offers = 5
	for i := 0; i < offers; i++ {
		if _, err := cli.WriteToUDPAddrPort([]byte("offer"), netip.MustParseAddrPort("192.0.2.2:68")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)

	check := func(name string, frames [][]byte, ipOff int) {
		t.Helper()
		bad := 0
		for _, f := range frames {
			if len(f) < ipOff+28 || binary.BigEndian.Uint16(f[ipOff+22:]) != dhcp.ClientPort {
				if bad++; bad > 3 {
					continue
				}
				t.Errorf("%s socket read a frame that is not UDP to 68: % x", name, f[:min(len(f), 48)])
			}
		}
		if len(frames) != offers {
			t.Errorf("%s socket read %d datagrams to 68, want %d", name, len(frames), offers)
		}
	}
	check("filtered", readAll(t, filtered, 200*time.Millisecond), 14)
	check("cooked filtered", readAll(t, cooked, 200*time.Millisecond), 0)
	stopNoise()
	if n := len(readAll(t, all, 200*time.Millisecond)); n < 2*offers {
		t.Errorf("unfiltered socket read %d frames; the noise did not reach b0, so the test proves nothing", n)
	}
}

// TestPacketFilterARP attaches the RFC 5227 probe filter for one address:
// ARP about other addresses, sent from a's raw socket, never reaches it.
func TestPacketFilterARP(t *testing.T) {
	requireRoot(t)
	ha, hb, _, _ := twoHosts(t)
	probed := netip.MustParseAddr("192.0.2.50")
	tx, err := ha.OpenPacket("a0", engine.PacketOptions{Protocol: engine.EthARP})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	rx, err := hb.OpenPacket("b0", engine.PacketOptions{Protocol: engine.EthARP, Filter: dhcp.ARPFilter(probed)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	all, err := hb.OpenPacket("b0", engine.PacketOptions{Protocol: engine.EthARP})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	al, _ := ha.LinkByName("a0")
	zero := make(net.HardwareAddr, 6)
	for i := 0; i < 20; i++ {
		other := dhcp.BuildARP(dhcp.ARP{Op: 1, EthSrc: al.MAC, SenderMAC: al.MAC, SenderIP: netip.MustParseAddr("192.0.2.1"),
			TargetMAC: zero, TargetIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)})})
		if err := tx.WritePacket(other, engine.EthARP, nil); err != nil {
			t.Fatal(err)
		}
	}
	claim := dhcp.BuildARP(dhcp.ARP{Op: 2, EthSrc: al.MAC, SenderMAC: al.MAC, SenderIP: probed, TargetMAC: zero, TargetIP: probed})
	if err := tx.WritePacket(claim, engine.EthARP, nil); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, rx, 300*time.Millisecond)
	if len(got) != 1 {
		t.Fatalf("filtered ARP socket read %d frames, want only the claim of %s", len(got), probed)
	}
	if a, err := dhcp.ParseARP(got[0]); err != nil || a.SenderIP != probed {
		t.Errorf("filtered ARP socket read %+v (%v), want the claim of %s", a, err, probed)
	}
	if n := len(readAll(t, all, 300*time.Millisecond)); n < 21 {
		t.Errorf("unfiltered ARP socket read %d frames, want at least 21", n)
	}
}

// TestSendIPv4 sends a datagram from port 67 of a through the send-only raw
// socket while a UDP socket of a holds 67: b receives it from 192.0.2.1:67,
// and the datagram b sends back to 67 reaches a's socket, not the raw one.
func TestSendIPv4(t *testing.T) {
	requireRoot(t)
	ha, hb, _, _ := twoHosts(t)
	srv, err := ha.ListenUDP(netip.MustParseAddrPort("0.0.0.0:67"), engine.UDPOptions{ReuseAddr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := hb.ListenUDP(netip.MustParseAddrPort("0.0.0.0:68"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	pkt := dhcp.BuildDatagram(netip.MustParseAddrPort("192.0.2.1:67"), netip.MustParseAddrPort("192.0.2.2:68"), []byte("forcerenew"))
	if err := ha.SendIPv4(pkt); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	cli.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := cli.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "forcerenew" || from.Addr().Unmap() != netip.MustParseAddr("192.0.2.1") || from.Port() != 67 {
		t.Fatalf("b read %q from %s (%v), want \"forcerenew\" from 192.0.2.1:67", buf[:n], from, err)
	}
	if _, err := cli.WriteToUDPAddrPort([]byte("request"), netip.MustParseAddrPort("192.0.2.1:67")); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, _, err := srv.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "request" {
		t.Fatalf("a's socket on 67 read %q (%v), want the request", buf[:n], err)
	}
	if err := ha.SendIPv4([]byte{0x60, 0, 0, 0}); err == nil {
		t.Error("SendIPv4 accepted something that is not an IPv4 packet")
	}
}
