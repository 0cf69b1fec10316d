package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine/site"
	"github.com/fieldcon/fieldcon/profiles"
)

// TestRunFreshLabProbesAgain runs the rhcp lab twice with the default state
// directory. Each run builds a new lab whose device has no address, so each
// must end with the device's mechanism won. Before the fix the second run's
// server found ESN-0001 "confirmed" in the first run's store and never
// probed it.
func TestRunFreshLabProbesAgain(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildBinary(t)
	name := labtest.UniqueName("f")
	p, err := profiles.Load("rhcp")
	if err != nil {
		t.Fatal(err)
	}
	state := site.DefaultStateDir(p, name)
	t.Cleanup(func() {
		exec.Command(bin, "lab", "down", "-p", "rhcp", "--lab-name", name).Run()
		os.RemoveAll(state)
	})
	for run := 1; run <= 2; run++ {
		out, err := exec.Command(bin, "run", "-p", "rhcp", "--lab", "--lab-name", name, "--json", "--for", "4s").Output()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		if !strings.Contains(string(out), `"kind":"mechanism.won"`) {
			t.Fatalf("run %d of a freshly built lab: the device never won its address; events:\n%s", run, out)
		}
		if _, err := os.Stat(filepath.Join(state, "server.db")); err != nil {
			t.Fatalf("run %d: the server's store is not in the default state directory: %v", run, err)
		}
	}
	// `lab down` leaves nothing behind, the lab's stores included.
	if out, err := exec.Command(bin, "lab", "down", "-p", "rhcp", "--lab-name", name).CombinedOutput(); err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("lab down left the lab's stores in %s (%v)", state, err)
	}
}

// TestLabDownWhenNotUp: removing a lab that is not there says so instead of
// claiming it was removed.
func TestLabDownWhenNotUp(t *testing.T) {
	labtest.RequireRoot(t)
	name := labtest.UniqueName("n")
	code, stdout, stderr := runCLI(t, "lab", "down", "-p", "rhcp", "--lab-name", name)
	if code != exitOK || !strings.Contains(stdout, "not up") {
		t.Fatalf("lab down of a lab that is not up: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, "lab", "status", "-p", "rhcp", "--lab-name", name)
	if code != exitFailure || !strings.Contains(stderr, "fieldcon lab up -p rhcp --lab-name "+name) {
		t.Fatalf("lab status of a lab that is not up: exit %d, stderr %q; want 1 and how to bring it up", code, stderr)
	}
}

// TestWithoutRootSaysSudo runs the commands that need root as nobody: each
// exits 2 and says how to run it, never a raw errno.
func TestWithoutRootSaysSudo(t *testing.T) {
	labtest.RequireRoot(t)
	setpriv := labtest.RequireBinary(t, "setpriv")
	dir, err := os.MkdirTemp("", "fieldcon-noroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "fieldcon")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"run", "-p", "rhcp", "--lab", "--lab-name", labtest.UniqueName("s"), "--for", "1s"},
		{"lab", "up", "-p", "rhcp", "--lab-name", labtest.UniqueName("s")},
		{"trace", "-p", "rhcp", "--lab", "--for", "1s"},
		{"nat", "-p", "tunnel", "--node", "server", "--lab"},
	} {
		cmd := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
		out, _ := cmd.CombinedOutput()
		code := cmd.ProcessState.ExitCode()
		if code != exitUsage || !strings.Contains(string(out), "as root") {
			t.Errorf("fieldcon %v as nobody: exit %d, want %d and a message saying to run as root; got %q", args, code, exitUsage, out)
		}
	}
}

// TestLabNameFromProfileMustFit: a profile whose name cannot name a lab is
// valid, but check says so, and lab commands exit 2 pointing at --lab-name
// (they used to exit 1 from deep inside the lab driver).
func TestLabNameFromProfileMustFit(t *testing.T) {
	file := filepath.Join(t.TempDir(), "Site-A.toml")
	src := "[[node]]\nname = \"a\"\n[[node]]\nname = \"b\"\n[lab]\n[[lab.link]]\na = \"a:eth0\"\nb = \"b:eth0\"\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "check", file)
	if code != exitOK || !strings.Contains(stdout, "--lab-name") {
		t.Errorf("check: exit %d, stdout %q, stderr %q; want ok with a note about --lab-name", code, stdout, stderr)
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping the lab commands; they need root (the name is checked after the root check)")
	}
	for _, args := range [][]string{
		{"lab", "up", "-p", file},
		{"run", "-p", file, "--lab", "--for", "1s"},
		{"trace", "-p", file, "--lab", "--for", "1s"},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != exitUsage || !strings.Contains(stderr, "--lab-name") {
			t.Errorf("fieldcon %v: exit %d, stderr %q; want %d and a pointer to --lab-name", args[:2], code, stderr, exitUsage)
		}
	}
}
