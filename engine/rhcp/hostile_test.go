package rhcp

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/engine"
)

// probePacket signs m with the site key and wraps it as the IP packet the
// access router puts on the device's link.
func probePacket(t *testing.T, m *Message) []byte {
	t.Helper()
	b, err := m.Marshal(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return BuildPacket(netip.AddrPortFrom(m.Server, Port), netip.AddrPortFrom(m.Address.Addr(), Port), b)
}

// TestReplayOfRepeatedProbeAfterRestart: the server probes again with the
// address the device already has (its stop was lost); that probe is
// accepted and its sequence must be stored too, so after a restart of the
// device a capture of it is a replay.
func TestReplayOfRepeatedProbeAfterRestart(t *testing.T) {
	s := newSite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t, filepath.Join(t.TempDir(), "device.db"))
	defer st.Close()
	now := time.Now()
	first, again := testProbe(), testProbe()
	first.Issued, first.Sequence = now, uint64(now.UnixNano())
	again.Issued, again.Sequence = now, first.Sequence+1000
	start := func() func() {
		stop := s.run(ctx, engine.NodeSpec{Name: "device", Host: s.device, Store: st, Roles: []engine.Role{NewClient(clientConfig("ESN-0001"), nil)}})
		time.Sleep(100 * time.Millisecond) // packet socket open
		return stop
	}
	stop := start()
	s.device.Inject("eth0", probePacket(t, first))
	s.wait(time.Second, "device", engine.KindAddressAdded, map[string]string{"address": "203.0.113.10/24"})
	s.device.Inject("eth0", probePacket(t, again))
	s.wait(time.Second, "device", engine.KindRHCPProbeReceived, map[string]string{"seq": fmt.Sprint(again.Sequence), "address": "203.0.113.10/24"})
	time.Sleep(50 * time.Millisecond)
	stop()
	restarted := time.Now()
	stop = start()
	defer stop()
	s.device.Inject("eth0", probePacket(t, again))
	s.wait(time.Second, "device", engine.KindRHCPProbeRejected, map[string]string{"reason": ReasonReplay, "seq": fmt.Sprint(again.Sequence)})
	if n := s.count("device", engine.KindRHCPProbeReceived, restarted); n != 0 {
		t.Errorf("the replayed probe was accepted after the restart (%d probe.received events)", n)
	}
}
