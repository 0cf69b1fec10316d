package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
)

// waitKind waits for an event of kind from node, skipping others.
func waitKind(t *testing.T, events <-chan engine.Event, node, kind string, within time.Duration) engine.Event {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("run ended before %s from %s", kind, node)
			}
			if e.Kind == engine.KindError {
				t.Logf("error event: %+v", e)
			}
			if e.Node == node && e.Kind == kind {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s from %s within %s", kind, node, within)
		}
	}
}

// TestForceRenewBesideRunningServer pushes FORCERENEW with the CLI to a
// client of a running `fieldcon run -p dhcp --lab`, whose server holds port
// 67, ten times in a row. Each push must be accepted and answered by a
// renewal within a second (issue #4), so no renewal was lost to the
// command's socket, and the server must still be the only socket on 67.
func TestForceRenewBesideRunningServer(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildBinary(t)
	name := labtest.UniqueName("fr")
	state := t.TempDir()
	_, events := startRun(t, bin, "-p", "dhcp", "--lab", "--lab-name", name, "--state", state)
	waitKind(t, events, "device-a", engine.KindDHCPBound, 60*time.Second)

	for i := 0; i < 10; i++ {
		start := time.Now()
		out, err := exec.Command(bin, "forcerenew", "-p", "dhcp", "--lab", "--lab-name", name, "--state", state,
			"--node", "server", "ESN-0001").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "FORCERENEW sent to 192.0.2.21:68") {
			t.Fatalf("push %d: forcerenew: %v\n%s", i, err, out)
		}
		sent := time.Now()
		waitKind(t, events, "device-a", engine.KindForceRenewReceived, time.Second)
		waitKind(t, events, "device-a", engine.KindDHCPRenewed, time.Second)
		t.Logf("push %d: command ran %s; renewed %s after it exited", i, sent.Sub(start).Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
	}
	// What holds port 67 in the server's namespace: the server's one socket
	// per interface, nothing the command left behind.
	ss, err := exec.Command("ip", "netns", "exec", "fc-"+name+"-server", "ss", "-Hulnp", "sport = :67").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v\n%s", err, ss)
	}
	if lines := strings.Split(strings.TrimSpace(string(ss)), "\n"); len(lines) != 1 {
		t.Errorf("sockets on port 67 in the server's namespace, want the server's one:\n%s", ss)
	}
}
