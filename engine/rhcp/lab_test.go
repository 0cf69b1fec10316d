package rhcp_test

// Integration tests in network namespaces: the embedded rhcp and rhcp-dhcp
// labs, built by drivers/lab, run by engine/site on drivers/linux, checked
// against `ip -n` state and tcpdump captures. They need root (and dnsmasq,
// tcpdump) and skip with a message otherwise.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/rhcp"
	"github.com/fieldcon/fieldcon/engine/site"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// loadLab loads an embedded profile and points its RHCP key files at a
// per-test file, so tests share nothing with the demo or each other.
func loadLab(t *testing.T, name string) *profiles.Profile {
	t.Helper()
	p, err := profiles.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "site.key")
	for i := range p.Nodes {
		if s := p.Nodes[i].RHCPServer; s != nil {
			s.KeyFile = key
		}
		if c := p.Nodes[i].RHCPClient; c != nil {
			c.KeyFile = key
		}
	}
	return p
}

// fastProbes shortens the server's schedule so "no probe after the stop"
// covers many intervals within a short test.
func fastProbes(p *profiles.Profile) {
	for i := range p.Nodes {
		if s := p.Nodes[i].RHCPServer; s != nil {
			s.Interval = profiles.Duration{Duration: 200 * time.Millisecond}
			s.MaxInterval = profiles.Duration{Duration: 400 * time.Millisecond}
		}
	}
}

// events collects a bus's events for assertions.
type events struct {
	mu  sync.Mutex
	all []engine.Event
}

func collect(bus *engine.Bus) *events {
	ev := &events{}
	sub := bus.Subscribe(100000, true)
	go func() {
		for e := range sub.C {
			ev.mu.Lock()
			ev.all = append(ev.all, e)
			ev.mu.Unlock()
		}
	}()
	return ev
}

func match(e engine.Event, node, kind string, fields map[string]string) bool {
	if e.Node != node || e.Kind != kind {
		return false
	}
	for k, v := range fields {
		if fmt.Sprint(e.Fields[k]) != v {
			return false
		}
	}
	return true
}

func (ev *events) find(node, kind string, fields map[string]string) (engine.Event, bool) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, e := range ev.all {
		if match(e, node, kind, fields) {
			return e, true
		}
	}
	return engine.Event{}, false
}

func (ev *events) count(node, kind string, fields map[string]string, after time.Time) int {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	n := 0
	for _, e := range ev.all {
		if e.Time.After(after) && match(e, node, kind, fields) {
			n++
		}
	}
	return n
}

func (ev *events) wait(t *testing.T, d time.Duration, node, kind string, fields map[string]string) engine.Event {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if e, ok := ev.find(node, kind, fields); ok {
			return e
		}
	}
	t.Fatalf("no %s event on %s with %v within %s; events:\n%s", kind, node, fields, d, ev.dump())
	return engine.Event{}
}

func (ev *events) dump() string {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var b strings.Builder
	for _, e := range ev.all {
		fmt.Fprintf(&b, "  %s %-8s %-22s %v\n", e.Time.Format("15:04:05.000"), e.Node, e.Kind, e.Fields)
	}
	return b.String()
}

// running is a site whose engine runs until stop.
type running struct {
	site *site.Site
	stop func()
}

// runSite builds nodes of p in lab l (all when nodes is empty) with stores
// in stateDir and runs the engine; stop cancels it, waits and closes.
func runSite(t *testing.T, p *profiles.Profile, l *lab.Lab, bus *engine.Bus, stateDir string, nodes ...string) *running {
	t.Helper()
	s, err := site.Build(p, site.Options{
		Nodes:    nodes,
		Netns:    func(node string) string { return l.Netns(node) },
		OpenHost: func(netns string) (engine.Host, error) { return linux.Open(netns) },
		StateDir: stateDir,
		Bus:      bus,
	})
	if err != nil {
		t.Fatalf("site: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Engine.Run(ctx) }()
	var once sync.Once
	r := &running{site: s}
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("engine stop: %v", err)
			}
			s.Close()
		})
	}
	t.Cleanup(r.stop)
	return r
}

// ipn runs `ip -n NETNS args...` and returns its output.
func ipn(t *testing.T, netns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", netns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v\n%s", netns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// capture runs tcpdump in a namespace; the returned function stops it (by
// PID) and returns the capture times of the matching packets.
func capture(t *testing.T, netns, iface, filter string) func() []time.Time {
	t.Helper()
	labtest.RequireBinary(t, "tcpdump")
	cmd := exec.Command("ip", "netns", "exec", netns, "tcpdump", "-i", iface, "-n", "-l", "-tt", "-U", filter)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &labtest.LockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	var mu sync.Mutex
	var times []time.Time
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 {
				continue
			}
			if secs, err := strconv.ParseFloat(f[0], 64); err == nil {
				mu.Lock()
				times = append(times, time.Unix(0, int64(secs*1e9)))
				mu.Unlock()
			}
		}
	}()
	// tcpdump needs a moment to attach before packets count.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && !strings.Contains(stderr.String(), "listening on"); {
		time.Sleep(20 * time.Millisecond)
	}
	var once sync.Once
	stop := func() []time.Time {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-read
			_ = cmd.Wait()
		})
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), times...)
	}
	t.Cleanup(func() { stop() })
	return stop
}

func storedAllocation(t *testing.T, path, id string) rhcp.Allocation {
	t.Helper()
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var a rhcp.Allocation
	if err := st.Get("rhcp.allocations", id, &a); err != nil {
		t.Fatalf("stored allocation of %s: %v", id, err)
	}
	return a
}

// TestLabRHCP: the device gets the maintenance address and routes; the
// server gets the stop and stops probing — a capture on the server link
// counts the probes for the device's address after the stop: zero.
func TestLabRHCP(t *testing.T) {
	labtest.RequireRoot(t)
	p := loadLab(t, "rhcp")
	fastProbes(p)
	l := labtest.Up(t, p)
	probes := capture(t, l.Netns("server"), "eth0", "udp port 6655 and dst host 203.0.113.10")
	bus := engine.NewBus(10000)
	ev := collect(bus)
	state := t.TempDir()
	r := runSite(t, p, l, bus, state)
	ev.wait(t, 10*time.Second, "device", engine.KindAddressAdded, map[string]string{"address": "203.0.113.10/24", "source": "rhcp"})
	stopped := ev.wait(t, 10*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"client_id": "ESN-0001"}).Time
	ev.wait(t, 5*time.Second, "device", engine.KindMechanismWon, map[string]string{"mechanism": "rhcp"})
	time.Sleep(2 * time.Second) // ≥ 5 probe intervals of the fast schedule
	times := probes()
	var before, after int
	for _, at := range times {
		if at.After(stopped) {
			after++
		} else {
			before++
		}
	}
	t.Logf("capture on server:eth0: %d probes before the stop, %d after", before, after)
	if before == 0 {
		t.Error("the capture saw no probe at all")
	}
	if after != 0 {
		t.Errorf("%d probes on the wire after the stop", after)
	}
	if n := ev.count("server", engine.KindRHCPProbeSent, nil, stopped); n != 0 {
		t.Errorf("%d rhcp.probe.sent after the stop", n)
	}
	dev := l.Netns("device")
	if a := ipn(t, dev, "-4", "addr", "show", "dev", "eth0"); !strings.Contains(a, "inet 203.0.113.10/24") || !strings.Contains(a, "inet 192.0.2.2 peer 192.0.2.1/32") {
		t.Errorf("device addresses:\n%s", a)
	}
	if rt := ipn(t, dev, "-4", "route"); !strings.Contains(rt, "198.51.100.0/24 via 192.0.2.1 dev eth0 onlink") {
		t.Errorf("device routes:\n%s", rt)
	}
	if rt := ipn(t, l.Netns("router"), "-4", "route"); !strings.Contains(rt, "203.0.113.10 via 192.0.2.2 dev eth1 onlink") {
		t.Errorf("router routes:\n%s", rt)
	}
	if stop, ok := ev.find("server", engine.KindRHCPStopReceived, nil); ok && !strings.HasPrefix(fmt.Sprint(stop.Fields["from"]), "203.0.113.10:") {
		t.Errorf("stop came from %v, want the maintenance address", stop.Fields["from"])
	}
	r.stop()
	if a := storedAllocation(t, filepath.Join(state, "server.db"), "ESN-0001"); a.State != rhcp.StateConfirmed {
		t.Errorf("stored state %q, want confirmed", a.State)
	}
	// Not persistent: stopping the engine removed the address.
	if a := ipn(t, dev, "-4", "addr", "show", "dev", "eth0"); strings.Contains(a, "203.0.113.10") {
		t.Errorf("address left after stop:\n%s", a)
	}
}

// TestLabRHCPPlusDHCP: temporary address by RHCP, then unicast DHCP to
// dnsmasq (a real peer started by the lab's dnsmasq role): the formal
// address is configured, the temporary one is gone and the server's store
// shows it reclaimed.
func TestLabRHCPPlusDHCP(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireBinary(t, "dnsmasq")
	p := loadLab(t, "rhcp-dhcp")
	fastProbes(p)
	l := labtest.Up(t, p)
	bus := engine.NewBus(10000)
	ev := collect(bus)
	state := t.TempDir()
	r := runSite(t, p, l, bus, state)
	ev.wait(t, 10*time.Second, "device", engine.KindAddressAdded, map[string]string{"address": "203.0.113.10/24", "source": "rhcp"})
	formal := ev.wait(t, 30*time.Second, "device", engine.KindAddressAdded, map[string]string{"source": "dhcp"})
	addr := fmt.Sprint(formal.Fields["address"])
	ev.wait(t, 5*time.Second, "device", engine.KindAddressRemoved, map[string]string{"address": "203.0.113.10/24"})
	ev.wait(t, 10*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"type": "release", "formal": addr})
	ev.wait(t, 5*time.Second, "device", engine.KindMechanismWon, map[string]string{"mechanism": "rhcp+dhcp", "address": addr})
	// dnsmasq may answer before the role, 300 ms after the start, lists its
	// pid: wait for it a little.
	var steps []string
	for end := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		steps = nil
		snap := r.site.Engine.Snapshot()
		for _, role := range snap.Node("dhcp").Roles {
			if role.Kind == "dnsmasq" {
				for _, st := range role.Steps {
					steps = append(steps, st.Name)
				}
			}
		}
		if strings.Contains(strings.Join(steps, ","), "pid ") || time.Now().After(end) {
			break
		}
	}
	t.Logf("dnsmasq (steps %v) gave %s", steps, addr)
	if !strings.Contains(strings.Join(steps, ","), "pid ") {
		t.Errorf("dnsmasq role steps %v lack its pid", steps)
	}
	if !strings.HasPrefix(addr, "203.0.113.1") || !strings.HasSuffix(addr, "/24") {
		t.Errorf("formal address %s is not from dnsmasq's pool 203.0.113.100-199/24", addr)
	}
	a := ipn(t, l.Netns("device"), "-4", "addr", "show", "dev", "eth0")
	if !strings.Contains(a, "inet "+addr) || strings.Contains(a, "203.0.113.10/") {
		t.Errorf("device addresses (want %s, not 203.0.113.10):\n%s", addr, a)
	}
	// dnsmasq's own lease file is not ours to read across namespaces; its
	// answer is the address the device now has. The server's store:
	r.stop()
	got := storedAllocation(t, filepath.Join(state, "server.db"), "ESN-0001")
	if got.State != rhcp.StateReclaimed || got.Formal.String() != addr {
		t.Errorf("stored allocation %+v, want reclaimed with formal %s", got, addr)
	}
}

// TestLabServerRestart: the server runs as its own site; after the device
// confirmed, the server is stopped and started again on the same store. The
// allocations survive (a pool client keeps its address) and the confirmed
// device is not probed: no rhcp.probe.sent for it and nothing on the wire.
func TestLabServerRestart(t *testing.T) {
	labtest.RequireRoot(t)
	p := loadLab(t, "rhcp")
	fastProbes(p)
	srv := p.Node("server").RHCPServer
	srv.Pool = &profiles.Prefix{Prefix: mustPrefix("203.0.113.0/24")}
	srv.Clients = append(srv.Clients, profiles.RHCPClientEntry{ID: "ESN-0002"}) // no device: probed forever
	l := labtest.Up(t, p)
	bus := engine.NewBus(10000)
	ev := collect(bus)
	state := t.TempDir()
	runSite(t, p, l, bus, t.TempDir(), "router", "device")
	server := runSite(t, p, l, bus, state, "server")
	ev.wait(t, 10*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"client_id": "ESN-0001"})
	pool := ev.wait(t, 5*time.Second, "server", engine.KindRHCPProbeSent, map[string]string{"client_id": "ESN-0002"})
	server.stop() // a kill -9 loses nothing more: every change is synced before it is acted on

	probes := capture(t, l.Netns("server"), "eth0", "udp port 6655 and dst host 203.0.113.10")
	restarted := time.Now()
	server = runSite(t, p, l, bus, state, "server")
	ev.waitAfter(t, restarted, 5*time.Second, "server", engine.KindRHCPProbeSent, map[string]string{"client_id": "ESN-0002", "address": fmt.Sprint(pool.Fields["address"])})
	time.Sleep(2 * time.Second)
	if n := ev.count("server", engine.KindRHCPProbeSent, map[string]string{"client_id": "ESN-0001"}, restarted); n != 0 {
		t.Errorf("confirmed client probed %d times after the restart", n)
	}
	if n := len(probes()); n != 0 {
		t.Errorf("capture saw %d probes to the confirmed client after the restart", n)
	}
	all := server.site.Engine.Snapshot()
	snap := all.Node("server")
	if len(snap.Probes) != 2 || snap.Probes[0].State != rhcp.StateConfirmed || snap.Probes[1].State != rhcp.StateProbing {
		t.Errorf("allocation table after restart: %+v", snap.Probes)
	}
	t.Logf("after restart: %+v", snap.Probes)
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func (ev *events) waitAfter(t *testing.T, after time.Time, d time.Duration, node, kind string, fields map[string]string) engine.Event {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		ev.mu.Lock()
		for _, e := range ev.all {
			if e.Time.After(after) && match(e, node, kind, fields) {
				ev.mu.Unlock()
				return e
			}
		}
		ev.mu.Unlock()
	}
	t.Fatalf("no %s event on %s with %v after %s; events:\n%s", kind, node, fields, after.Format("15:04:05.000"), ev.dump())
	return engine.Event{}
}

// TestLabProbeCachedWhileLinkDown: the device's cable is pulled; the router
// keeps the probe that arrives meanwhile; the server then goes away, so
// only the cached probe can address the device when the cable is back.
func TestLabProbeCachedWhileLinkDown(t *testing.T) {
	labtest.RequireRoot(t)
	p := loadLab(t, "rhcp")
	l := labtest.Up(t, p)
	bus := engine.NewBus(10000)
	ev := collect(bus)
	runSite(t, p, l, bus, t.TempDir(), "router", "device")
	ev.wait(t, 5*time.Second, "device", engine.KindAddressAdded, map[string]string{"source": "ipcp"})
	time.Sleep(300 * time.Millisecond) // roles settled: routes in, sockets open
	cable := profiles.Endpoint{Node: "device", Iface: "eth0"}
	if err := lab.SetLinkUp(l, cable, false); err != nil {
		t.Fatal(err)
	}
	server := runSite(t, p, l, bus, t.TempDir(), "server")
	cached := ev.wait(t, 10*time.Second, "router", engine.KindRHCPProbeReceived, map[string]string{"cached": "true", "dst": "203.0.113.10"})
	server.stop()
	time.Sleep(200 * time.Millisecond)
	if _, ok := ev.find("device", engine.KindRHCPProbeReceived, nil); ok {
		t.Fatal("the device got a probe while its link was down")
	}
	if err := lab.SetLinkUp(l, cable, true); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, 10*time.Second, "router", engine.KindRHCPProbeSent, map[string]string{"cached": "true"})
	ev.wait(t, 10*time.Second, "device", engine.KindAddressAdded, map[string]string{"address": "203.0.113.10/24", "source": "rhcp"})
	t.Logf("probe cached at %s, delivered after the link came up", cached.Time.Format("15:04:05.000"))
	if a := ipn(t, l.Netns("device"), "-4", "addr", "show", "dev", "eth0"); !strings.Contains(a, "inet 203.0.113.10/24") {
		t.Errorf("device addresses:\n%s", a)
	}
}

// TestLabLoss runs both labs with the lab's own 10% loss on every link
// (netem, or drivers/lab's nft egress drop without it): slower, but the
// device ends with its address and the server stops probing.
func TestLabLoss(t *testing.T) {
	labtest.RequireRoot(t)
	for _, name := range []string{"rhcp", "rhcp-dhcp"} {
		t.Run(name, func(t *testing.T) {
			if name == "rhcp-dhcp" {
				labtest.RequireBinary(t, "dnsmasq")
			}
			p := loadLab(t, name)
			fastProbes(p)
			l := lossyLab(t, p, 10)
			rounds := map[string]int{"rhcp": 5, "rhcp-dhcp": 3}[name]
			for round := 1; round <= rounds; round++ {
				lossRound(t, name, l, p, round)
			}
		})
	}
}

// lossRound runs one acquisition over the lossy lab with a fresh server
// state, and undoes it at the end so the next round starts over.
func lossRound(t *testing.T, name string, l *lab.Lab, p *profiles.Profile, round int) {
	t.Helper()
	bus := engine.NewBus(10000)
	ev := collect(bus)
	state := t.TempDir()
	start := time.Now()
	r := runSite(t, p, l, bus, state)
	won := ev.wait(t, 90*time.Second, "device", engine.KindMechanismWon, nil)
	want := rhcp.StateConfirmed
	if name == "rhcp-dhcp" {
		want = rhcp.StateReclaimed
	}
	// The stop (or release) may be lost: the server keeps probing until one
	// gets through; wait until it is stored.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		rows := r.site.Engine.Snapshot()
		if n := rows.Node("server"); n != nil && len(n.Probes) == 1 && n.Probes[0].State == want {
			break
		}
	}
	done := time.Now()
	sent := ev.count("server", engine.KindRHCPProbeSent, nil, start)
	rejected := ev.count("device", engine.KindRHCPProbeRejected, nil, start)
	t.Logf("round %d, 10%% loss: %s won %s after %s, server %s after %s, %d probes sent, %d rejected",
		round, won.Fields["mechanism"], won.Fields["address"], won.Time.Sub(start).Round(time.Millisecond), want, done.Sub(start).Round(time.Millisecond), sent, rejected)
	if rejected > 0 {
		t.Errorf("probes rejected under loss (a lost packet must not look like an attack):\n%s", ev.dump())
	}
	r.stop()
	if a := storedAllocation(t, filepath.Join(state, "server.db"), "ESN-0001"); a.State != want {
		t.Errorf("stored state %q, want %q", a.State, want)
	}
}

// lossyLab brings p's lab up with pct% loss on every link, as a profile
// would say it (`loss = 10` on each [[lab.link]]): drivers/lab uses netem
// when the kernel has it and a netdev egress drop rule otherwise. At cleanup
// it counts what the links dropped, so a lab that silently lost no packet
// fails the test instead of passing as "lossy".
func lossyLab(t *testing.T, p *profiles.Profile, pct int) *lab.Lab {
	t.Helper()
	for i := range p.Lab.Links {
		p.Lab.Links[i].Loss = float64(pct)
	}
	l := labtest.Up(t, p)
	t.Cleanup(func() {
		total := 0
		for _, n := range p.Nodes {
			dropped := labDrops(t, l.Netns(n.Name))
			t.Logf("loss on %s: %d frames dropped", n.Name, dropped)
			total += dropped
		}
		if total == 0 {
			t.Errorf("the lab's %d%% loss dropped no frame at all", pct)
		}
	})
	return l
}

// labDrops sums the frames the lab's loss dropped in one namespace: the
// counters of drivers/lab's netdev egress rules (`nft list table netdev
// fieldcon_lab`) and netem's "dropped" (`tc -s qdisc show`).
func labDrops(t *testing.T, ns string) int {
	t.Helper()
	total := 0
	count := func(out []byte, word string) {
		f := strings.Fields(string(out))
		for i := 0; i+1 < len(f); i++ {
			if strings.TrimPrefix(f[i], "(") == word {
				n, err := strconv.Atoi(strings.TrimSuffix(f[i+1], ","))
				if err == nil {
					total += n
				}
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "netdev", "fieldcon_lab").CombinedOutput(); err == nil {
		count(out, "packets")
	}
	if out, err := exec.Command("tc", "-n", ns, "-s", "qdisc", "show").CombinedOutput(); err == nil && strings.Contains(string(out), "netem") {
		count(out, "dropped")
	}
	return total
}

// TestLabDemo: the embedded demo's RHCP part works (the server addresses the
// device through the access router).
func TestLabDemo(t *testing.T) {
	labtest.RequireRoot(t)
	p := loadLab(t, "demo")
	l := labtest.Up(t, p)
	bus := engine.NewBus(10000)
	ev := collect(bus)
	runSite(t, p, l, bus, t.TempDir())
	ev.wait(t, 15*time.Second, "device", engine.KindMechanismWon, map[string]string{"mechanism": "rhcp", "address": "203.0.113.10/24"})
	ev.wait(t, 10*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"client_id": "ESN-0001"})
	if a := ipn(t, l.Netns("device"), "-4", "addr", "show", "dev", "eth0"); !strings.Contains(a, "inet 203.0.113.10/24") {
		t.Errorf("device addresses:\n%s", a)
	}
}

// TestLabRHCPPlusDHCPKea is TestLabRHCPPlusDHCP against ISC Kea instead of
// dnsmasq (they differ on relayed unicast; DESIGN.md "Notes from the
// field"). Kea runs in the DHCP node's namespace, started and stopped by PID
// here.
func TestLabRHCPPlusDHCPKea(t *testing.T) {
	labtest.RequireRoot(t)
	kea := labtest.RequireBinary(t, "kea-dhcp4")
	p := loadLab(t, "rhcp-dhcp")
	fastProbes(p)
	p.Node("dhcp").Dnsmasq = nil
	l := labtest.Up(t, p)
	bus := engine.NewBus(10000)
	ev := collect(bus)
	runSite(t, p, l, bus, t.TempDir(), "dhcp")
	ev.wait(t, 5*time.Second, "dhcp", engine.KindAddressAdded, map[string]string{"address": "198.18.0.2/24"})

	dir := t.TempDir()
	conf := filepath.Join(dir, "kea-dhcp4.conf")
	cfg := fmt.Sprintf(`{"Dhcp4": {
  "interfaces-config": {"interfaces": ["eth0"], "dhcp-socket-type": "udp"},
  "lease-database": {"type": "memfile", "persist": true, "name": %q, "lfc-interval": 0},
  "valid-lifetime": 3600,
  "subnet4": [{"id": 1, "subnet": "203.0.113.0/24", "pools": [{"pool": "203.0.113.100 - 203.0.113.199"}]}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}]
}}`, filepath.Join(dir, "leases.csv"))
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.Netns("dhcp"), kea, "-c", conf)
	cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+dir, "KEA_LOCKFILE_DIR="+dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("kea output:\n%s", out.String())
		}
	})
	time.Sleep(500 * time.Millisecond)

	state := t.TempDir()
	r := runSite(t, p, l, bus, state, "server", "router", "device")
	formal := ev.wait(t, 30*time.Second, "device", engine.KindAddressAdded, map[string]string{"source": "dhcp"})
	addr := fmt.Sprint(formal.Fields["address"])
	ev.wait(t, 5*time.Second, "device", engine.KindAddressRemoved, map[string]string{"address": "203.0.113.10/24"})
	ev.wait(t, 10*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"type": "release", "formal": addr})
	t.Logf("kea gave %s", addr)
	a := ipn(t, l.Netns("device"), "-4", "addr", "show", "dev", "eth0")
	if !strings.Contains(a, "inet "+addr) || strings.Contains(a, "203.0.113.10/") {
		t.Errorf("device addresses (want %s, not 203.0.113.10):\n%s", addr, a)
	}
	leases, _ := os.ReadFile(filepath.Join(dir, "leases.csv"))
	if !strings.Contains(string(leases), strings.TrimSuffix(addr, "/24")+",") {
		t.Errorf("kea's lease file lacks %s:\n%s", addr, leases)
	}
	// Option 61 is the ESN (type 0, then the text): 00:45:53:4e:2d:30:30:30:31.
	if !strings.Contains(string(leases), "00:45:53:4e:2d:30:30:30:31") {
		t.Errorf("kea's lease is not keyed by the ESN client-id:\n%s", leases)
	}
	r.stop()
	if got := storedAllocation(t, filepath.Join(state, "server.db"), "ESN-0001"); got.State != rhcp.StateReclaimed {
		t.Errorf("stored allocation %+v, want reclaimed", got)
	}
}

// TestLabRHCPPlusDHCPOwnServer runs the rhcp-dhcp lab with fieldcon's own
// DHCP server (engine/dhcp's dhcp_server role) in place of dnsmasq: both
// must work (issue #3).
func TestLabRHCPPlusDHCPOwnServer(t *testing.T) {
	labtest.RequireRoot(t)
	p := loadLab(t, "rhcp-dhcp")
	fastProbes(p)
	d := p.Node("dhcp")
	d.Dnsmasq = nil
	d.DHCPServer = &profiles.DHCPServer{
		Ifaces: []string{"eth0"},
		Pools: []profiles.DHCPPool{{
			Subnet: profiles.Prefix{Prefix: mustPrefix("203.0.113.0/24")},
			Start:  profiles.Addr{Addr: netip.MustParseAddr("203.0.113.100")},
			End:    profiles.Addr{Addr: netip.MustParseAddr("203.0.113.199")},
		}},
	}
	l := labtest.Up(t, p)
	bus := engine.NewBus(10000)
	ev := collect(bus)
	state := t.TempDir()
	r := runSite(t, p, l, bus, state)
	formal := ev.wait(t, 30*time.Second, "device", engine.KindAddressAdded, map[string]string{"source": "dhcp"})
	addr := fmt.Sprint(formal.Fields["address"])
	ev.wait(t, 5*time.Second, "device", engine.KindAddressRemoved, map[string]string{"address": "203.0.113.10/24"})
	ev.wait(t, 10*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"type": "release", "formal": addr})
	ev.wait(t, 5*time.Second, "device", engine.KindMechanismWon, map[string]string{"mechanism": "rhcp+dhcp"})
	t.Logf("fieldcon's dhcp_server gave %s", addr)
	a := ipn(t, l.Netns("device"), "-4", "addr", "show", "dev", "eth0")
	if !strings.Contains(a, "inet "+addr) || strings.Contains(a, "203.0.113.10/") {
		t.Errorf("device addresses (want %s, not 203.0.113.10):\n%s", addr, a)
	}
	r.stop()
	if got := storedAllocation(t, filepath.Join(state, "server.db"), "ESN-0001"); got.State != rhcp.StateReclaimed {
		t.Errorf("stored allocation %+v, want reclaimed", got)
	}
}

// TestLabProbeRejected plays a hostile or confused server from the server's
// namespace: probes with a bad HMAC, another device's ID, an expired
// validity, garbage, and a replay of an accepted probe. Each is reported with
// its reason and leaves the device's kernel state as it was (`ip -n`).
func TestLabProbeRejected(t *testing.T) {
	labtest.RequireRoot(t)
	p := loadLab(t, "rhcp")
	p.Node("server").RHCPServer = nil // the test is the server
	key := p.Node("device").RHCPClient.KeyFile
	l := labtest.Up(t, p)
	bus := engine.NewBus(10000)
	ev := collect(bus)
	runSite(t, p, l, bus, t.TempDir())
	ev.wait(t, 5*time.Second, "server", engine.KindAddressAdded, map[string]string{"address": "198.51.100.1/24"})
	ev.wait(t, 5*time.Second, "device", engine.KindAddressAdded, map[string]string{"source": "ipcp"})
	time.Sleep(300 * time.Millisecond)
	siteKey, err := rhcp.KeySource{File: key}.Load()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := labtest.Host(t, l, "server").ListenUDP(netip.MustParseAddrPort("198.51.100.1:6655"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dev := l.Netns("device")
	before := ipn(t, dev, "-4", "addr", "show") + ipn(t, dev, "-4", "route")
	var seq rhcp.Sequencer
	probe := func(mut func(*rhcp.Message)) *rhcp.Message {
		now := time.Now()
		m := &rhcp.Message{Type: rhcp.TypeProbe, ClientID: "ESN-0001", Address: netip.MustParsePrefix("203.0.113.10/24"),
			Gateway: netip.MustParseAddr("192.0.2.1"), Routes: []rhcp.Route{{Dst: netip.MustParsePrefix("198.51.100.0/24")}},
			Server: netip.MustParseAddr("198.51.100.1"), Sequence: seq.Next(now), Issued: now, Lifetime: time.Minute}
		mut(m)
		return m
	}
	send := func(b []byte) {
		if _, err := conn.WriteToUDPAddrPort(b, netip.MustParseAddrPort("203.0.113.10:6655")); err != nil {
			t.Fatal(err)
		}
	}
	sendProbe := func(m *rhcp.Message, k []byte) {
		b, err := m.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		send(b)
	}
	for _, c := range []struct {
		reason string
		do     func()
	}{
		{"bad-hmac", func() { sendProbe(probe(func(*rhcp.Message) {}), []byte("a key from another site, 32 byte")) }},
		{rhcp.ReasonWrongClient, func() { sendProbe(probe(func(m *rhcp.Message) { m.ClientID = "ESN-0002" }), siteKey) }},
		{rhcp.ReasonExpired, func() {
			sendProbe(probe(func(m *rhcp.Message) { m.Issued = time.Now().Add(-time.Hour) }), siteKey)
		}},
		{"truncated", func() { send([]byte("RH\x01\x01")) }},
	} {
		c.do()
		ev.wait(t, 3*time.Second, "device", engine.KindRHCPProbeRejected, map[string]string{"reason": c.reason})
	}
	time.Sleep(200 * time.Millisecond)
	if after := ipn(t, dev, "-4", "addr", "show") + ipn(t, dev, "-4", "route"); after != before {
		t.Fatalf("rejected probes changed the device:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// A good probe is taken; the same bytes again are a replay.
	good, err := probe(func(*rhcp.Message) {}).Marshal(siteKey)
	if err != nil {
		t.Fatal(err)
	}
	send(good)
	ev.wait(t, 3*time.Second, "device", engine.KindAddressAdded, map[string]string{"address": "203.0.113.10/24"})
	send(good)
	ev.wait(t, 3*time.Second, "device", engine.KindRHCPProbeRejected, map[string]string{"reason": rhcp.ReasonReplay})
	if a := ipn(t, dev, "-4", "addr", "show", "dev", "eth0"); !strings.Contains(a, "inet 203.0.113.10/24") {
		t.Errorf("device addresses after the good probe:\n%s", a)
	}
}

// TestLabServerKill9 kills the server process with SIGKILL (no undo, no
// clean close of its store) and starts it again: allocations survive and a
// confirmed device is not probed. The server runs as `fieldcon run --node
// server` on the lab; router and device run in this test's engine.
func TestLabServerKill9(t *testing.T) {
	labtest.RequireRoot(t)
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: needs the go tool to build the fieldcon binary it kills")
	}
	bin := filepath.Join(t.TempDir(), "fieldcon")
	if out, err := exec.Command(gobin, "build", "-o", bin, "github.com/fieldcon/fieldcon/cmd/fieldcon").CombinedOutput(); err != nil {
		t.Fatalf("build fieldcon: %v\n%s", err, out)
	}
	src, err := profiles.EmbeddedSource("rhcp")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := strings.NewReplacer(
		`key_file = "/run/fieldcon/rhcp/site.key"`, `key_file = "`+filepath.Join(dir, "site.key")+`"`,
		`interval = "1s"`, `interval = "200ms"`,
		`max_interval = "8s"`, `max_interval = "400ms"`,
		`lifetime = "5m"`, "lifetime = \"5m\"\npool = \"203.0.113.0/24\"",
		"address = \"203.0.113.10/24\"\n", "address = \"203.0.113.10/24\"\n[[node.rhcp_server.clients]]\nid = \"ESN-0002\"\n",
	).Replace(string(src))
	path := filepath.Join(dir, "rhcp-kill.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := profiles.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	l := labtest.Up(t, p)
	bus := engine.NewBus(10000)
	ev := collect(bus)
	runSite(t, p, l, bus, t.TempDir(), "router", "device")
	state, runs := t.TempDir(), t.TempDir()

	server := func() (*exec.Cmd, *events) {
		cmd := exec.Command(bin, "run", "-p", path, "--lab", "--lab-name", l.Name, "--node", "server", "--state", state, "--json")
		// The killed server's run record stays in a directory of the
		// test's, not in the host's /run/fieldcon/runs.
		cmd.Env = append(os.Environ(), "FIELDCON_RUN_DIR="+runs)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = &rhcpStderr{t: t}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got := &events{}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var e engine.Event
				if json.Unmarshal(sc.Bytes(), &e) == nil {
					got.mu.Lock()
					got.all = append(got.all, e)
					got.mu.Unlock()
				}
			}
		}()
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, got
	}
	cmd, first := server()
	first.wait(t, 15*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"client_id": "ESN-0001"})
	pool := first.wait(t, 5*time.Second, "server", engine.KindRHCPProbeSent, map[string]string{"client_id": "ESN-0002"})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	probes := capture(t, l.Netns("server"), "eth0", "udp port 6655 and dst host 203.0.113.10")
	_, second := server()
	second.wait(t, 15*time.Second, "server", engine.KindRHCPProbeSent, map[string]string{"client_id": "ESN-0002", "address": fmt.Sprint(pool.Fields["address"])})
	time.Sleep(2 * time.Second)
	if n := second.count("server", engine.KindRHCPProbeSent, map[string]string{"client_id": "ESN-0001"}, time.Time{}); n != 0 {
		t.Errorf("the confirmed device was probed %d times after the kill", n)
	}
	if n := len(probes()); n != 0 {
		t.Errorf("capture saw %d probes to the confirmed device after the kill", n)
	}
	if _, ok := ev.find("device", engine.KindRHCPProbeReceived, nil); !ok {
		t.Error("the device never got a probe")
	}
	t.Logf("after kill -9 and restart: ESN-0002 still probed at %v, ESN-0001 (confirmed) not probed", pool.Fields["address"])
}

// rhcpStderr forwards a child's stderr to the test log.
type rhcpStderr struct{ t *testing.T }

func (w *rhcpStderr) Write(p []byte) (int, error) {
	w.t.Logf("fieldcon: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestLabArbitration runs the device with mechanisms = ["static", "rhcp"] on
// the real kernel: a static formal address wins and the RHCP client stops
// and undoes what it did; with a formal address already configured, no
// mechanism starts.
func TestLabArbitration(t *testing.T) {
	labtest.RequireRoot(t)
	setup := func(t *testing.T) (*profiles.Profile, *lab.Lab) {
		p := loadLab(t, "rhcp")
		fastProbes(p)
		d := p.Node("device")
		d.Mechanisms = []string{"static", "rhcp"}
		d.Static = &profiles.Static{Addresses: []profiles.StaticAddress{{Iface: "eth0", Address: profiles.Prefix{Prefix: mustPrefix("203.0.113.77/24")}}}}
		return p, labtest.Up(t, p)
	}
	t.Run("static wins", func(t *testing.T) {
		p, l := setup(t)
		bus := engine.NewBus(10000)
		ev := collect(bus)
		runSite(t, p, l, bus, t.TempDir())
		ev.wait(t, 5*time.Second, "device", engine.KindMechanismWon, map[string]string{"mechanism": "static", "address": "203.0.113.77/24"})
		ev.wait(t, 5*time.Second, "device", engine.KindMechanismStopped, map[string]string{"mechanism": "rhcp_client"})
		time.Sleep(200 * time.Millisecond)
		a := ipn(t, l.Netns("device"), "-4", "addr", "show", "dev", "eth0")
		if !strings.Contains(a, "inet 203.0.113.77/24") || strings.Contains(a, "192.0.2.2") || strings.Contains(a, "203.0.113.10") {
			t.Errorf("device addresses (want the static one only; the RHCP client's undone):\n%s", a)
		}
	})
	t.Run("formal present", func(t *testing.T) {
		p, l := setup(t)
		labtest.Exec(t, l.Netns("device"), "ip", "addr", "add", "203.0.113.99/24", "dev", "eth0")
		labtest.Exec(t, l.Netns("device"), "ip", "link", "set", "eth0", "up")
		before := ipn(t, l.Netns("device"), "-4", "addr", "show")
		bus := engine.NewBus(10000)
		ev := collect(bus)
		runSite(t, p, l, bus, t.TempDir())
		ev.wait(t, 5*time.Second, "device", engine.KindMechanismStopped, map[string]string{"mechanism": "static"})
		ev.wait(t, 5*time.Second, "device", engine.KindMechanismStopped, map[string]string{"mechanism": "rhcp_client"})
		time.Sleep(time.Second)
		if _, ok := ev.find("device", engine.KindMechanismWon, nil); ok {
			t.Error("a mechanism won although a formal address existed")
		}
		if after := ipn(t, l.Netns("device"), "-4", "addr", "show"); after != before {
			t.Errorf("device changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}
