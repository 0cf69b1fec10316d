package arbitrate_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/arbitrate"
	"github.com/fieldcon/fieldcon/engine/rhcp"
	"github.com/fieldcon/fieldcon/engine/static"
	"github.com/fieldcon/fieldcon/profiles"
)

var key = []byte("0123456789abcdef0123456789abcdef")

const keyEnv = "FIELDCON_TEST_ARB_KEY"

type recorder struct {
	mu     sync.Mutex
	events []engine.Event
}

func (r *recorder) find(kind string, fields map[string]string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind != kind {
			continue
		}
		ok := true
		for k, v := range fields {
			if fmt.Sprint(e.Fields[k]) != v {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (r *recorder) wait(t *testing.T, kind string, fields map[string]string) {
	t.Helper()
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if r.find(kind, fields) {
			return
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		fmt.Fprintf(&b, "  %s %v\n", e.Kind, e.Fields)
	}
	t.Fatalf("no %s %v; events:\n%s", kind, fields, b.String())
}

func run(t *testing.T, h *fake.Host, roles []engine.Role) (*recorder, *engine.Engine, func()) {
	bus := engine.NewBus(1000)
	sub := bus.Subscribe(1000, true)
	rec := &recorder{}
	go func() {
		for e := range sub.C {
			rec.mu.Lock()
			rec.events = append(rec.events, e)
			rec.mu.Unlock()
		}
	}()
	e := engine.New(bus, nil)
	e.AddNode(engine.NodeSpec{Name: "device", Host: h, Roles: roles})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	return rec, e, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine: %v", err)
		}
	}
}

func staticCfg(addr, peer string) profiles.Static {
	a := profiles.StaticAddress{Iface: "eth0", Address: profiles.Prefix{Prefix: netip.MustParsePrefix(addr)}}
	if peer != "" {
		a.Peer = &profiles.Prefix{Prefix: netip.MustParsePrefix(peer)}
	}
	return profiles.Static{Addresses: []profiles.StaticAddress{a}}
}

func rhcpClient() *rhcp.Client {
	return rhcp.NewClient(profiles.RHCPClient{Iface: "eth0", ClientID: "ESN-0001", KeyEnv: keyEnv,
		Link: &profiles.RHCPLinkAddress{Address: profiles.Prefix{Prefix: netip.MustParsePrefix("192.0.2.2/32")},
			Peer: profiles.Prefix{Prefix: netip.MustParsePrefix("192.0.2.1/32")}}}, nil)
}

func TestStaticWins(t *testing.T) {
	t.Setenv(keyEnv, string(key))
	h := fake.NewHost("device", nil, "eth0")
	roles := arbitrate.Wrap([]string{"static", "rhcp"}, []engine.Role{static.New(staticCfg("203.0.113.50/24", "")), rhcpClient()})
	if len(roles) != 1 || roles[0].Kind() != "arbiter" {
		t.Fatalf("Wrap: %v", roles)
	}
	rec, e, stop := run(t, h, roles)
	defer stop()
	rec.wait(t, engine.KindMechanismWon, map[string]string{"mechanism": "static", "address": "203.0.113.50/24"})
	rec.wait(t, engine.KindMechanismStopped, map[string]string{"mechanism": "rhcp_client"})
	if h.HasAddress(netip.MustParseAddr("192.0.2.2")) {
		t.Errorf("the losing mechanism's link address stayed:\n%s", h)
	}
	if !h.HasAddress(netip.MustParseAddr("203.0.113.50")) {
		t.Errorf("the winner's address is gone:\n%s", h)
	}
	snap := e.Snapshot()
	if w := snap.Node("device").Winner; w != "static" {
		t.Errorf("snapshot winner %q", w)
	}
	for _, a := range snap.Node("device").Addresses {
		if a.Address == "203.0.113.50/24" && a.Source != "static" {
			t.Errorf("snapshot source of the winner's address = %q, want static", a.Source)
		}
	}
}

func TestRHCPWinsOverLinkOnlyStatic(t *testing.T) {
	t.Setenv(keyEnv, string(key))
	h := fake.NewHost("device", nil, "eth0")
	// static only has a point-to-point address: not formal, it cannot win.
	roles := arbitrate.Wrap([]string{"static", "rhcp"}, []engine.Role{static.New(staticCfg("192.0.2.3/32", "192.0.2.1/32")), rhcpClient()})
	rec, _, stop := run(t, h, roles)
	defer stop()
	rec.wait(t, engine.KindAddressAdded, map[string]string{"address": "192.0.2.2/32"})
	time.Sleep(50 * time.Millisecond)
	now := time.Now()
	p := &rhcp.Message{Type: rhcp.TypeProbe, ClientID: "ESN-0001", Address: netip.MustParsePrefix("203.0.113.10/24"),
		Gateway: netip.MustParseAddr("192.0.2.1"), Server: netip.MustParseAddr("198.51.100.1"),
		Sequence: uint64(now.UnixNano()), Issued: now, Lifetime: time.Minute}
	b, err := p.Marshal(key)
	if err != nil {
		t.Fatal(err)
	}
	h.Inject("eth0", rhcp.BuildPacket(netip.MustParseAddrPort("198.51.100.1:6655"), netip.MustParseAddrPort("203.0.113.10:6655"), b))
	rec.wait(t, engine.KindMechanismWon, map[string]string{"mechanism": "rhcp", "address": "203.0.113.10/24"})
	rec.wait(t, engine.KindMechanismStopped, map[string]string{"mechanism": "static"})
	if h.HasAddress(netip.MustParseAddr("192.0.2.3")) {
		t.Errorf("the losing static address stayed:\n%s", h)
	}
}

func TestFormalPresentNoneStarts(t *testing.T) {
	t.Setenv(keyEnv, string(key))
	h := fake.NewHost("device", nil, "eth0")
	if err := h.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("203.0.113.99/24")}); err != nil {
		t.Fatal(err)
	}
	before := h.String()
	roles := arbitrate.Wrap([]string{"static", "rhcp"}, []engine.Role{static.New(staticCfg("203.0.113.50/24", "")), rhcpClient()})
	rec, _, stop := run(t, h, roles)
	rec.wait(t, engine.KindMechanismStopped, map[string]string{"mechanism": "static"})
	rec.wait(t, engine.KindMechanismStopped, map[string]string{"mechanism": "rhcp_client"})
	time.Sleep(50 * time.Millisecond)
	stop()
	if h.String() != before {
		t.Errorf("a mechanism ran although a formal address existed:\n%s", h)
	}
}

func TestWrapLeavesOthers(t *testing.T) {
	srv := rhcp.NewServer(profiles.RHCPServer{})
	roles := arbitrate.Wrap(nil, []engine.Role{srv})
	if len(roles) != 1 || roles[0] != srv {
		t.Fatal("no mechanisms must leave roles alone")
	}
	roles = arbitrate.Wrap([]string{"static"}, []engine.Role{srv, static.New(profiles.Static{}), rhcpClient()})
	var kinds []string
	for _, r := range roles {
		kinds = append(kinds, r.Kind())
	}
	if strings.Join(kinds, ",") != "rhcp_server,arbiter,rhcp_client" {
		t.Fatalf("kinds %v", kinds)
	}
}

// TestRestartStartsAfresh: a restarted arbiter shows one run of each
// mechanism and the new winner, not the last run's rows.
func TestRestartStartsAfresh(t *testing.T) {
	t.Setenv(keyEnv, string(key))
	h := fake.NewHost("device", nil, "eth0")
	roles := arbitrate.Wrap([]string{"static", "rhcp"}, []engine.Role{static.New(staticCfg("203.0.113.50/24", "")), rhcpClient()})
	rec, e, stop := run(t, h, roles)
	defer stop()
	rec.wait(t, engine.KindMechanismWon, map[string]string{"mechanism": "static"})
	if err := e.RestartRole(context.Background(), "device", "arbiter"); err != nil {
		t.Fatal(err)
	}
	// Wait for the second run's win, then look at the snapshot.
	for end := time.Now().Add(2 * time.Second); rec.count(engine.KindMechanismWon) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the restarted arbiter never declared a winner")
		}
	}
	snap := e.Snapshot()
	kinds := map[string]int{}
	for _, r := range snap.Node("device").Roles {
		kinds[r.Kind]++
	}
	if kinds["static"] != 1 || kinds["rhcp_client"] != 1 {
		t.Fatalf("after restart the snapshot lists mechanisms %v, want each once", kinds)
	}
	if w := snap.Node("device").Winner; w != "static" {
		t.Fatalf("winner after restart %q", w)
	}
}

func (r *recorder) count(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func TestStopRoleShowsStopped(t *testing.T) {
	h := fake.NewHost("device", nil, "eth0")
	rec, e, stop := run(t, h, []engine.Role{static.New(staticCfg("203.0.113.50/24", ""))})
	defer stop()
	rec.wait(t, engine.KindAddressAdded, map[string]string{"address": "203.0.113.50/24"})
	if err := e.StopRole("device", "static"); err != nil {
		t.Fatal(err)
	}
	snap := e.Snapshot()
	if st := snap.Node("device").Roles[0].Status; st != engine.StatusStopped {
		t.Fatalf("status after StopRole = %s, want stopped", st)
	}
}
