package rhcp

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

const testKeyEnv = "FIELDCON_TEST_RHCP_KEY"

func mustPrefix(s string) *profiles.Prefix { return &profiles.Prefix{Prefix: netip.MustParsePrefix(s)} }
func mustAddr(s string) *profiles.Addr     { return &profiles.Addr{Addr: netip.MustParseAddr(s)} }

func serverConfig(clients ...profiles.RHCPClientEntry) profiles.RHCPServer {
	return profiles.RHCPServer{
		Address:     *mustAddr("198.51.100.1"),
		KeyEnv:      testKeyEnv,
		Pool:        mustPrefix("203.0.113.0/24"),
		Gateway:     mustAddr("192.0.2.1"),
		Routes:      []profiles.RHCPRoute{{Dst: *mustPrefix("198.51.100.0/24")}},
		Interval:    profiles.Duration{Duration: 40 * time.Millisecond},
		MaxInterval: profiles.Duration{Duration: 160 * time.Millisecond},
		Clients:     clients,
	}
}

func clientConfig(id string) profiles.RHCPClient {
	return profiles.RHCPClient{Iface: "eth0", ClientID: id, KeyEnv: testKeyEnv,
		Link: &profiles.RHCPLinkAddress{Address: *mustPrefix("192.0.2.2/32"), Peer: *mustPrefix("192.0.2.1/32")}}
}

// site is a fake RHCP site: a server host, a device host and, between them,
// a stand-in access router that lifts probes for the maintenance address off
// the fake network and puts them on the device's link as IP packets, as the
// kernel's forwarding would.
type site struct {
	t      *testing.T
	net    *fake.Network
	server *fake.Host
	device *fake.Host
	bus    *engine.Bus
	sub    *engine.Subscription

	mu     sync.Mutex
	events []engine.Event
}

// noLeaks fails the test if goroutines started during it are still running
// once it (and its deferred stops) finished, as wireguard-go's tests do.
func noLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		var now int
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if now = runtime.NumGoroutine(); now <= before {
				return
			}
		}
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines leaked:\n%s", now-before, buf[:runtime.Stack(buf, true)])
	})
}

func newSite(t *testing.T) *site {
	noLeaks(t)
	t.Setenv(testKeyEnv, string(testKey))
	n := fake.NewNetwork()
	s := &site{t: t, net: n, server: fake.NewHost("server", n, "eth0"), device: fake.NewHost("device", n, "eth0"), bus: engine.NewBus(1000)}
	if err := s.server.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("198.51.100.1/24")}); err != nil {
		t.Fatal(err)
	}
	s.sub = s.bus.Subscribe(10000, true)
	t.Cleanup(s.sub.Close)
	go func() {
		for e := range s.sub.C {
			s.mu.Lock()
			s.events = append(s.events, e)
			s.mu.Unlock()
		}
	}()
	return s
}

// forward makes the stand-in router deliver datagrams to addr to the device.
func (s *site) forward(ctx context.Context, addr string) {
	r := fake.NewHost("router-"+addr, s.net, "eth0")
	c, err := r.ListenUDP(netip.AddrPortFrom(netip.MustParseAddr(addr), Port), engine.UDPOptions{ReuseAddr: true})
	if err != nil {
		s.t.Fatal(err)
	}
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			s.device.Inject("eth0", BuildPacket(from, netip.AddrPortFrom(netip.MustParseAddr(addr), Port), buf[:n]))
		}
	}()
}

func (s *site) run(ctx context.Context, nodes ...engine.NodeSpec) (stop func()) {
	e := engine.New(s.bus, nil)
	for _, n := range nodes {
		e.AddNode(n)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			s.t.Errorf("engine stop: %v", err)
		}
	}
}

// wait returns the first event matching kind and fields (string compare),
// failing the test after d.
func (s *site) wait(d time.Duration, node, kind string, fields map[string]string) engine.Event {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if e, ok := s.find(node, kind, fields); ok {
			return e
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.t.Fatalf("no %s event on %s with %v within %s; events:\n%s", kind, node, fields, d, s.dump())
	return engine.Event{}
}

func (s *site) find(node, kind string, fields map[string]string) (engine.Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.Node != node || e.Kind != kind {
			continue
		}
		ok := true
		for k, v := range fields {
			if fmt.Sprint(e.Fields[k]) != v {
				ok = false
			}
		}
		if ok {
			return e, true
		}
	}
	return engine.Event{}, false
}

func (s *site) count(node, kind string, after time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.events {
		if e.Node == node && e.Kind == kind && e.Time.After(after) {
			n++
		}
	}
	return n
}

func (s *site) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, e := range s.events {
		fmt.Fprintf(&b, "  %s %s %v\n", e.Node, e.Kind, e.Fields)
	}
	return b.String()
}

func openStore(t *testing.T, path string) *store.Store {
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func storedAllocation(t *testing.T, st *store.Store, id string) Allocation {
	var a Allocation
	if err := st.Get(allocBucket, id, &a); err != nil {
		t.Fatalf("allocation of %s: %v", id, err)
	}
	return a
}

func TestRHCPEndToEndFake(t *testing.T) {
	s := newSite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.forward(ctx, "203.0.113.10")
	st := openStore(t, filepath.Join(t.TempDir(), "server.db"))
	defer st.Close()
	srv := NewServer(serverConfig(profiles.RHCPClientEntry{ID: "ESN-0001", Address: mustPrefix("203.0.113.10/24")}))
	stop := s.run(ctx,
		engine.NodeSpec{Name: "server", Host: s.server, Roles: []engine.Role{srv}, Store: st},
		engine.NodeSpec{Name: "device", Host: s.device, Roles: []engine.Role{NewClient(clientConfig("ESN-0001"), nil)}})
	s.wait(2*time.Second, "device", engine.KindAddressAdded, map[string]string{"address": "203.0.113.10/24", "source": "rhcp"})
	stopAt := s.wait(2*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"client_id": "ESN-0001"}).Time
	// No probe for the client after the stop: wait several max intervals.
	time.Sleep(500 * time.Millisecond)
	if n := s.count("server", engine.KindRHCPProbeSent, stopAt); n != 0 {
		t.Errorf("%d probes sent after the stop", n)
	}
	if a := storedAllocation(t, st, "ESN-0001"); a.State != StateConfirmed {
		t.Errorf("stored state %q, want confirmed", a.State)
	}
	var snap engine.NodeSnapshot
	srv.Report(&snap)
	if len(snap.Probes) != 1 || snap.Probes[0].State != StateConfirmed || snap.Probes[0].Sent == 0 {
		t.Errorf("report: %+v", snap.Probes)
	}
	tr := s.device.String()
	for _, want := range []string{
		"ip addr add 192.0.2.2/32 peer 192.0.2.1/32 dev eth0",
		"ip addr add 203.0.113.10/24 dev eth0",
		"ip route add 198.51.100.0/24 via 192.0.2.1 dev eth0 onlink",
	} {
		if !strings.Contains(tr, want) {
			t.Errorf("device transcript lacks %q:\n%s", want, tr)
		}
	}
	stop()
	// Not persistent: undone.
	if s.device.HasAddress(netip.MustParseAddr("203.0.113.10")) {
		t.Error("address left behind after stop")
	}
}

// TestProbeRejected sends the device probes it must refuse and checks that
// each is reported with its reason and that nothing changes.
func TestProbeRejected(t *testing.T) {
	s := newSite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := s.run(ctx, engine.NodeSpec{Name: "device", Host: s.device, Roles: []engine.Role{NewClient(clientConfig("ESN-0001"), nil)}})
	defer stop()
	s.wait(time.Second, "device", engine.KindAddressAdded, map[string]string{"source": "ipcp"})
	time.Sleep(50 * time.Millisecond) // packet socket open
	before := s.device.String()
	src, dst := netip.MustParseAddrPort("198.51.100.1:6655"), netip.MustParseAddrPort("203.0.113.10:6655")
	now := time.Now()
	probe := func(mut func(*Message)) *Message {
		m := testProbe()
		m.Issued, m.Sequence = now, uint64(now.UnixNano())
		mut(m)
		return m
	}
	send := func(m *Message, key []byte) {
		b, err := m.Marshal(key)
		if err != nil {
			t.Fatal(err)
		}
		s.device.Inject("eth0", BuildPacket(src, dst, b))
	}
	send(probe(func(*Message) {}), []byte("not the site key at all"))
	s.wait(time.Second, "device", engine.KindRHCPProbeRejected, map[string]string{"reason": "bad-hmac"})
	send(probe(func(m *Message) { m.ClientID = "ESN-9999" }), testKey)
	s.wait(time.Second, "device", engine.KindRHCPProbeRejected, map[string]string{"reason": ReasonWrongClient})
	send(probe(func(m *Message) { m.Issued = now.Add(-time.Hour); m.Lifetime = time.Minute }), testKey)
	s.wait(time.Second, "device", engine.KindRHCPProbeRejected, map[string]string{"reason": ReasonExpired})
	s.device.Inject("eth0", BuildPacket(src, dst, []byte("RH garbage that is long enough to look like a header...")))
	s.wait(time.Second, "device", engine.KindRHCPProbeRejected, map[string]string{"reason": "bad-hmac"})
	s.device.Inject("eth0", BuildPacket(src, dst, []byte{0x52, 0x48, 1}))
	s.wait(time.Second, "device", engine.KindRHCPProbeRejected, map[string]string{"reason": "truncated"})
	if after := s.device.String(); after != before {
		t.Fatalf("a rejected probe changed the device:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// A good probe is taken; replaying it is refused.
	good := probe(func(*Message) {})
	send(good, testKey)
	s.wait(time.Second, "device", engine.KindAddressAdded, map[string]string{"address": "203.0.113.10/24"})
	send(good, testKey)
	s.wait(time.Second, "device", engine.KindRHCPProbeRejected, map[string]string{"reason": ReasonReplay})
}

// fakeAcquirer stands in for unicast DHCP in unit tests; the real exchange
// with dnsmasq is tested in namespaces.
type fakeAcquirer struct {
	formal netip.Prefix
	got    chan FormalRequest
}

func (f *fakeAcquirer) AcquireFormal(ctx context.Context, env *engine.Env, req FormalRequest) (FormalLease, error) {
	f.got <- req
	return FormalLease{Address: f.formal}, nil
}

func TestRHCPPlusDHCPFake(t *testing.T) {
	s := newSite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.forward(ctx, "203.0.113.1")
	st := openStore(t, filepath.Join(t.TempDir(), "server.db"))
	defer st.Close()
	cfg := serverConfig(profiles.RHCPClientEntry{ID: "ESN-0001"}) // from the pool: 203.0.113.1/24
	cfg.DHCPServer = mustAddr("198.18.0.2")
	acq := &fakeAcquirer{formal: netip.MustParsePrefix("203.0.113.150/24"), got: make(chan FormalRequest, 1)}
	cl := NewClient(clientConfig("ESN-0001"), acq)
	stop := s.run(ctx,
		engine.NodeSpec{Name: "server", Host: s.server, Roles: []engine.Role{NewServer(cfg)}, Store: st},
		engine.NodeSpec{Name: "device", Host: s.device, Roles: []engine.Role{cl}})
	defer stop()
	s.wait(2*time.Second, "device", engine.KindAddressAdded, map[string]string{"address": "203.0.113.1/24", "source": "rhcp"})
	if !cl.Temporary("203.0.113.1/24") {
		t.Error("probed address not marked temporary")
	}
	req := <-acq.got
	if req.Server != netip.MustParseAddr("198.18.0.2") || req.Relay != netip.MustParseAddr("203.0.113.1") || req.ClientID != "ESN-0001" {
		t.Errorf("DHCP request %+v", req)
	}
	s.wait(2*time.Second, "device", engine.KindAddressAdded, map[string]string{"address": "203.0.113.150/24", "source": "dhcp"})
	s.wait(2*time.Second, "device", engine.KindAddressRemoved, map[string]string{"address": "203.0.113.1/24"})
	s.wait(2*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"type": "release", "formal": "203.0.113.150/24"})
	deadline := time.Now().Add(2 * time.Second)
	for storedAllocation(t, st, "ESN-0001").State != StateReclaimed && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a := storedAllocation(t, st, "ESN-0001"); a.State != StateReclaimed || a.Formal.String() != "203.0.113.150/24" {
		t.Errorf("stored %+v, want reclaimed with the formal address", a)
	}
	tr := s.device.String()
	if !strings.Contains(tr, "sysctl -w net.ipv4.conf.eth0.promote_secondaries=1") {
		t.Errorf("promote_secondaries not set:\n%s", tr)
	}
	if s.device.HasAddress(netip.MustParseAddr("203.0.113.1")) || !s.device.HasAddress(netip.MustParseAddr("203.0.113.150")) {
		t.Errorf("addresses after RHCP+DHCP:\n%s", tr)
	}
}

// TestServerRestartKeepsAllocations stops the server after the client
// confirmed, starts it again from the same store with a profile that lists a
// new client first: the confirmed client is not probed and the pool
// allocation of the other keeps its address.
func TestServerRestartKeepsAllocations(t *testing.T) {
	s := newSite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.forward(ctx, "203.0.113.1")
	path := filepath.Join(t.TempDir(), "server.db")
	st := openStore(t, path)
	cfg := serverConfig(profiles.RHCPClientEntry{ID: "ESN-0001"}, profiles.RHCPClientEntry{ID: "ESN-0002"})
	stop := s.run(ctx,
		engine.NodeSpec{Name: "server", Host: s.server, Roles: []engine.Role{NewServer(cfg)}, Store: st},
		engine.NodeSpec{Name: "device", Host: s.device, Roles: []engine.Role{NewClient(clientConfig("ESN-0001"), nil)}})
	s.wait(2*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"client_id": "ESN-0001", "address": "203.0.113.1/24"})
	stop()
	st.Close()
	first := map[string]Allocation{}
	st = openStore(t, path)
	defer st.Close()
	for _, id := range []string{"ESN-0001", "ESN-0002"} {
		first[id] = storedAllocation(t, st, id)
	}
	if first["ESN-0002"].Address.String() != "203.0.113.2/24" || first["ESN-0002"].State != StateProbing {
		t.Fatalf("ESN-0002 before restart: %+v", first["ESN-0002"])
	}

	restarted := time.Now()
	cfg2 := serverConfig(profiles.RHCPClientEntry{ID: "ESN-0003"}, profiles.RHCPClientEntry{ID: "ESN-0001"}, profiles.RHCPClientEntry{ID: "ESN-0002"})
	srv := NewServer(cfg2)
	stop = s.run(ctx, engine.NodeSpec{Name: "server", Host: s.server, Roles: []engine.Role{srv}, Store: st})
	defer stop()
	s.wait(2*time.Second, "server", engine.KindRHCPProbeSent, map[string]string{"client_id": "ESN-0003", "address": "203.0.113.3/24"})
	time.Sleep(300 * time.Millisecond)
	s.mu.Lock()
	for _, e := range s.events {
		if e.Time.After(restarted) && e.Kind == engine.KindRHCPProbeSent && e.Fields["client_id"] == "ESN-0001" {
			t.Errorf("confirmed client probed after restart: %v", e.Fields)
		}
	}
	s.mu.Unlock()
	if _, ok := s.find("server", engine.KindRHCPProbeSent, map[string]string{"client_id": "ESN-0002", "address": "203.0.113.2/24"}); !ok {
		t.Error("ESN-0002 not probed at its stored address after restart")
	}
}

func TestAllocate(t *testing.T) {
	used := map[netip.Addr]bool{netip.MustParseAddr("203.0.113.1"): true}
	p, err := allocate(netip.MustParsePrefix("203.0.113.0/30"), used)
	if err != nil || p.String() != "203.0.113.2/30" {
		t.Fatalf("allocate: %v %v", p, err)
	}
	used[p.Addr()] = true
	if _, err := allocate(netip.MustParsePrefix("203.0.113.0/30"), used); err == nil {
		t.Fatal("exhausted /30 allocated the broadcast address")
	}
}

// TestReplayAfterClientRestart: the device stores the last accepted
// sequence, so a probe captured before a restart is refused after it; a
// flood of garbage is reported at a bounded rate.
func TestReplayAfterClientRestart(t *testing.T) {
	s := newSite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t, filepath.Join(t.TempDir(), "device.db"))
	defer st.Close()
	now := time.Now()
	p := testProbe()
	p.Issued, p.Sequence = now, uint64(now.UnixNano())
	b, err := p.Marshal(testKey)
	if err != nil {
		t.Fatal(err)
	}
	pkt := BuildPacket(netip.MustParseAddrPort("198.51.100.1:6655"), netip.MustParseAddrPort("203.0.113.10:6655"), b)
	start := func() func() {
		stop := s.run(ctx, engine.NodeSpec{Name: "device", Host: s.device, Store: st, Roles: []engine.Role{NewClient(clientConfig("ESN-0001"), nil)}})
		time.Sleep(100 * time.Millisecond) // packet socket open
		return stop
	}
	stop := start()
	s.device.Inject("eth0", pkt)
	s.wait(time.Second, "device", engine.KindAddressAdded, map[string]string{"address": "203.0.113.10/24"})
	time.Sleep(50 * time.Millisecond)
	stop()
	restarted := time.Now()
	stop = start()
	defer stop()
	s.device.Inject("eth0", pkt)
	s.wait(time.Second, "device", engine.KindRHCPProbeRejected, map[string]string{"reason": ReasonReplay})
	if n := s.count("device", engine.KindAddressAdded, restarted); n != 1 { // the link address only
		t.Errorf("%d addresses added after the replay, want only the link address", n)
	}
	for i := 0; i < 200; i++ {
		s.device.Inject("eth0", BuildPacket(netip.MustParseAddrPort("198.51.100.1:6655"), netip.MustParseAddrPort("203.0.113.10:6655"), []byte("garbage garbage garbage garbage garbage garbage")))
	}
	time.Sleep(200 * time.Millisecond)
	if n := s.count("device", engine.KindRHCPProbeRejected, restarted); n > maxRejectEvents+1 {
		t.Errorf("%d rejection events for a flood within a second, want at most %d", n, maxRejectEvents+1)
	}
}

// TestReprobe: the console's re-probe action makes a confirmed client probed
// again at once, and the client answers with a stop.
func TestReprobe(t *testing.T) {
	s := newSite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.forward(ctx, "203.0.113.10")
	st := openStore(t, filepath.Join(t.TempDir(), "server.db"))
	defer st.Close()
	cfg := serverConfig(profiles.RHCPClientEntry{ID: "ESN-0001", Address: mustPrefix("203.0.113.10/24")})
	cfg.Interval = profiles.Duration{Duration: time.Hour} // only the first probe and the re-probe
	cfg.MaxInterval = profiles.Duration{Duration: time.Hour}
	srv := NewServer(cfg)
	if err := srv.Reprobe(ctx, ""); err == nil {
		t.Fatal("re-probe before the server runs succeeded")
	}
	stop := s.run(ctx,
		engine.NodeSpec{Name: "server", Host: s.server, Roles: []engine.Role{srv}, Store: st},
		engine.NodeSpec{Name: "device", Host: s.device, Roles: []engine.Role{NewClient(clientConfig("ESN-0001"), nil)}})
	defer stop()
	s.wait(2*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"client_id": "ESN-0001"})
	if err := srv.Reprobe(ctx, "ESN-9999"); err == nil {
		t.Error("re-probe of an unknown client succeeded")
	}
	at := time.Now()
	if err := srv.Reprobe(ctx, ""); err != nil {
		t.Fatal(err)
	}
	s.wait(time.Second, "server", engine.KindRHCPProbeSent, map[string]string{"client_id": "ESN-0001"})
	for end := time.Now().Add(2 * time.Second); s.count("server", engine.KindRHCPStopReceived, at) == 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if s.count("server", engine.KindRHCPStopReceived, at) == 0 {
		t.Fatalf("no stop after the re-probe:\n%s", s.dump())
	}
	if a := storedAllocation(t, st, "ESN-0001"); a.State != StateConfirmed {
		t.Errorf("stored state %q after the re-probe's stop", a.State)
	}
}
