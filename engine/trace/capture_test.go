package trace

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine/rhcp"
)

// waitFor polls until cond holds or a second passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSessionCapturesEveryNodeAndInterface(t *testing.T) {
	router := fake.NewHost("router", nil, "eth0", "eth1")
	device := fake.NewHost("device", nil, "eth0")
	s := NewSession(SessionConfig{Ring: RingConfig{Summaries: 100, RawBytes: 1 << 16}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.StartAll(ctx, router, "router"); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx, device, "device", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx, device, "device", "eth9"); err == nil {
		t.Error("capture on a missing interface started")
	}
	if got := s.Capturing(); len(got) != 3 || got[0] != (Interface{"device", "eth0", layers.LinkTypeEthernet}) {
		t.Fatalf("capturing %v", got)
	}
	probe := ethIPv4UDP(t, "198.51.100.1", "203.0.113.21", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpProbe(t, 1)))
	stop := ethIPv4UDP(t, "203.0.113.21", "198.51.100.1", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpStop(t, 2)))
	router.Inject("eth1", probe)
	waitFor(t, "the probe on router eth1", func() bool { return s.Ring().Next() == 1 })
	device.Inject("eth0", probe)
	waitFor(t, "the probe on device eth0", func() bool { return s.Ring().Next() == 2 })
	device.Inject("eth0", stop)
	waitFor(t, "the stop", func() bool { return s.Ring().Next() == 3 })

	f, err := ParseFilter("rhcp and node=device")
	if err != nil {
		t.Fatal(err)
	}
	got := s.Ring().RangeFiltered(f, 0, 10)
	if len(got) != 2 || got[0].Type != uint8(rhcp.TypeProbe) || got[1].Type != uint8(rhcp.TypeStop) {
		t.Fatalf("device RHCP: %v", got)
	}
	line := s.Ring().Line(&got[1])
	for _, w := range []string{"device eth0", "RHCP", "stop", `"ESN-0001"`} {
		if !strings.Contains(line, w) {
			t.Errorf("line %q lacks %q", line, w)
		}
	}
	first, _, _ := s.Ring().Get(0)
	if first.Time == 0 || time.Since(time.Unix(0, first.Time)) > time.Minute {
		t.Errorf("capture timestamp %d not set at capture", first.Time)
	}

	for _, st := range s.Stats() {
		want := map[string]uint64{"device eth0": 2, "router eth0": 0, "router eth1": 1}[st.Interface.String()]
		if st.Packets != want || st.Packets > 0 && st.Bytes == 0 {
			t.Errorf("stats %s: %d packets %d bytes, want %d packets", st.Interface, st.Packets, st.Bytes, want)
		}
	}
	s.Stop("device", "eth0")
	device.Inject("eth0", stop)
	router.Inject("eth0", stop)
	waitFor(t, "router eth0 still capturing", func() bool { return s.Ring().Next() == 4 })
	if last, _, _ := s.Ring().Get(3); s.Ring().Interfaces()[last.Iface] != (Interface{"router", "eth0", layers.LinkTypeEthernet}) {
		t.Errorf("frame after stopping device eth0 came from %v", s.Ring().Interfaces()[last.Iface])
	}
	s.StopAll()
	if len(s.Capturing()) != 0 || s.Err() != nil {
		t.Errorf("after StopAll: capturing %v err %v", s.Capturing(), s.Err())
	}
}

func TestSessionPicksUpNewInterfaces(t *testing.T) {
	client := fake.NewHost("client", nil, "eth0")
	s := NewSession(SessionConfig{Ring: RingConfig{Summaries: 100, RawBytes: 1 << 16}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer s.StopAll()
	if err := s.StartAll(ctx, client, "client"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateTUN("tn0", 1420); err != nil {
		t.Fatal(err)
	}
	if err := s.StartAll(ctx, client, "client"); err != nil {
		t.Fatal(err)
	}
	got := s.Capturing()
	if len(got) != 2 || got[1].Name != "tn0" || got[1].LinkType != layers.LinkTypeEthernet && got[1].LinkType != layers.LinkTypeRaw {
		t.Fatalf("capturing %v, want eth0 and the new tn0", got)
	}
	if n := len(s.Ring().Interfaces()); n != 2 {
		t.Errorf("ring has %d interfaces after StartAll twice, want 2", n)
	}
}
