package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/profiles"
)

// buildBinary builds fieldcon once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fieldcon")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// namespaces lists the lab's namespaces that exist.
func namespaces(t *testing.T, lab string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, _, _ := strings.Cut(line, " "); strings.HasPrefix(name, "fc-"+lab+"-") {
			found = append(found, name)
		}
	}
	return found
}

// startRun starts `fieldcon run` and returns the process and a channel of
// its JSON events.
func startRun(t *testing.T, bin string, args ...string) (*exec.Cmd, <-chan engine.Event) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"run", "--json", "--state", t.TempDir()}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A test that fails half-way must not leave the run nor its lab behind.
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		for i, a := range args {
			if a == "--lab-name" && i+1 < len(args) {
				lab.Down(args[i+1])
			}
		}
	})
	events := make(chan engine.Event, 1000)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e engine.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("not a JSON event line: %q: %v", sc.Text(), err)
				continue
			}
			events <- e
		}
	}()
	return cmd, events
}

// staticAddresses lists node|iface|cidr of every static address of the demo.
func staticAddresses(t *testing.T) map[string]bool {
	t.Helper()
	p, err := profiles.Load("demo")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, n := range p.Nodes {
		if n.Static == nil {
			continue
		}
		for _, a := range n.Static.Addresses {
			want[n.Name+"|"+a.Iface+"|"+a.Address.String()] = true
		}
	}
	if len(want) == 0 {
		t.Fatal("the demo profile has no static addresses to check")
	}
	return want
}

// demoNodes is the number of nodes (and so lab namespaces) of the demo.
func demoNodes(t *testing.T) int {
	t.Helper()
	p, err := profiles.Load("demo")
	if err != nil {
		t.Fatal(err)
	}
	return len(p.Nodes)
}

// demoLinks is the number of lab links of the demo.
func demoLinks(t *testing.T) int {
	t.Helper()
	p, err := profiles.Load("demo")
	if err != nil {
		t.Fatal(err)
	}
	return len(p.Lab.Links)
}

// waitAddresses collects address.added events until every static address of
// the demo has been reported, and returns all address.added events seen.
func waitAddresses(t *testing.T, events <-chan engine.Event) []engine.Event {
	t.Helper()
	want := staticAddresses(t)
	var got []engine.Event
	timeout := time.After(30 * time.Second)
	for len(want) > 0 {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("fieldcon exited before reporting the static addresses %v", want)
			}
			if e.Kind == engine.KindError {
				t.Fatalf("error event: %v", e.Fields)
			}
			if e.Kind == engine.KindAddressAdded {
				got = append(got, e)
				delete(want, fmt.Sprintf("%s|%v|%v", e.Node, e.Fields["iface"], e.Fields["address"]))
			}
		case <-timeout:
			t.Fatalf("static addresses %v not reported within 30s", want)
		}
	}
	return got
}

// kernelHasAddress reports whether `ip -j addr show` output lists cidr as
// local address and prefix length.
func kernelHasAddress(t *testing.T, ipJSON, cidr string) bool {
	t.Helper()
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(ipJSON), &links); err != nil {
		t.Fatalf("ip -j addr: %v\n%s", err, ipJSON)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if fmt.Sprintf("%s/%d", a.Local, a.PrefixLen) == cidr {
				return true
			}
		}
	}
	return false
}

// TestRunDemoLab runs the demo lab headless and checks every address.added
// event against the kernel (`ip -n NS addr show dev IFACE`), then checks that
// the lab is gone after --for ends.
func TestRunDemoLab(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildBinary(t)
	lab := labtest.UniqueName("r")
	cmd, events := startRun(t, bin, "-p", "demo", "--lab", "--lab-name", lab, "--for", "5s")
	added := waitAddresses(t, events)
	for _, e := range added {
		ns := "fc-" + lab + "-" + e.Node
		iface, _ := e.Fields["iface"].(string)
		addr, _ := e.Fields["address"].(string)
		out := labtest.Exec(t, ns, "ip", "-j", "addr", "show", "dev", iface)
		if !kernelHasAddress(t, out, addr) {
			t.Errorf("%s: address.added %s on %s, but `ip -n %s addr show dev %s` says:\n%s", e.Node, addr, iface, ns, iface, out)
		}
	}
	routes := labtest.Exec(t, "fc-"+lab+"-server", "ip", "route")
	if !strings.Contains(routes, "203.0.113.0/24 via 198.51.100.2") {
		t.Errorf("server routes lack the static route:\n%s", routes)
	}
	for range events {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fieldcon run: %v", err)
	}
	if left := namespaces(t, lab); len(left) > 0 {
		t.Fatalf("namespaces left after run --lab: %v", left)
	}
}

// TestRunSIGINTRemovesEverything interrupts a running lab.
func TestRunSIGINTRemovesEverything(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildBinary(t)
	lab := labtest.UniqueName("i")
	cmd, events := startRun(t, bin, "-p", "demo", "--lab", "--lab-name", lab)
	waitAddresses(t, events)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range events {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fieldcon run after SIGINT: %v", err)
	}
	if left := namespaces(t, lab); len(left) > 0 {
		t.Fatalf("namespaces left after SIGINT: %v", left)
	}
}

// TestLabDownAfterKill9 kills fieldcon without a chance to clean up, then
// checks that `lab down` removes what it left.
func TestLabDownAfterKill9(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildBinary(t)
	lab := labtest.UniqueName("k")
	t.Cleanup(func() { exec.Command(bin, "lab", "down", "-p", "demo", "--lab-name", lab).Run() })
	cmd, events := startRun(t, bin, "-p", "demo", "--lab", "--lab-name", lab)
	waitAddresses(t, events)
	cmd.Process.Kill()
	cmd.Wait()
	if left := namespaces(t, lab); len(left) != demoNodes(t) {
		t.Fatalf("after kill -9 expected the %d namespaces to remain, found %v", demoNodes(t), left)
	}
	if out, err := exec.Command(bin, "lab", "down", "-p", "demo", "--lab-name", lab).CombinedOutput(); err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	if left := namespaces(t, lab); len(left) > 0 {
		t.Fatalf("namespaces left after lab down: %v", left)
	}
}

// TestRunReusesLabAndLeavesItUp: a lab brought up with `lab up` stays up
// after `run --lab` exits; status --json describes it.
func TestRunReusesLabAndLeavesItUp(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildBinary(t)
	lab := labtest.UniqueName("u")
	t.Cleanup(func() { exec.Command(bin, "lab", "down", "-p", "demo", "--lab-name", lab).Run() })
	if out, err := exec.Command(bin, "lab", "up", "-p", "demo", "--lab-name", lab).CombinedOutput(); err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	cmd, events := startRun(t, bin, "-p", "demo", "--lab", "--lab-name", lab, "--for", "1s")
	waitAddresses(t, events)
	for range events {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if left := namespaces(t, lab); len(left) != demoNodes(t) {
		t.Fatalf("run --lab on a lab that was up: namespaces now %v, want all %d left up", left, demoNodes(t))
	}
	// The static role's changes are undone, the lab's links stay.
	for key := range staticAddresses(t) {
		parts := strings.Split(key, "|")
		out := labtest.Exec(t, "fc-"+lab+"-"+parts[0], "ip", "-j", "addr", "show", "dev", parts[1])
		if kernelHasAddress(t, out, parts[2]) {
			t.Errorf("static address %s still on %s after run exited", parts[2], parts[0])
		}
	}
	out, err := exec.Command(bin, "lab", "status", "-p", "demo", "--lab-name", lab, "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Nodes []struct {
			Name  string `json:"name"`
			Netns string `json:"netns"`
			Links []struct {
				Name string `json:"name"`
			} `json:"links"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("lab status --json: %v\n%s", err, out)
	}
	links := 0
	for _, n := range st.Nodes {
		links += len(n.Links)
	}
	if len(st.Nodes) != demoNodes(t) || st.Nodes[0].Netns == "" || links != 2*demoLinks(t) {
		t.Fatalf("lab status --json = %s", out)
	}
}
