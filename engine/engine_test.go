package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/static"
	"github.com/fieldcon/fieldcon/profiles"
)

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStopAndStartRole(t *testing.T) {
	p, err := profiles.Parse("t.toml", []byte("[[node]]\nname = \"a\"\n[node.static]\naddresses = [{ iface = \"eth0\", address = \"192.0.2.1/24\" }]\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := fake.NewHost("a", nil, "eth0")
	e := engine.New(engine.NewBus(100), nil)
	e.AddNode(engine.NodeSpec{Name: "a", Host: h, Roles: []engine.Role{static.New(*p.Nodes[0].Static)}})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- e.Run(ctx) }()
	configured := func() bool { return len(h.Transcript()) > 0 && strings.Contains(h.String(), "ip addr add") }
	waitFor(t, "the static role", configured)

	if err := e.StartRole("a", "static"); err == nil {
		t.Fatal("StartRole of a running role succeeded")
	}
	if err := e.StopRole("a", "static"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(h.String(), "ip addr del 192.0.2.1/24 dev eth0") {
		t.Fatalf("StopRole did not undo:\n%s", h)
	}
	if st := e.Snapshot().Nodes[0].Roles[0].Status; st != engine.StatusStopped {
		t.Fatalf("status after StopRole = %s", st)
	}
	if err := e.StopRole("a", "static"); err == nil {
		t.Fatal("stopping a stopped role succeeded")
	}
	if err := e.StartRole("a", "static"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restarted role", func() bool { return strings.HasSuffix(h.String(), "ip addr add 192.0.2.1/24 dev eth0") })
	if err := e.StopRole("a", "nosuch"); err == nil || !strings.Contains(err.Error(), "static") {
		t.Fatalf("StopRole of an unknown role: %v, want an error listing the node's roles", err)
	}
	if _, ok := e.Role("a", "static"); !ok {
		t.Fatal("Role(a, static) not found")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(h.String(), "ip addr del 192.0.2.1/24 dev eth0") {
		t.Fatalf("shutdown did not undo the restarted role:\n%s", h)
	}
}

// stubborn ignores its context until released.
type stubborn struct{ release chan struct{} }

func (stubborn) Kind() string { return "stubborn" }
func (s stubborn) Run(ctx context.Context, env *engine.Env) error {
	<-s.release
	return nil
}

// TestStopRoleThatWillNotStop: a role that outlives its stop timeout is not
// marked stopped, so StartRole cannot run a second copy beside it.
func TestStopRoleThatWillNotStop(t *testing.T) {
	r := stubborn{release: make(chan struct{})}
	e := engine.New(engine.NewBus(100), nil)
	e.StopTimeout = 50 * time.Millisecond
	e.AddNode(engine.NodeSpec{Name: "a", Host: fake.NewHost("a", nil), Roles: []engine.Role{r}})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- e.Run(ctx) }()
	waitFor(t, "the role to start", func() bool {
		s := e.Snapshot()
		return len(s.Nodes[0].Roles) == 1 && s.Nodes[0].Roles[0].Status == engine.StatusRunning
	})
	if err := e.StopRole("a", "stubborn"); err == nil || !strings.Contains(err.Error(), "did not stop") {
		t.Fatalf("StopRole of a stubborn role: %v", err)
	}
	if err := e.StartRole("a", "stubborn"); err == nil {
		t.Fatal("StartRole ran a second copy beside a role that never stopped")
	}
	close(r.release)
	cancel()
	<-errc
}
