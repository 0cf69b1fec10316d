package lab_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/profiles"
)

const threeNodes = `
name = "three"
[[node]]
name = "server"
[[node]]
name = "router"
[[node]]
name = "device"

[lab]
[[lab.link]]
a = "server:eth0"
b = "router:eth0"
mtu = 1400

[[lab.link]]
a = "router:eth1"
b = "device:eth0"
down = true
`

func parse(t *testing.T, src string) *profiles.Profile {
	t.Helper()
	p, err := parseProfile(src)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func parseProfile(src string) (*profiles.Profile, error) {
	return profiles.Parse("test.toml", []byte(src))
}

func ipOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func mustContain(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("want %q in:\n%s", w, out)
		}
	}
}

// leftovers lists namespaces of the lab still in /var/run/netns.
func leftovers(name string) []string {
	var out []string
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), lab.NetnsName(name, "")) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"demo", true}, {"t3f9a1c", true}, {"a-b-0", true}, {"abcdefghij0123456789", true},
		{"", false}, {"Demo", false}, {"a_b", false}, {"a/b", false}, {"..", false},
		{"abcdefghij0123456789x", false}, {"a b", false},
	} {
		if err := lab.ValidName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%t", tc.name, err, tc.ok)
		}
	}
	if got := lab.NetnsName("demo", "router"); got != "fc-demo-router" {
		t.Errorf("NetnsName = %q", got)
	}
	l := &lab.Lab{Name: "demo"}
	if got := l.Netns("nosuchnode"); got == "" {
		t.Error("Netns returned \"\", which means the root namespace to drivers/linux")
	}
	if _, err := lab.Up(context.Background(), parse(t, threeNodes), ""); err == nil {
		t.Error("Up with an empty lab name succeeded")
	}
	if err := lab.Down(""); err == nil {
		t.Error("Down with an empty lab name succeeded")
	}
	first, second := labtest.UniqueName("t"), labtest.UniqueName("t")
	if first == second || len(labtest.UniqueName("averyveryverylongprefix")) > 20 || lab.ValidName(first) != nil {
		t.Error("UniqueName is not unique or too long")
	}
}

func TestUpStatusDown(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireBinary(t, "tc")
	name := labtest.UniqueName("t")
	p := parse(t, threeNodes)
	l, err := lab.Up(context.Background(), p, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Down(name) })

	srv, rtr, dev := l.Netns("server"), l.Netns("router"), l.Netns("device")
	if srv != "fc-"+name+"-server" {
		t.Errorf("server netns %q", srv)
	}
	netns := ipOut(t, "ip", "netns", "list")
	mustContain(t, netns, srv, rtr, dev)

	// Kernel state, read with iproute2.
	mustContain(t, ipOut(t, "ip", "-n", srv, "link", "show", "eth0"), "mtu 1400", ",UP", "state UP")
	mustContain(t, ipOut(t, "ip", "-n", rtr, "link", "show", "eth0"), "mtu 1400", "state UP")
	for _, ns := range []string{rtr, dev} {
		iface := map[string]string{rtr: "eth1", dev: "eth0"}[ns]
		out := ipOut(t, "ip", "-n", ns, "link", "show", iface)
		mustContain(t, out, "mtu 1500", "state DOWN")
		if strings.Contains(out, ",UP") {
			t.Errorf("%s %s is up, want down:\n%s", ns, iface, out)
		}
	}
	if out := ipOut(t, "tc", "-n", dev, "qdisc", "show", "dev", "eth0"); strings.Contains(out, "netem") {
		t.Errorf("netem on a link without loss/delay:\n%s", out)
	}
	for _, ns := range []string{srv, rtr, dev} {
		mustContain(t, ipOut(t, "ip", "-n", ns, "link", "show", "lo"), "LOOPBACK,UP")
		for key, want := range map[string]string{
			"net.ipv4.ip_forward": "0", "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.eth0.rp_filter": "0",
			"net.ipv4.conf.eth0.promote_secondaries": "1",
		} {
			if got := strings.TrimSpace(labtest.Exec(t, ns, "sysctl", "-n", key)); got != want {
				t.Errorf("%s %s = %s, want %s", ns, key, got, want)
			}
		}
		// Removing the primary address keeps the secondary.
		labtest.Exec(t, ns, "ip", "addr", "add", "203.0.113.1/24", "dev", "eth0")
		labtest.Exec(t, ns, "ip", "addr", "add", "203.0.113.2/24", "dev", "eth0")
		labtest.Exec(t, ns, "ip", "addr", "del", "203.0.113.1/24", "dev", "eth0")
		mustContain(t, ipOut(t, "ip", "-n", ns, "addr", "show", "dev", "eth0"), "203.0.113.2/24")
		labtest.Exec(t, ns, "ip", "addr", "del", "203.0.113.2/24", "dev", "eth0")
	}
	// The link carries traffic.
	labtest.Exec(t, srv, "ip", "addr", "add", "198.51.100.1/24", "dev", "eth0")
	labtest.Exec(t, rtr, "ip", "addr", "add", "198.51.100.2/24", "dev", "eth0")
	udpAcross(t, srv, rtr, netip.MustParseAddrPort("198.51.100.2:4000"))

	if !lab.Exists(name) {
		t.Error("Exists = false after Up")
	}
	if labs, err := lab.List(); err != nil || !slices.Contains(labs, name) {
		t.Errorf("List() = %v, %v; want it to include %s", labs, err, name)
	}
	if _, err := lab.Up(context.Background(), p, name); err == nil || !strings.Contains(err.Error(), "fieldcon lab down") {
		t.Errorf("second Up = %v, want a refusal naming `fieldcon lab down`", err)
	}

	st, err := lab.Status(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Name    string `json:"name"`
		Profile string `json:"profile"`
		Nodes   []struct {
			Name  string `json:"name"`
			Netns string `json:"netns"`
			Links []struct {
				Name      string   `json:"name"`
				Peer      string   `json:"peer"`
				MTU       int      `json:"mtu"`
				Up        bool     `json:"up"`
				Addresses []string `json:"addresses"`
			} `json:"links"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Name != name || back.Profile != "three" || len(back.Nodes) != 3 || back.Nodes[0].Name != "server" || back.Nodes[2].Name != "device" {
		t.Fatalf("status %s", b)
	}
	links := map[string]string{} // node:iface → "peer mtu up addrs"
	for _, n := range back.Nodes {
		if n.Netns != lab.NetnsName(name, n.Name) {
			t.Errorf("node %s netns %s", n.Name, n.Netns)
		}
		for _, ln := range n.Links {
			links[n.Name+":"+ln.Name] = strings.TrimSpace(strings.Join([]string{ln.Peer, itoa(ln.MTU), map[bool]string{true: "up", false: "down"}[ln.Up], strings.Join(ln.Addresses, ",")}, " "))
		}
	}
	want := map[string]string{
		"server:eth0": "router:eth0 1400 up 198.51.100.1/24",
		"router:eth0": "server:eth0 1400 up 198.51.100.2/24",
		"router:eth1": "device:eth0 1500 down",
		"device:eth0": "router:eth1 1500 down",
	}
	for k, w := range want {
		if links[k] != w {
			t.Errorf("status %s = %q, want %q (json %s)", k, links[k], w, b)
		}
	}
	if len(links) != len(want) {
		t.Errorf("status has links %v, want %v", links, want)
	}
	if _, err := os.Stat("/run/fieldcon/labs/" + name + ".json"); err != nil {
		t.Errorf("marker file: %v", err)
	}

	// Flap a link as the TUI does.
	if err := lab.SetLinkUp(st, profiles.Endpoint{Node: "device", Iface: "eth0"}, true); err != nil {
		t.Fatal(err)
	}
	if err := lab.SetLinkUp(st, profiles.Endpoint{Node: "router", Iface: "eth1"}, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(ipOut(t, "ip", "-n", dev, "link", "show", "eth0"), "state UP") })
	if err := lab.SetLinkUp(st, profiles.Endpoint{Node: "router", Iface: "eth1"}, false); err != nil {
		t.Fatal(err)
	}
	mustContain(t, ipOut(t, "ip", "-n", dev, "link", "show", "eth0"), "NO-CARRIER")
	if err := lab.SetLinkUp(st, profiles.Endpoint{Node: "nosuch", Iface: "eth0"}, true); err == nil {
		t.Error("SetLinkUp on a missing node succeeded")
	}

	if err := lab.Down(name); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(name); len(left) != 0 || lab.Exists(name) {
		t.Errorf("namespaces left after Down: %v", left)
	}
	if _, err := os.Stat("/run/fieldcon/labs/" + name + ".json"); !os.IsNotExist(err) {
		t.Errorf("marker file left: %v", err)
	}
	if err := lab.Down(name); err != nil {
		t.Errorf("second Down: %v", err)
	}
	if labs, _ := lab.List(); slices.Contains(labs, name) {
		t.Errorf("List() = %v still includes %s", labs, name)
	}
	if _, err := lab.Status(name); err == nil {
		t.Error("Status of a removed lab succeeded")
	}
}

// udpAcross sends a datagram from namespace from to dst, bound in namespace to.
func udpAcross(t *testing.T, from, to string, dst netip.AddrPort) {
	t.Helper()
	hf, err := linux.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	ht, err := linux.Open(to)
	if err != nil {
		t.Fatal(err)
	}
	defer ht.Close()
	srv, err := ht.ListenUDP(dst, engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := hf.ListenUDP(netip.AddrPort{}, engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.WriteToUDPAddrPort([]byte("hello"), dst); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 16)
	if n, _, err := srv.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("datagram across the lab link: %q, %v", buf[:n], err)
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3s")
		}
	}
}

// TestUpFailureRemovesWhatItBuilt: the second link reuses server:eth0, so the
// kernel refuses it after the namespaces and the first link exist.
func TestUpFailureRemovesWhatItBuilt(t *testing.T) {
	labtest.RequireRoot(t)
	name := labtest.UniqueName("t")
	// Built by hand: the profile validator would reject the duplicate.
	p := &profiles.Profile{
		Name:  "bad",
		Nodes: []profiles.Node{{Name: "server"}, {Name: "router"}},
		Lab: &profiles.Lab{Links: []profiles.LabLink{
			{A: profiles.Endpoint{Node: "server", Iface: "eth0"}, B: profiles.Endpoint{Node: "router", Iface: "eth0"}},
			{A: profiles.Endpoint{Node: "server", Iface: "eth0"}, B: profiles.Endpoint{Node: "router", Iface: "eth1"}},
		}},
	}
	_, err := lab.Up(context.Background(), p, name)
	if err == nil {
		lab.Down(name)
		t.Fatal("Up with a duplicate interface succeeded")
	}
	if !strings.Contains(err.Error(), "lab link 2") {
		t.Errorf("error %q does not say which link failed", err)
	}
	if left := leftovers(name); len(left) != 0 {
		t.Errorf("namespaces left after a failed Up: %v", left)
		lab.Down(name)
	}
}

// TestDownAfterKill: a process builds the lab and is SIGKILLed; Down in
// another process still finds and removes everything.
func TestDownAfterKill(t *testing.T) {
	if name := os.Getenv("FIELDCON_LAB_HELPER"); name != "" {
		helperUp(name)
		return
	}
	labtest.RequireRoot(t)
	name := labtest.UniqueName("k")
	cmd := exec.Command(os.Args[0], "-test.run=^TestDownAfterKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FIELDCON_LAB_HELPER="+name)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Down(name) })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "lab up") || strings.HasPrefix(sc.Text(), "lab error") {
				ready <- sc.Text()
				break
			}
		}
		close(ready)
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "lab up") {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("helper: %q", line)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("helper did not bring the lab up within 30s")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if len(leftovers(name)) != 3 {
		t.Fatalf("before Down want 3 namespaces, have %v", leftovers(name))
	}
	if err := lab.Down(name); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(name); len(left) != 0 {
		t.Errorf("namespaces left: %v", left)
	}
}

// helperUp runs in the child process of TestDownAfterKill.
func helperUp(name string) {
	p, err := profiles.Parse("test.toml", []byte(threeNodes))
	if err == nil {
		_, err = lab.Up(context.Background(), p, name)
	}
	if err != nil {
		os.Stdout.WriteString("lab error: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("lab up\n")
	time.Sleep(time.Minute) // killed long before
	os.Exit(0)
}

// TestDownSparesAnotherLab: lab "N-b" with node "c" owns fc-N-b-c, which
// also starts with lab N's prefix fc-N-; Down(N) must leave it, and a
// namespace fc-N-x that no lab marked (another test's) as well.
func TestDownSparesAnotherLab(t *testing.T) {
	labtest.RequireRoot(t)
	name := labtest.UniqueName("s")
	other := name + "-b"
	p := parse(t, `
name = "other"
[[node]]
name = "c"
[lab]
`)
	if _, err := lab.Up(context.Background(), p, other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Down(other) })
	foreign := lab.NetnsName(name, "x")
	ipOut(t, "ip", "netns", "add", foreign)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", foreign).Run() })
	if lab.Exists(name) {
		t.Errorf("Exists(%s) is true: another lab's namespace taken for it", name)
	}
	if err := lab.Down(name); err != nil {
		t.Fatal(err)
	}
	if !lab.Exists(other) {
		t.Fatalf("Down(%s) removed lab %s", name, other)
	}
	if _, err := os.Stat("/var/run/netns/" + foreign); err != nil {
		t.Errorf("Down(%s) removed the unmarked namespace %s", name, foreign)
	}
	if err := lab.Down(other); err != nil {
		t.Fatal(err)
	}
	if lab.Exists(other) {
		t.Error("lab left after Down")
	}
}

func TestLabtestUp(t *testing.T) {
	p := parse(t, threeNodes)
	l := labtest.Up(t, p)
	if len(l.Nodes) != 3 {
		t.Fatalf("lab has %d nodes", len(l.Nodes))
	}
	out := labtest.Exec(t, l.Netns("router"), "ip", "-o", "link", "show")
	mustContain(t, out, "eth0@", "eth1@")
	end := profiles.Endpoint{Node: "device", Iface: "eth0"}
	if lk, err := labtest.Host(t, l, "device").LinkByName("eth0"); err != nil || lk.Up || lk.MTU != 1500 || lk.MAC.String() != lab.MAC(end).String() {
		t.Errorf("device eth0 through labtest.Host: %+v, %v; want down, MTU 1500, MAC %s", lk, err, lab.MAC(end))
	}
	if lab.MAC(end)[0]&3 != 2 || lab.MAC(end).String() == lab.MAC(profiles.Endpoint{Node: "router", Iface: "eth1"}).String() {
		t.Errorf("MAC %s is not a locally administered unicast address unique to its end", lab.MAC(end))
	}
}

const netemLab = `
name = "netem"
[[node]]
name = "a"
[[node]]
name = "b"
[lab]
[[lab.link]]
a = "a:eth0"
b = "b:eth0"
loss = 10
delay = "20ms"
`

// kernelHasNetem probes for the netem qdisc in a throwaway namespace.
func kernelHasNetem(t *testing.T) bool {
	t.Helper()
	ns := lab.NetnsName(labtest.UniqueName("n"), "probe")
	ipOut(t, "ip", "netns", "add", ns)
	defer exec.Command("ip", "netns", "del", ns).Run()
	ipOut(t, "ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
	return exec.Command("tc", "-n", ns, "qdisc", "add", "dev", "p0", "root", "netem", "delay", "1ms").Run() == nil
}

func TestNetem(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireBinary(t, "tc")
	p := parse(t, netemLab)
	if !kernelHasNetem(t) {
		// Without netem, Up must say why and leave nothing behind.
		name := labtest.UniqueName("t")
		_, err := lab.Up(context.Background(), p, name)
		if err == nil || !strings.Contains(err.Error(), "netem") || !strings.Contains(err.Error(), "modprobe sch_netem") {
			t.Errorf("Up without netem: %v, want an error naming netem and modprobe", err)
		}
		if left := leftovers(name); len(left) != 0 {
			t.Errorf("namespaces left: %v", left)
			lab.Down(name)
		}
		t.Skip("skipping the rest: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM)")
	}
	l := labtest.Up(t, p)
	for _, node := range []string{"a", "b"} {
		mustContain(t, ipOut(t, "tc", "-n", l.Netns(node), "qdisc", "show", "dev", "eth0"), "netem", "delay 20ms", "loss 10%")
	}
}

const lossLab = `
name = "loss"
[[node]]
name = "a"
[[node]]
name = "b"
[lab]
[[lab.link]]
a = "a:eth0"
b = "b:eth0"
loss = 10
`

// TestLossIsReal sends a bounded burst of UDP datagrams across a link with
// 10% loss on each end and checks that about 10% of them never arrive,
// whether the kernel has netem or the nftables fallback does it.
func TestLossIsReal(t *testing.T) {
	labtest.RequireRoot(t)
	if !kernelHasNetem(t) {
		labtest.RequireBinary(t, "nft")
	}
	l := labtest.Up(t, parse(t, lossLab))
	labtest.Exec(t, l.Netns("a"), "ip", "addr", "add", "198.18.0.1/24", "dev", "eth0")
	labtest.Exec(t, l.Netns("b"), "ip", "addr", "add", "198.18.0.2/24", "dev", "eth0")
	// Neighbour resolution could be lost too; pin it so only the datagrams count.
	labtest.Exec(t, l.Netns("a"), "ip", "neigh", "replace", "198.18.0.2", "lladdr", lab.MAC(profiles.Endpoint{Node: "b", Iface: "eth0"}).String(), "dev", "eth0", "nud", "permanent")
	a, b := labtest.Host(t, l, "a"), labtest.Host(t, l, "b")
	rx, err := b.ListenUDP(netip.MustParseAddrPort("198.18.0.2:9000"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := a.ListenUDP(netip.MustParseAddrPort("198.18.0.1:0"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	const sent = 2000
	counted := make(chan int)
	go func() {
		received := 0
		buf := make([]byte, 64)
		for {
			rx.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := rx.ReadFromUDPAddrPort(buf); err != nil {
				counted <- received
				return
			}
			received++
		}
	}()
	for i := 0; i < sent; i++ {
		if _, err := tx.WriteToUDPAddrPort([]byte("loss probe"), netip.MustParseAddrPort("198.18.0.2:9000")); err != nil {
			t.Fatalf("send %d: %v (a dropped frame must look like loss on the wire, not a send error)", i, err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond) // stay well below the receiver's socket buffer
		}
	}
	received := <-counted
	lost := float64(sent-received) / sent * 100
	t.Logf("loss %.1f%% over %d datagrams (expected about 10%%)", lost, sent)
	if lost < 6 || lost > 14 {
		t.Fatalf("loss %.1f%%, want about 10%%", lost)
	}
}
