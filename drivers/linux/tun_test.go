package linux

import (
	"net/netip"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/engine"
)

// TestTUNReadBuffersOnDemand: the single-packet Read path's batch of
// 64 KiB buffers is allocated by the first Read, not by CreateTUN, so a
// TUN used only through ReadBatch never holds them.
func TestTUNReadBuffersOnDemand(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t)
	h := open(t, ns)
	dev, err := h.CreateTUN("fcr0", 1400)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	td := dev.(*tunDevice)
	if td.bufs != nil {
		t.Fatalf("CreateTUN allocated %d read buffers", len(td.bufs))
	}
	if td.BatchSize() < 1 {
		t.Fatalf("BatchSize() = %d", td.BatchSize())
	}
	if err := h.AddAddress("fcr0", engine.Address{Prefix: netip.MustParsePrefix("198.18.0.1/24")}); err != nil {
		t.Fatal(err)
	}
	h.SetSysctl("net/ipv6/conf/fcr0/disable_ipv6", "1")
	if err := h.SetLinkUp("fcr0", true); err != nil {
		t.Fatal(err)
	}
	c, err := h.ListenUDP(netip.MustParseAddrPort("198.18.0.1:5000"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort([]byte("out through the tun"), netip.MustParseAddrPort("198.18.0.2:6000")); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := dev.Read(buf)
			if err != nil || (n >= 28 && buf[9] == 17 && netip.AddrFrom4([4]byte(buf[16:20])) == netip.MustParseAddr("198.18.0.2")) {
				got <- err
				return
			}
		}
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no datagram read out of the TUN")
	}
	if len(td.bufs) != td.BatchSize() {
		t.Fatalf("after Read: %d read buffers, want %d", len(td.bufs), td.BatchSize())
	}
}
