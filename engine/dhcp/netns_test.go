package dhcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
)

// nsLab is a throwaway topology of network namespaces for integration tests:
// unique names, removed with every process the test started at cleanup.
type nsLab struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	ns     []string
	procs  []*exec.Cmd
	bus    *engine.Bus
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping test; requires superuser privileges (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping test; requires iproute2 (ip)")
	}
}

func requireBin(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("skipping test; requires %s (peer binary not installed)", n)
		}
	}
}

func newNSLab(t *testing.T) *nsLab {
	requireRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	l := &nsLab{t: t, prefix: "fc-dt" + hex.EncodeToString(b), bus: engine.NewBus(10000)}
	t.Cleanup(l.cleanup)
	return l
}

func (l *nsLab) cleanup() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.procs {
		if p.Process != nil {
			p.Process.Kill()
			p.Wait()
		}
	}
	for _, n := range l.ns {
		exec.Command("ip", "netns", "del", n).Run()
	}
}

func (l *nsLab) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// node creates a namespace and returns its full name.
func (l *nsLab) node(name string) string {
	full := l.prefix + "-" + name
	l.run("ip", "netns", "add", full)
	l.mu.Lock()
	l.ns = append(l.ns, full)
	l.mu.Unlock()
	l.run("ip", "-n", full, "link", "set", "lo", "up")
	return full
}

// link joins ns1:if1 and ns2:if2 with a veth pair, both up.
func (l *nsLab) link(ns1, if1, ns2, if2 string) {
	tmp := fmt.Sprintf("v%x", time.Now().UnixNano()&0xffffffff)
	l.run("ip", "link", "add", tmp+"a", "type", "veth", "peer", "name", tmp+"b")
	l.run("ip", "link", "set", tmp+"a", "netns", ns1, "name", if1)
	l.run("ip", "link", "set", tmp+"b", "netns", ns2, "name", if2)
	l.run("ip", "-n", ns1, "link", "set", if1, "up")
	l.run("ip", "-n", ns2, "link", "set", if2, "up")
}

func (l *nsLab) ip(ns string, args ...string) string {
	return l.run(append([]string{"ip", "-n", ns}, args...)...)
}

// start runs a peer inside ns; it is killed by PID at cleanup.
func (l *nsLab) start(ns string, args ...string) *exec.Cmd {
	l.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("start %s: %v", args[0], err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
	l.t.Cleanup(func() {
		if l.t.Failed() {
			l.t.Logf("%s output:\n%s", args[0], out.String())
		}
	})
	return cmd
}

// env opens a host in ns and returns an Env for a role or Acquire.
func (l *nsLab) env(ns, node string) *engine.Env {
	l.t.Helper()
	h, err := linux.Open(ns)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { h.Close() })
	emit := l.bus.NodeEmitter(node)
	return &engine.Env{Node: node, Host: engine.NewTracked(h, emit), Emit: emit,
		Progress: engine.NewProgress("test"), Log: slog.New(slog.DiscardHandler)}
}

// dnsmasq starts dnsmasq as a DHCP server on iface of ns with a range.
func (l *nsLab) dnsmasq(ns, iface, rangeSpec string, extra ...string) *exec.Cmd {
	dir := l.t.TempDir()
	args := append([]string{"dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=" + iface, "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range=" + rangeSpec, "--dhcp-leasefile=" + dir + "/leases",
		"--pid-file=" + dir + "/pid", "--log-dhcp", "--dhcp-authoritative"}, extra...)
	cmd := l.start(ns, args...)
	time.Sleep(300 * time.Millisecond)
	return cmd
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
