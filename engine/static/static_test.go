package static

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/profiles"
)

func mustProfile(t *testing.T, src string) *profiles.Profile {
	t.Helper()
	p, err := profiles.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const router = `
[[node]]
name = "router"
[node.static]
forwarding = true
addresses = [
  { iface = "eth0", address = "198.51.100.2/24" },
  { iface = "eth1", address = "192.0.2.1/32", peer = "192.0.2.2/32" },
]
routes = [{ dst = "203.0.113.0/24", via = "192.0.2.2", dev = "eth1" }]
`

// run starts the role in an engine on a fake host, waits until it configured
// everything, and returns the host, the bus history and a stop function.
func run(t *testing.T, cfg profiles.Static, h *fake.Host) (stop func() error, bus *engine.Bus) {
	t.Helper()
	bus = engine.NewBus(100)
	e := engine.New(bus, nil)
	e.AddNode(engine.NodeSpec{Name: "router", Host: h, Roles: []engine.Role{New(cfg)}})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- e.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := e.Snapshot()
		if len(s.Nodes[0].Roles) == 1 && len(s.Nodes[0].Roles[0].Steps) == 3 && s.Nodes[0].Roles[0].Steps[2].Done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("static role did not finish: %+v", s.Nodes[0].Roles)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return func() error { cancel(); return <-errc }, bus
}

func TestStaticConfiguresAndUndoes(t *testing.T) {
	p := mustProfile(t, router)
	h := fake.NewHost("router", nil, "eth0", "eth1")
	stop, bus := run(t, *p.Nodes[0].Static, h)
	want := []string{
		"sysctl -w net.ipv4.ip_forward=1",
		"sysctl -w net.ipv6.conf.all.forwarding=1",
		"ip link set eth0 up",
		"ip link set eth1 up",
		"ip addr add 198.51.100.2/24 dev eth0",
		"ip addr add 192.0.2.1/32 peer 192.0.2.2/32 dev eth1",
		"ip route add 203.0.113.0/24 via 192.0.2.2 dev eth1",
	}
	if got := h.Transcript(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("transcript:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	undo := h.Transcript()[len(want):]
	wantUndo := []string{
		"ip route del 203.0.113.0/24 via 192.0.2.2 dev eth1",
		"ip addr del 192.0.2.1/32 dev eth1",
		"ip addr del 198.51.100.2/24 dev eth0",
		"sysctl -w net.ipv6.conf.all.forwarding=0",
		"sysctl -w net.ipv4.ip_forward=0",
	}
	if strings.Join(undo, "\n") != strings.Join(wantUndo, "\n") {
		t.Fatalf("undo transcript:\n%s\nwant:\n%s", strings.Join(undo, "\n"), strings.Join(wantUndo, "\n"))
	}
	var kinds []string
	for _, e := range bus.History() {
		kinds = append(kinds, e.Kind)
	}
	got := strings.Join(kinds, " ")
	for _, k := range []string{"address.added", "route.added", "route.removed", "address.removed"} {
		if !strings.Contains(got, k) {
			t.Errorf("events %q lack %s", got, k)
		}
	}
}

func TestStaticPersistKeepsConfiguration(t *testing.T) {
	p := mustProfile(t, strings.Replace(router, "forwarding = true", "persist = true", 1))
	h := fake.NewHost("router", nil, "eth0", "eth1")
	stop, _ := run(t, *p.Nodes[0].Static, h)
	n := len(h.Transcript())
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if extra := h.Transcript()[n:]; len(extra) != 0 {
		t.Fatalf("persistent role undid %v", extra)
	}
}

func TestStaticMissingInterfaceFailsWithHint(t *testing.T) {
	p := mustProfile(t, router)
	h := fake.NewHost("router", nil, "eth0") // no eth1
	bus := engine.NewBus(100)
	e := engine.New(bus, nil)
	e.AddNode(engine.NodeSpec{Name: "router", Host: h, Roles: []engine.Role{New(*p.Nodes[0].Static)}})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatalf("undo after failure: %v", err)
	}
	var msg string
	for _, ev := range bus.History() {
		if ev.Kind == engine.KindError {
			msg, _ = ev.Fields["message"].(string)
		}
	}
	if !strings.Contains(msg, "eth1") || !strings.Contains(msg, "ip link") {
		t.Fatalf("error event %q does not name the interface and what to check", msg)
	}
	// Everything the failed role did before failing is undone.
	if h.String() == "" || strings.Contains(strings.Join(h.Transcript(), "|"), "ip addr add") {
		t.Fatalf("transcript after failure: %s", h)
	}
}
