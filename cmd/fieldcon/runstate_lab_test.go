package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
)

// TestLeasesAndForceRenewFindTheRunningState (issue #13 item 13): beside a
// `fieldcon run -p dhcp --lab` given its own --state, `fieldcon leases` and
// `fieldcon forcerenew` without --state read that run's store (they used to
// read the lab's default store, which does not exist, and fail), and a lab
// that no fieldcon runs gets an error that names the running one's
// --lab-name and --state.
func TestLeasesAndForceRenewFindTheRunningState(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildBinary(t)
	name := labtest.UniqueName("rs")
	state := t.TempDir()
	_, events := startRun(t, bin, "-p", "dhcp", "--lab", "--lab-name", name, "--state", state)
	waitKind(t, events, "device-a", engine.KindDHCPBound, 60*time.Second)

	out, err := exec.Command(bin, "leases", "-p", "dhcp", "--lab", "--lab-name", name).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "192.0.2.21") {
		t.Fatalf("fieldcon leases without --state: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "forcerenew", "-p", "dhcp", "--lab", "--lab-name", name, "--node", "server", "ESN-0001").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "FORCERENEW sent to 192.0.2.21:68") {
		t.Fatalf("fieldcon forcerenew without --state: %v\n%s", err, out)
	}
	waitKind(t, events, "device-a", engine.KindForceRenewReceived, 2*time.Second)
	waitKind(t, events, "device-a", engine.KindDHCPRenewed, 2*time.Second)

	// A lab nobody runs: the error names the run there is, with the flags
	// that reach it, instead of "no leases".
	other := labtest.UniqueName("rx")
	for _, args := range [][]string{
		{"leases", "-p", "dhcp", "--lab", "--lab-name", other},
		{"forcerenew", "-p", "dhcp", "--lab", "--lab-name", other, "--node", "server", "ESN-0001"},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--lab-name "+name) || !strings.Contains(string(out), "--state "+state) {
			t.Errorf("fieldcon %s: %v\n%s\nwant an error naming --lab-name %s and --state %s", strings.Join(args, " "), err, out, name, state)
		}
		t.Logf("fieldcon %s:\n%s", strings.Join(args, " "), out)
	}
}
