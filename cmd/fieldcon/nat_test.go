package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
)

// TestNATCommandLab runs the tunnel lab with `fieldcon run --lab --json`,
// pushes a TCP flow through the tunnel, and checks that both the run's
// nat.mapping.added events and `fieldcon nat` show it with the tunnel index.
func TestNATCommandLab(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireBinary(t, "iperf3")
	bin := buildBinary(t)
	state, name := t.TempDir(), labtest.UniqueName("n")
	run := exec.Command(bin, "run", "--json", "--state", state, "-p", "tunnel", "--lab", "--lab-name", name, "--for", "60s")
	stdout, err := run.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	run.Stderr = os.Stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if run.ProcessState == nil {
			run.Process.Kill()
			run.Wait()
		}
		lab.Down(name)
	})
	events := make(chan engine.Event, 1000)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e engine.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
	}()
	// The client may establish more than once while the lab comes up (a
	// response lost before the NAT's rules are in); the last tunnel.up counts.
	var index float64
	wait := func(kind string, ok func(engine.Event) bool) engine.Event {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case e, open := <-events:
				if !open {
					t.Fatalf("fieldcon run ended before %s", kind)
				}
				if e.Kind == engine.KindTunnelUp && e.Node == "server" {
					index = e.Fields["index"].(float64) // JSON numbers
				}
				if e.Kind == kind && e.Node == "server" && ok(e) {
					return e
				}
			case <-timeout:
				t.Fatalf("no %s from the server within 30s", kind)
			}
		}
	}
	wait(engine.KindTunnelUp, func(engine.Event) bool { return true })

	srv := exec.Command("ip", "netns", "exec", lab.NetnsName(name, "dest"), "iperf3", "-s", "-1", "-B", "198.51.100.2")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	time.Sleep(300 * time.Millisecond)
	cli := exec.Command("ip", "netns", "exec", lab.NetnsName(name, "client"), "iperf3", "-c", "198.51.100.2", "-t", "4", "--connect-timeout", "3000")
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Process.Kill(); cli.Wait() })

	added := wait(engine.KindNATAdded, func(e engine.Event) bool { return e.Fields["destination"] == "198.51.100.2:5201" })
	if added.Fields["index"] != index {
		t.Fatalf("nat.mapping.added index %v, want %v", added.Fields["index"], index)
	}
	out, err := exec.Command(bin, "nat", "-p", "tunnel", "--node", "server", "--lab", "--lab-name", name, "--state", state, "--json").Output()
	if err != nil {
		t.Fatalf("fieldcon nat --json: %v", err)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r engine.MappingRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("fieldcon nat --json line %q: %v", line, err)
		}
		if r.Destination == "198.51.100.2:5201" && float64(r.TunnelIndex) == index && strings.HasPrefix(r.Translated, "198.51.100.1:") && r.BytesOut > 0 {
			found = true
		}
	}
	if !found {
		t.Fatalf("fieldcon nat --json lacks the flow with tunnel index %v:\n%s", index, out)
	}
	text, err := exec.Command(bin, "nat", "-p", "tunnel", "--node", "server", "--lab", "--lab-name", name, "--state", state).Output()
	if err != nil || !strings.Contains(string(text), "INDEX") || !strings.Contains(string(text), "198.51.100.2:5201") {
		t.Fatalf("fieldcon nat: %v\n%s", err, text)
	}
	t.Logf("fieldcon nat:\n%s", text)
	cli.Wait()
	run.Process.Signal(syscall.SIGINT)
	for range events {
	}
	if err := run.Wait(); err != nil {
		t.Fatalf("fieldcon run: %v", err)
	}
}
