package main

import (
	"bufio"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
)

// TestRunStopsCleanlyWhenOutputCloses: `fieldcon run ... | head -1` used to
// die of SIGPIPE, leaving the lab and every address behind; now the closed
// pipe ends the run like Ctrl-C.
func TestRunStopsCleanlyWhenOutputCloses(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildBinary(t)
	name := labtest.UniqueName("pp")
	t.Cleanup(func() { lab.Down(name) })
	cmd := exec.Command(bin, "run", "-p", "rhcp", "--lab", "--lab-name", name, "--state", t.TempDir(), "--json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !bufio.NewScanner(out).Scan() {
		t.Fatal("no first event")
	}
	out.Close() // the reader goes away, as `head -1` does
	waitExit(t, cmd, 30*time.Second)
	if left := namespaces(t, name); len(left) > 0 {
		t.Fatalf("namespaces left after the output closed: %v", left)
	}
}

// TestRunSIGHUPRemovesEverything: a dropped SSH session (SIGHUP) ends a
// headless run with its undo, as SIGINT does.
func TestRunSIGHUPRemovesEverything(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildBinary(t)
	name := labtest.UniqueName("hu")
	t.Cleanup(func() { lab.Down(name) })
	cmd := exec.Command(bin, "run", "-p", "rhcp", "--lab", "--lab-name", name, "--state", t.TempDir(), "--json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatal("no first event")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cmd, 30*time.Second)
	if left := namespaces(t, name); len(left) > 0 {
		t.Fatalf("namespaces left after SIGHUP: %v", left)
	}
}

func waitExit(t *testing.T, cmd *exec.Cmd, limit time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fieldcon: %v (want exit 0 after an orderly stop)", err)
		}
	case <-time.After(limit):
		cmd.Process.Kill()
		t.Fatalf("fieldcon still runs %s later", limit)
	}
}

// TestSecondRunOfALabIsRefused: while one fieldcon runs a lab, a second run
// of it (even with its own --state) and `lab down` are refused, naming the
// first one's PID; the first one is unharmed and removes its lab.
func TestSecondRunOfALabIsRefused(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildBinary(t)
	name := labtest.UniqueName("sr")
	t.Cleanup(func() { lab.Down(name) })
	first := exec.Command(bin, "run", "-p", "rhcp", "--lab", "--lab-name", name, "--state", t.TempDir(), "--json", "--for", "8s")
	out, err := first.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatal("no first event")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	for _, args := range [][]string{
		{"run", "-p", "rhcp", "--lab", "--lab-name", name, "--state", t.TempDir(), "--for", "1s"},
		{"lab", "down", "-p", "rhcp", "--lab-name", name},
		{"lab", "up", "-p", "rhcp", "--lab-name", name},
	} {
		b, err := exec.Command(bin, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(b), "another fieldcon (pid") {
			t.Errorf("fieldcon %v while the lab runs: %v\n%s", args[:2], err, b)
		}
	}
	if left := namespaces(t, name); len(left) == 0 {
		t.Fatal("the first run's lab was removed from under it")
	}
	waitExit(t, first, 30*time.Second)
	if left := namespaces(t, name); len(left) > 0 {
		t.Fatalf("namespaces left: %v", left)
	}
}

// TestRunRefusesAnotherProfilesLab: a lab that is up under the same name
// but built from another profile is not reused (its namespaces lack this
// profile's nodes); the message says whose lab it is and how to proceed.
func TestRunRefusesAnotherProfilesLab(t *testing.T) {
	labtest.RequireRoot(t)
	name := labtest.UniqueName("mx")
	t.Cleanup(func() { lab.Down(name) })
	if code, _, stderr := runCLI(t, "lab", "up", "-p", "rhcp", "--lab-name", name); code != exitOK {
		t.Fatalf("lab up: %d %s", code, stderr)
	}
	code, _, stderr := runCLI(t, "run", "-p", "dhcp", "--lab", "--lab-name", name, "--state", t.TempDir(), "--for", "1s")
	if code != exitUsage || !strings.Contains(stderr, `built from profile "rhcp", not "dhcp"`) {
		t.Fatalf("run of dhcp on rhcp's lab: exit %d, stderr %q", code, stderr)
	}
	if left := namespaces(t, name); len(left) != 3 {
		t.Errorf("the rhcp lab was changed: namespaces %v", left)
	}
}
