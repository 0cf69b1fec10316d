package dhcp_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/site"
	"github.com/fieldcon/fieldcon/profiles"
)

// siteRun is a profile's lab with fieldcon's roles running in it, one
// engine per run call (so a test can start servers before clients).
type siteRun struct {
	t       *testing.T
	profile *profiles.Profile
	lab     *lab.Lab
	bus     *engine.Bus
	mu      sync.Mutex
	procs   []*exec.Cmd
	engines []*engine.Engine
}

// role returns a running role of a node.
func (r *siteRun) role(node, kind string) engine.Role {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.engines {
		if ro, ok := e.Role(node, kind); ok {
			return ro
		}
	}
	r.t.Fatalf("node %s runs no %s", node, kind)
	return nil
}

// startSite brings the lab of an inline profile up and runs the roles of
// nodes; everything is stopped and removed at cleanup.
func startSite(t *testing.T, src string, nodes ...string) *siteRun {
	t.Helper()
	p, err := profiles.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return startSiteProfile(t, p, nodes...)
}

// startSiteProfile is startSite for a loaded profile.
func startSiteProfile(t *testing.T, p *profiles.Profile, nodes ...string) *siteRun {
	t.Helper()
	l := labtest.Up(t, p)
	r := &siteRun{t: t, profile: p, lab: l, bus: engine.NewBus(100000)}
	t.Cleanup(r.killPeers)
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range r.bus.History() {
				b, _ := e.MarshalJSON()
				t.Logf("event %s", b)
			}
		}
	})
	r.run(t.TempDir(), nodes...)
	return r
}

// run starts an engine with the roles of nodes, stores in stateDir, and
// returns a function that stops it (also called at cleanup).
func (r *siteRun) run(stateDir string, nodes ...string) (stop func()) {
	r.t.Helper()
	s, err := site.Build(r.profile, site.Options{Nodes: nodes, Bus: r.bus, StateDir: stateDir,
		Netns:    r.lab.Netns,
		OpenHost: func(ns string) (engine.Host, error) { return linux.Open(ns) }})
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.engines = append(r.engines, s.Engine)
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Engine.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					r.t.Errorf("engine stop: %v", err)
				}
			case <-time.After(15 * time.Second):
				r.t.Errorf("engine did not stop")
			}
			s.Close()
		})
	}
	r.t.Cleanup(stop)
	return stop
}

func (r *siteRun) netns(node string) string { return r.lab.Netns(node) }

// ip runs `ip -n NETNS args`.
func (r *siteRun) ip(node string, args ...string) string {
	r.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", r.netns(node)}, args...)...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("ip -n %s %s: %v\n%s", r.netns(node), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// peer starts a real peer program in a node's namespace, killed by PID at
// cleanup; its output is logged when the test fails.
func (r *siteRun) peer(node string, args ...string) (*exec.Cmd, *syncBuffer) {
	r.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", r.netns(node)}, args...)...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start %s: %v", args[0], err)
	}
	r.mu.Lock()
	r.procs = append(r.procs, cmd)
	r.mu.Unlock()
	r.t.Cleanup(func() {
		if r.t.Failed() {
			r.t.Logf("%s on %s:\n%s", args[0], node, out.String())
		}
	})
	return cmd, out
}

func (r *siteRun) killPeers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.procs {
		if p.Process != nil {
			p.Process.Kill()
			p.Wait()
		}
	}
	r.procs = nil
}

// wait polls cond until it holds or timeout passes.
func (r *siteRun) wait(what string, timeout time.Duration, cond func() bool) {
	r.t.Helper()
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// events returns the history's events of kind from node.
func (r *siteRun) events(node, kind string) []engine.Event {
	var out []engine.Event
	for _, e := range r.bus.History() {
		if e.Node == node && e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func (r *siteRun) waitEvent(node, kind string, n int, timeout time.Duration) []engine.Event {
	r.t.Helper()
	r.wait(fmt.Sprintf("%d %s event(s) from %s", n, kind, node), timeout, func() bool { return len(r.events(node, kind)) >= n })
	return r.events(node, kind)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
