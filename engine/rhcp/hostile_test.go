package rhcp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
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

// deviceRun starts the RHCP client alone on the site's device and waits for
// its packet socket.
func deviceRun(t *testing.T, s *site, ctx context.Context) func() {
	t.Helper()
	stop := s.run(ctx, engine.NodeSpec{Name: "device", Host: s.device, Roles: []engine.Role{NewClient(clientConfig("ESN-0001"), nil)}})
	s.wait(time.Second, "device", engine.KindAddressAdded, map[string]string{"source": "ipcp"})
	time.Sleep(50 * time.Millisecond) // packet socket open
	return stop
}

// sendProbe signs m and puts it on the device's link, to the maintenance
// address of the default probe (m.Address may not be an IPv4 address).
func sendProbe(t *testing.T, s *site, m *Message) {
	t.Helper()
	b, err := m.Marshal(testKey)
	if err != nil {
		t.Fatal(err)
	}
	s.device.Inject("eth0", BuildPacket(netip.MustParseAddrPort("198.51.100.1:6655"), netip.MustParseAddrPort("203.0.113.10:6655"), b))
}

// hostState is the device's addresses and routes, to compare before and
// after.
func hostState(t *testing.T, h interface {
	Addresses(string) ([]engine.Address, error)
	Routes() ([]engine.Route, error)
}) string {
	t.Helper()
	as, _ := h.Addresses("")
	rs, _ := h.Routes()
	return fmt.Sprint(as, rs)
}

// TestHostileProbeTouchesNothing: probes signed with the site key whose
// values are hostile are refused before anything touches the host: the
// fake host's transcript has nothing after the probe.
func TestHostileProbeTouchesNothing(t *testing.T) {
	s := newSite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := deviceRun(t, s, ctx)
	defer stop()
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	for i, tc := range []struct {
		name string
		mut  func(*Message)
		want string // in the problem reported
	}{
		{"limited broadcast", func(m *Message) { m.Address = pfx("255.255.255.255/32") }, "limited broadcast"},
		{"loopback", func(m *Message) { m.Address = pfx("127.0.0.1/8") }, "loopback"},
		{"multicast", func(m *Message) { m.Address = pfx("224.0.0.5/24") }, "multicast"},
		{"class E", func(m *Message) { m.Address = pfx("240.0.0.1/24") }, "class E"},
		{"unspecified /0", func(m *Message) { m.Address = pfx("0.0.0.0/0") }, "this network"},
		{"/0 prefix", func(m *Message) { m.Address = pfx("203.0.113.10/0") }, "/0 is too short"},
		{"/4 prefix", func(m *Message) { m.Address = pfx("203.0.113.10/4") }, "/4 is too short"},
		{"link-local", func(m *Message) { m.Address = pfx("169.254.10.10/16") }, "link-local"},
		{"network address", func(m *Message) { m.Address = pfx("203.0.113.0/24") }, "network address"},
		{"subnet broadcast", func(m *Message) { m.Address = pfx("203.0.113.255/24") }, "broadcast address"},
		{"IPv6 loopback", func(m *Message) { m.Address = pfx("::1/128") }, "loopback"},
		{"default route", func(m *Message) { m.Routes = []Route{{Dst: pfx("0.0.0.0/0")}} }, "too short"},
		{"half the Internet", func(m *Message) { m.Routes = []Route{{Dst: pfx("0.0.0.0/1")}} }, "too short"},
		{"route to loopback", func(m *Message) { m.Routes = []Route{{Dst: pfx("127.0.0.0/8")}} }, "loopback"},
		{"route to multicast", func(m *Message) { m.Routes = []Route{{Dst: pfx("224.0.0.0/8")}} }, "multicast"},
		{"route with host bits", func(m *Message) { m.Routes = []Route{{Dst: pfx("198.51.100.7/24")}} }, "host bits"},
		{"via loopback", func(m *Message) { m.Routes = []Route{{Dst: pfx("198.51.100.0/24"), Via: addr("127.0.0.1")}} }, "loopback"},
		{"via broadcast", func(m *Message) { m.Routes = []Route{{Dst: pfx("198.51.100.0/24"), Via: addr("255.255.255.255")}} }, "broadcast"},
		{"via multicast", func(m *Message) { m.Routes = []Route{{Dst: pfx("198.51.100.0/24"), Via: addr("224.0.0.1")}} }, "multicast"},
		{"via unspecified", func(m *Message) { m.Routes = []Route{{Dst: pfx("198.51.100.0/24"), Via: addr("0.0.0.0")}} }, "this network"},
		{"via off the link", func(m *Message) { m.Routes = []Route{{Dst: pfx("198.51.100.0/24"), Via: addr("198.18.0.99")}} }, "not on the link"},
		{"gateway loopback", func(m *Message) { m.Gateway = addr("127.0.0.1") }, "loopback"},
		{"gateway broadcast", func(m *Message) { m.Gateway = addr("255.255.255.255") }, "broadcast"},
		{"gateway subnet broadcast", func(m *Message) { m.Gateway = addr("203.0.113.255") }, "broadcast"},
		{"gateway unspecified", func(m *Message) { m.Gateway = addr("0.0.0.0") }, "this network"},
		{"gateway own address", func(m *Message) { m.Gateway = addr("203.0.113.10") }, "own address"},
		{"gateway off the link", func(m *Message) { m.Gateway = addr("198.18.0.99") }, "not on the link"},
		{"dhcp server multicast", func(m *Message) { m.DHCPServer = addr("224.0.0.1") }, "multicast"},
	} {
		if i > 0 && i%maxRejectEvents == 0 {
			time.Sleep(1100 * time.Millisecond) // rejections are reported at most maxRejectEvents a second
		}
		func() {
			before := len(s.device.Transcript())
			m := testProbe()
			now := time.Now()
			m.Issued, m.Sequence = now, uint64(now.UnixNano())+uint64(i)
			tc.mut(m)
			sendProbe(t, s, m)
			e := s.wait(time.Second, "device", engine.KindRHCPProbeRejected, map[string]string{"reason": ReasonRefusedValue, "seq": fmt.Sprint(m.Sequence)})
			if p := fmt.Sprint(e.Fields["problem"]); !strings.Contains(p, tc.want) {
				t.Errorf("%s: problem %q, want it to say %q", tc.name, p, tc.want)
			}
			if tr := s.device.Transcript()[before:]; len(tr) != 0 {
				t.Errorf("%s: the hostile probe touched the host:\n%s", tc.name, strings.Join(tr, "\n"))
			}
		}()
	}
	// A sane probe after them is still taken.
	m := testProbe()
	m.Issued, m.Sequence = time.Now(), uint64(time.Now().UnixNano())+1000
	sendProbe(t, s, m)
	s.wait(time.Second, "device", engine.KindAddressAdded, map[string]string{"address": "203.0.113.10/24"})
}

// TestProbeAllOrNothing: a route that fails to be added (fault injected in
// the fake host) undoes the address and the routes added before it; on a
// re-address, the previous probe's values are put back.
func TestProbeAllOrNothing(t *testing.T) {
	s := newSite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := deviceRun(t, s, ctx)
	defer stop()
	pfx := netip.MustParsePrefix
	seq := uint64(time.Now().UnixNano())
	probe := func(address string, routes ...string) *Message {
		m := testProbe()
		seq += 1000
		m.Issued, m.Sequence, m.Address, m.Routes = time.Now(), seq, pfx(address), nil
		for _, r := range routes {
			m.Routes = append(m.Routes, Route{Dst: pfx(r)})
		}
		return m
	}
	failRoute := func(dst string) {
		s.device.SetFault(func(cmd string) error {
			if strings.HasPrefix(cmd, "ip route add "+dst+" ") {
				return errors.New("injected: RTNETLINK answers: No buffer space available")
			}
			return nil
		})
	}

	// The second route fails: the first route and the address are undone.
	empty := hostState(t, s.device)
	failRoute("198.18.0.0/24")
	sendProbe(t, s, probe("203.0.113.10/24", "198.51.100.0/24", "198.18.0.0/24"))
	s.wait(time.Second, "device", engine.KindError, nil)
	if got := hostState(t, s.device); got != empty {
		t.Errorf("device half-configured after a failed step:\n got %s\nwant %s\n%s", got, empty, s.device)
	}
	if !strings.Contains(s.device.String(), "ip route del 198.51.100.0/24 via 192.0.2.1 dev eth0 onlink") ||
		!strings.Contains(s.device.String(), "ip addr del 203.0.113.10/24 dev eth0") {
		t.Errorf("transcript does not show the undo:\n%s", s.device)
	}

	// Without the fault the same values apply.
	s.device.SetFault(nil)
	sendProbe(t, s, probe("203.0.113.10/24", "198.51.100.0/24"))
	s.wait(time.Second, "device", engine.KindRHCPStopSent, nil) // sent once the probe applied
	good := hostState(t, s.device)

	// A re-address whose route fails leaves the device as it was.
	failRoute("198.18.1.0/24")
	sendProbe(t, s, probe("203.0.113.20/24", "198.18.1.0/24"))
	for end := time.Now().Add(time.Second); s.count("device", engine.KindError, time.Time{}) < 2 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := hostState(t, s.device); got != good {
		t.Errorf("failed re-address did not restore the previous probe's values:\n got %s\nwant %s\n%s", got, good, s.device)
	}
}

// TestReaddressRemovesOldRoutes: a probe with a new address replaces the
// previous probe's routes, not only its address.
func TestReaddressRemovesOldRoutes(t *testing.T) {
	s := newSite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := deviceRun(t, s, ctx)
	defer stop()
	first, second := testProbe(), testProbe()
	now := time.Now()
	first.Issued, first.Sequence = now, uint64(now.UnixNano())
	second.Issued, second.Sequence = now, first.Sequence+1000
	second.Address = netip.MustParsePrefix("203.0.113.20/24")
	second.Routes = []Route{{Dst: netip.MustParsePrefix("198.18.0.0/24")}}
	sendProbe(t, s, first)
	s.wait(time.Second, "device", engine.KindRouteAdded, map[string]string{"dst": "198.51.100.0/24"})
	sendProbe(t, s, second)
	s.wait(time.Second, "device", engine.KindRouteAdded, map[string]string{"dst": "198.18.0.0/24"})
	rs, _ := s.device.Routes()
	for _, r := range rs {
		if r.Dst == netip.MustParsePrefix("198.51.100.0/24") {
			t.Errorf("the first probe's route %s is still there after the re-address:\n%s", r, s.device)
		}
	}
	if s.device.HasAddress(netip.MustParseAddr("203.0.113.10")) {
		t.Errorf("the first probe's address is still there:\n%s", s.device)
	}
}
