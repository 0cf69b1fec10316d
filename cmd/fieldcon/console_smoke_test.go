package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/profiles"
)

// buildConsoleBinary builds the real fieldcon binary for tests that drive it.
func buildConsoleBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fieldcon")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// tmuxTerm is a private tmux server (its own socket, so a user's tmux is
// never touched) running one command in a fixed-size terminal.
type tmuxTerm struct {
	t      *testing.T
	socket string
}

func newTmux(t *testing.T, w, h int, command string) *tmuxTerm {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("skipping: requires tmux (install the Debian package tmux)")
	}
	tt := &tmuxTerm{t: t, socket: labtest.UniqueName("fcui")}
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", tt.socket, "kill-server").Run() })
	tt.run("new-session", "-d", "-x", strconv.Itoa(w), "-y", strconv.Itoa(h), "-e", "TERM=xterm-256color", command)
	return tt
}

func (tt *tmuxTerm) run(args ...string) string {
	tt.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", tt.socket}, args...)...).CombinedOutput()
	if err != nil {
		tt.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is what the terminal shows now.
func (tt *tmuxTerm) screen() string {
	out, err := exec.Command("tmux", "-L", tt.socket, "capture-pane", "-p").CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

func (tt *tmuxTerm) keys(k ...string) { tt.run(append([]string{"send-keys", "-t", "0"}, k...)...) }

// waitScreen waits until the screen shows every one of subs.
func (tt *tmuxTerm) waitScreen(d time.Duration, subs ...string) string {
	tt.t.Helper()
	deadline := time.Now().Add(d)
	var s string
	for time.Now().Before(deadline) {
		s = tt.screen()
		ok := true
		for _, sub := range subs {
			ok = ok && strings.Contains(s, sub)
		}
		if ok {
			return s
		}
		time.Sleep(200 * time.Millisecond)
	}
	tt.t.Fatalf("after %s the screen does not show %q:\n%s", d, subs, s)
	return ""
}

// waitFunc waits until ok accepts the screen.
func (tt *tmuxTerm) waitFunc(d time.Duration, what string, ok func(screen string) bool) string {
	tt.t.Helper()
	deadline := time.Now().Add(d)
	var s string
	for time.Now().Before(deadline) {
		if s = tt.screen(); ok(s) {
			return s
		}
		time.Sleep(200 * time.Millisecond)
	}
	tt.t.Fatalf("after %s the screen does not show %s:\n%s", d, what, s)
	return ""
}

// rhcpOnly: the filter bar shows the applied filter "rhcp" (not the one
// being typed), and every packet listed is a decoded RHCP message, with at
// least one probe.
func rhcpOnly(screen string) bool {
	applied, packets, probes := false, 0, 0
	for _, l := range strings.Split(screen, "\n") {
		switch {
		case strings.TrimSpace(l) == "filter: rhcp":
			applied = true
		case applied && strings.Contains(l, " > "):
			if !strings.Contains(l, " RHCP ") {
				return false
			}
			packets++
			if strings.Contains(l, " probe ") {
				probes++
			}
		}
	}
	return applied && packets > 0 && probes > 0
}

func waitFile(t *testing.T, path string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not written after %s", path, d)
	return ""
}

func labNamespaces(name string) []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var left []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "fc-"+name+"-") {
			left = append(left, strings.Fields(l)[0])
		}
	}
	return left
}

// TestConsoleSmoke drives the real binary in tmux on an embedded lab: the
// overview reaches "address configured" for the RHCP client (the static
// addresses while a profile has none), the trace view shows decoded RHCP
// packets, and q exits 0 with every namespace of the lab removed.
func TestConsoleSmoke(t *testing.T) {
	labtest.RequireRoot(t)
	profilesToRun := []string{"demo"}
	if src, _ := profiles.EmbeddedSource("demo"); !bytes.Contains(src, []byte("rhcp_client")) {
		// The demo has no RHCP client yet: also run the rhcp lab, so the
		// RHCP path of the console is exercised until the demo has one.
		profilesToRun = append(profilesToRun, "rhcp")
	}
	bin := buildConsoleBinary(t)
	for _, prof := range profilesToRun {
		t.Run(prof, func(t *testing.T) { smoke(t, bin, prof) })
	}
}

func smoke(t *testing.T, bin, prof string) {
	src, err := profiles.EmbeddedSource(prof)
	if err != nil {
		t.Fatal(err)
	}
	hasRHCP := bytes.Contains(src, []byte("rhcp_client"))
	dir := t.TempDir()
	name := labtest.UniqueName("ui")
	t.Cleanup(func() {
		if left := labNamespaces(name); len(left) > 0 {
			_ = exec.Command(bin, "lab", "down", "-p", prof, "--lab-name", name).Run()
		}
	})
	cmd := bin + " -p " + prof + " --lab --lab-name " + name + " --state " + dir + "/state --export-dir " + dir +
		" 2>" + dir + "/stderr; echo $? >" + dir + "/exit; sleep 60"
	tt := newTmux(t, 160, 48, cmd)

	if hasRHCP {
		s := tt.waitScreen(60*time.Second, "✓ address configured")
		t.Logf("overview:\n%s", s)
	} else {
		s := tt.waitScreen(30*time.Second, "✓ addresses configured")
		t.Logf("overview (no RHCP client in %s yet):\n%s", prof, s)
	}

	if prof == "demo" {
		smokeActions(t, tt, name)
	}

	tt.keys("2")
	tt.waitScreen(10*time.Second, "[2 Trace]", "held")
	if hasRHCP {
		tt.keys("/")
		tt.keys("-l", "rhcp")
		tt.waitScreen(5*time.Second, "✓")
		tt.keys("Enter")
		s := tt.waitFunc(30*time.Second, "the applied filter rhcp listing only decoded RHCP packets, probes among them", rhcpOnly)
		t.Logf("trace:\n%s", s)
	}

	tt.keys("q")
	code := strings.TrimSpace(waitFile(t, filepath.Join(dir, "exit"), 30*time.Second))
	stderr, _ := os.ReadFile(filepath.Join(dir, "stderr"))
	if code != "0" {
		t.Fatalf("fieldcon exited %s\n%s", code, stderr)
	}
	if left := labNamespaces(name); len(left) > 0 {
		t.Fatalf("namespaces left after q: %v\n%s", left, stderr)
	}
	if !strings.Contains(string(stderr), "removing lab "+name) {
		t.Errorf("stderr does not say the lab is being removed:\n%s", stderr)
	}
}

// selectRow moves the selection of the current list to the first row whose
// text (after the marker) starts with prefix, pressing j from the top.
func (tt *tmuxTerm) selectRow(prefix string) {
	tt.t.Helper()
	tt.keys("g")
	for i := 0; i < 60; i++ {
		time.Sleep(150 * time.Millisecond)
		for _, l := range strings.Split(tt.screen(), "\n") {
			if strings.HasPrefix(l, "▸ "+prefix) {
				return
			}
		}
		tt.keys("j")
	}
	tt.t.Fatalf("no row starting with %q to select:\n%s", prefix, tt.screen())
}

// smokeActions runs the console's actions on the demo lab and checks each
// on the kernel or in the event log: re-probe, stop and start a role (the
// DHCP server's socket closes and opens), a mechanism under the arbiter
// restarted (the device gets its address back by a new probe), FORCERENEW
// (the client renews), and a lab link flapped.
func smokeActions(t *testing.T, tt *tmuxTerm, lab string) {
	dhcpListening := func() bool {
		out, _ := exec.Command("ip", "netns", "exec", "fc-"+lab+"-dhcp-server", "ss", "-Hlun", "sport", "= :67").Output()
		return strings.TrimSpace(string(out)) != ""
	}
	deviceAddr := func() bool {
		out, _ := exec.Command("ip", "-n", "fc-"+lab+"-device", "-br", "addr", "show", "eth0").Output()
		return strings.Contains(string(out), "203.0.113.10/")
	}
	waitTrue := func(what string, f func() bool, want bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if f() == want {
				return
			}
		}
		t.Fatalf("%s is not %v after 20s:\n%s", what, want, tt.screen())
	}

	tt.selectRow("rhcp_server")
	tt.keys("p")
	tt.waitScreen(10*time.Second, "re-probe every client of server")

	tt.selectRow("dhcp_server")
	tt.keys("s")
	tt.waitScreen(15*time.Second, "stopped dhcp_server on dhcp-server", "dhcp_server    stopped")
	waitTrue("the dhcp server listening", dhcpListening, false)
	tt.keys("s")
	tt.waitScreen(15*time.Second, "started dhcp_server on dhcp-server")
	waitTrue("the dhcp server listening", dhcpListening, true)

	tt.selectRow("rhcp_client")
	tt.keys("r")
	tt.waitScreen(15*time.Second, "rhcp_client runs under the arbiter of device: restarted arbiter")
	waitTrue("203.0.113.10 on the device after the restart", deviceAddr, true)
	// The restart undid the address and a new probe gave it back: the log
	// has the removal, then the address added again.
	tt.keys("6")
	tt.waitFunc(10*time.Second, "the device's address removed, then added again, in the log", func(screen string) bool {
		removed := false
		for _, l := range strings.Split(screen, "\n") {
			if !strings.Contains(l, " device ") || !strings.Contains(l, "203.0.113.10/") {
				continue
			}
			switch {
			case strings.Contains(l, "address.removed"):
				removed = true
			case removed && strings.Contains(l, "address.added"):
				return true
			}
		}
		return false
	})

	tt.keys("4")
	tt.selectRow("dhcp-server 198.18.1.") // the server lease, not the address rows
	tt.keys("F")
	tt.waitScreen(10*time.Second, "FORCERENEW from dhcp-server to ESN-")
	tt.keys("6")
	tt.waitScreen(10*time.Second, "dhcp.forcerenew.received", "dhcp.lease.renewed")

	tt.keys("5")
	tt.selectRow("router:eth1")
	tt.keys("l")
	tt.waitScreen(5*time.Second, "router:eth1        DOWN")
	tt.waitScreen(15*time.Second, "flap router:eth1 ─ device:eth0\n")
	tt.keys("1")
}

// TestConsoleNeedsRoot runs the binary as an unprivileged user on a real
// terminal: one line saying what it needs and what to run instead, exit 2.
func TestConsoleNeedsRoot(t *testing.T) {
	labtest.RequireRoot(t) // to switch to another user
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("skipping: requires setpriv (util-linux)")
	}
	bin := buildConsoleBinary(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := "setpriv --reuid=65534 --regid=65534 --clear-groups " + bin + " 2>" + dir + "/stderr; echo $? >" + dir + "/exit; sleep 30"
	newTmux(t, 100, 30, cmd)
	code := strings.TrimSpace(waitFile(t, filepath.Join(dir, "exit"), 20*time.Second))
	stderr, _ := os.ReadFile(filepath.Join(dir, "stderr"))
	lines := strings.Split(strings.TrimSpace(string(stderr)), "\n")
	if code != "2" || len(lines) != 1 || !strings.Contains(lines[0], "needs root") || !strings.Contains(lines[0], "sudo fieldcon") {
		t.Fatalf("exit %s, stderr:\n%s\nwant exit 2 and one line naming root and `sudo fieldcon`", code, stderr)
	}
}

// TestConsoleNotATerminal: with stdout a pipe, fieldcon points to `fieldcon run`.
func TestConsoleNotATerminal(t *testing.T) {
	var out, errb bytes.Buffer
	code := cmdConsole(context.Background(), nil, &out, &errb)
	if code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(errb.String(), "fieldcon run -p demo --lab") || strings.Count(errb.String(), "\n") != 1 {
		t.Errorf("stderr = %q, want one line pointing to fieldcon run", errb.String())
	}
}

// TestConsoleHangup: when the terminal goes away (a dropped SSH session),
// the console still undoes the engine's changes and removes its lab.
func TestConsoleHangup(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildConsoleBinary(t)
	dir := t.TempDir()
	name := labtest.UniqueName("uh")
	t.Cleanup(func() {
		if len(labNamespaces(name)) > 0 {
			_ = exec.Command(bin, "lab", "down", "-p", "demo", "--lab-name", name).Run()
		}
	})
	tt := newTmux(t, 100, 30, bin+" -p demo --lab --lab-name "+name+" --state "+dir+"/state 2>"+dir+"/stderr")
	tt.waitScreen(30*time.Second, "[1 Overview]", "roles running")
	if len(labNamespaces(name)) == 0 {
		t.Fatal("the lab is not up while the console runs")
	}
	_ = exec.Command("tmux", "-L", tt.socket, "kill-server").Run() // SIGHUP to the console
	deadline := time.Now().Add(30 * time.Second)
	for len(labNamespaces(name)) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	stderr, _ := os.ReadFile(filepath.Join(dir, "stderr"))
	if left := labNamespaces(name); len(left) > 0 {
		t.Fatalf("namespaces left 30s after the terminal hung up: %v\n%s", left, stderr)
	}
}
