package linux

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/engine"
)

// These tests need root: each makes its own network namespaces named
// fc-t-<random>, acts only inside them, checks the kernel's state with
// iproute2 rather than only through the driver, and deletes them.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: requires root (run as root or with sudo)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: requires ip (Debian package iproute2)")
	}
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a uniquely named namespace, removed at cleanup.
func newNetns(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "fc-t-" + hex.EncodeToString(b)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	return name
}

func open(t testing.TB, ns string) *Host {
	t.Helper()
	h, err := Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// vethPair creates a veth pair between namespaces a and b (a0 in a, b0 in
// b), both up, created inside a so nothing ever exists in the root namespace.
func vethPair(t testing.TB, a, b string) {
	t.Helper()
	run(t, "ip", "-n", a, "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", b)
	run(t, "ip", "-n", a, "link", "set", "a0", "up")
	run(t, "ip", "-n", b, "link", "set", "b0", "up")
}

func mustContain(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("want %q in:\n%s", w, out)
		}
	}
}

func TestOpen(t *testing.T) {
	requireRoot(t)
	if _, err := Open("fc-t-does-not-exist"); err == nil {
		t.Error("Open of a missing namespace succeeded")
	}
	if _, err := Open("../etc"); err == nil {
		t.Error("Open of a path succeeded")
	}
	h := open(t, "")
	if h.Name() != "" {
		t.Errorf("Name() = %q, want \"\"", h.Name())
	}
	ns := newNetns(t)
	hn := open(t, ns)
	links, err := hn.Links()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Name != "lo" || links[0].Kind != "loopback" {
		t.Errorf("a fresh namespace has %+v, want only lo (loopback)", links)
	}
}

func TestLinks(t *testing.T) {
	requireRoot(t)
	a, b := newNetns(t), newNetns(t)
	run(t, "ip", "-n", a, "link", "add", "a0", "mtu", "1400", "type", "veth", "peer", "name", "b0", "netns", b)
	h := open(t, a)

	l, err := h.LinkByName("a0")
	if err != nil {
		t.Fatal(err)
	}
	if l.Kind != "veth" || l.MTU != 1400 || l.Up || len(l.MAC) != 6 {
		t.Errorf("LinkByName(a0) = %+v, want a down veth with MTU 1400 and a MAC", l)
	}
	if _, err := h.LinkByName("nope0"); !errors.Is(err, engine.ErrNotExist) {
		t.Errorf("LinkByName(nope0) error = %v, want ErrNotExist", err)
	}
	if err := h.SetLinkUp("a0", true); err != nil {
		t.Fatal(err)
	}
	mustContain(t, run(t, "ip", "-n", a, "link", "show", "a0"), ",UP", "mtu 1400")
	if err := h.SetLinkUp("lo", true); err != nil {
		t.Fatal(err)
	}
	mustContain(t, run(t, "ip", "-n", a, "link", "show", "lo"), "LOOPBACK,UP")
	if err := h.SetLinkUp("a0", false); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "ip", "-n", a, "link", "show", "a0"); strings.Contains(out, ",UP") {
		t.Errorf("a0 still up:\n%s", out)
	}
	if err := h.SetLinkUp("nope0", true); !errors.Is(err, engine.ErrNotExist) {
		t.Errorf("SetLinkUp(nope0) error = %v, want ErrNotExist", err)
	}
	// The driver sees only its namespace: b0 lives in b.
	if _, err := h.LinkByName("b0"); !errors.Is(err, engine.ErrNotExist) {
		t.Errorf("b0 of another namespace visible: %v", err)
	}
}

func TestAddresses(t *testing.T) {
	requireRoot(t)
	a, b := newNetns(t), newNetns(t)
	vethPair(t, a, b)
	h := open(t, a)

	lifetimes := engine.Address{Prefix: netip.MustParsePrefix("192.0.2.1/24"), Valid: 300 * time.Second, Preferred: 200 * time.Second, Label: "fc"}
	ptp := engine.Address{Prefix: netip.MustParsePrefix("198.51.100.1/32"), Peer: netip.MustParsePrefix("198.51.100.2/32")}
	v6 := engine.Address{Prefix: netip.MustParsePrefix("2001:db8::1/64"), Valid: 120 * time.Second, Preferred: 60 * time.Second}
	for _, ad := range []engine.Address{lifetimes, ptp, v6} {
		if err := h.AddAddress("a0", ad); err != nil {
			t.Fatal(err)
		}
	}
	out := run(t, "ip", "-n", a, "addr", "show", "dev", "a0")
	mustContain(t, out, "inet 192.0.2.1/24", "a0:fc", "inet 198.51.100.1 peer 198.51.100.2/32", "inet6 2001:db8::1/64")
	if !regexp.MustCompile(`valid_lft (300|299)sec preferred_lft (200|199)sec`).MatchString(out) {
		t.Errorf("lifetimes 300/200 not in:\n%s", out)
	}

	got, err := h.Addresses("a0")
	if err != nil {
		t.Fatal(err)
	}
	byPrefix := map[netip.Prefix]engine.Address{}
	for _, ad := range got {
		byPrefix[ad.Prefix] = ad
	}
	if g := byPrefix[lifetimes.Prefix]; g.Label != "fc" || g.Valid < 298*time.Second || g.Valid > 300*time.Second || g.Preferred > 200*time.Second || g.Preferred < 198*time.Second {
		t.Errorf("read back %+v, want label fc, valid ~300s, preferred ~200s", g)
	}
	if g := byPrefix[ptp.Prefix]; g.Peer != ptp.Peer || g.Valid != 0 {
		t.Errorf("read back %+v, want peer %s, forever", g, ptp.Peer)
	}
	if g, ok := byPrefix[v6.Prefix]; !ok || g.Valid < 118*time.Second || g.Valid > 120*time.Second || g.Preferred < 58*time.Second || g.Preferred > 60*time.Second {
		t.Errorf("IPv6 address %+v (found %t), want valid ~120s preferred ~60s", g, ok)
	}
	if out := run(t, "ip", "-n", a, "-6", "addr", "show", "dev", "a0"); !regexp.MustCompile(`valid_lft (120|119)sec preferred_lft (60|59)sec`).MatchString(out) {
		t.Errorf("IPv6 lifetimes 120/60 not in:\n%s", out)
	}
	all, err := h.Addresses("")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < len(got) {
		t.Errorf("Addresses(\"\") has %d addresses, fewer than a0's %d", len(all), len(got))
	}

	// AddAddress replaces: new lifetimes, still one address.
	lifetimes.Valid, lifetimes.Preferred = 60*time.Second, 0
	if err := h.AddAddress("a0", lifetimes); err != nil {
		t.Fatal(err)
	}
	out = run(t, "ip", "-n", a, "-4", "addr", "show", "dev", "a0")
	if strings.Count(out, "192.0.2.1/24") != 1 || !regexp.MustCompile(`valid_lft (60|59)sec preferred_lft (60|59)sec`).MatchString(out) {
		t.Errorf("after replace want one 192.0.2.1/24 with 60s lifetimes:\n%s", out)
	}

	for _, ad := range []engine.Address{lifetimes, ptp, v6} {
		if err := h.DelAddress("a0", ad); err != nil {
			t.Fatal(err)
		}
		if err := h.DelAddress("a0", ad); !errors.Is(err, engine.ErrNotExist) {
			t.Errorf("second DelAddress(%s) error = %v, want ErrNotExist", ad.Prefix, err)
		}
	}
	out = run(t, "ip", "-n", a, "addr", "show", "dev", "a0")
	for _, s := range []string{"192.0.2.1", "198.51.100.1", "2001:db8::1"} {
		if strings.Contains(out, s) {
			t.Errorf("%s still there:\n%s", s, out)
		}
	}
	if err := h.AddAddress("nope0", v6); !errors.Is(err, engine.ErrNotExist) {
		t.Errorf("AddAddress on a missing link: %v, want ErrNotExist", err)
	}
}

func TestRoutes(t *testing.T) {
	requireRoot(t)
	a, b := newNetns(t), newNetns(t)
	vethPair(t, a, b)
	h := open(t, a)
	run(t, "ip", "-n", a, "addr", "add", "192.0.2.1/24", "dev", "a0")
	run(t, "ip", "-n", a, "addr", "add", "2001:db8::1/64", "dev", "a0", "nodad")

	routes := []engine.Route{
		{Dst: netip.MustParsePrefix("203.0.113.0/24"), Gateway: netip.MustParseAddr("192.0.2.254"), Dev: "a0", Metric: 50},
		{Dst: netip.MustParsePrefix("198.18.0.0/15"), Dev: "a0", Src: netip.MustParseAddr("192.0.2.1")},
		{Dst: netip.MustParsePrefix("198.51.100.7/32"), Gateway: netip.MustParseAddr("198.51.100.1"), Dev: "a0", OnLink: true},
		{Dst: netip.MustParsePrefix("2001:db8:1::/48"), Gateway: netip.MustParseAddr("2001:db8::ff"), Dev: "a0"},
	}
	for _, r := range routes {
		if err := h.AddRoute(r); err != nil {
			t.Fatal(err)
		}
	}
	out := run(t, "ip", "-n", a, "route", "show")
	mustContain(t, out,
		"203.0.113.0/24 via 192.0.2.254 dev a0 metric 50",
		"198.18.0.0/15 dev a0 scope link src 192.0.2.1",
		"198.51.100.7 via 198.51.100.1 dev a0 onlink")
	mustContain(t, run(t, "ip", "-n", a, "-6", "route", "show"), "2001:db8:1::/48 via 2001:db8::ff dev a0")

	// Replace semantics: the same destination and metric with a new gateway.
	routes[0].Gateway = netip.MustParseAddr("192.0.2.253")
	if err := h.AddRoute(routes[0]); err != nil {
		t.Fatal(err)
	}
	out = run(t, "ip", "-n", a, "route", "show", "203.0.113.0/24")
	if strings.Count(out, "203.0.113.0/24") != 1 || !strings.Contains(out, "via 192.0.2.253") {
		t.Errorf("after replace want one route via 192.0.2.253:\n%s", out)
	}

	got, err := h.Routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range routes {
		found := false
		for _, g := range got {
			if g.Dst == want.Dst && g.Gateway == want.Gateway && g.Dev == want.Dev && g.Src == want.Src && g.OnLink == want.OnLink && (want.Metric == 0 || g.Metric == want.Metric) {
				found = true
			}
		}
		if !found {
			t.Errorf("route %+v not in Routes() %+v", want, got)
		}
	}

	for _, r := range routes {
		if err := h.DelRoute(r); err != nil {
			t.Fatal(err)
		}
		if err := h.DelRoute(r); !errors.Is(err, engine.ErrNotExist) {
			t.Errorf("second DelRoute(%s) error = %v, want ErrNotExist", r.Dst, err)
		}
	}
	out = run(t, "ip", "-n", a, "route", "show") + run(t, "ip", "-n", a, "-6", "route", "show")
	for _, s := range []string{"203.0.113.0", "198.18.0.0", "198.51.100.7", "2001:db8:1::"} {
		if strings.Contains(out, s) {
			t.Errorf("%s still routed:\n%s", s, out)
		}
	}
}

func TestNeighbors(t *testing.T) {
	requireRoot(t)
	a, b := newNetns(t), newNetns(t)
	vethPair(t, a, b)
	h := open(t, a)
	mac, _ := net.ParseMAC("02:00:5e:00:02:09")
	perm := engine.Neighbor{Dev: "a0", IP: netip.MustParseAddr("192.0.2.9"), MAC: mac, Permanent: true}
	v6 := engine.Neighbor{Dev: "a0", IP: netip.MustParseAddr("2001:db8::9"), MAC: mac}
	for _, n := range []engine.Neighbor{perm, v6} {
		if err := h.SetNeighbor(n); err != nil {
			t.Fatal(err)
		}
	}
	mustContain(t, run(t, "ip", "-n", a, "neigh", "show", "dev", "a0"),
		"192.0.2.9 lladdr 02:00:5e:00:02:09 PERMANENT", "2001:db8::9 lladdr 02:00:5e:00:02:09")
	got, err := h.Neighbors("a0")
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, n := range got {
		if n.IP == perm.IP {
			seen = true
			if !n.Permanent || n.State != "PERMANENT" || n.MAC.String() != mac.String() || n.Dev != "a0" {
				t.Errorf("read back %+v, want permanent %s on a0", n, mac)
			}
		}
	}
	if !seen {
		t.Errorf("%s not in %+v", perm.IP, got)
	}
	for _, n := range []engine.Neighbor{perm, v6} {
		if err := h.DelNeighbor(n); err != nil {
			t.Fatal(err)
		}
		if err := h.DelNeighbor(n); !errors.Is(err, engine.ErrNotExist) {
			t.Errorf("second DelNeighbor(%s) error = %v, want ErrNotExist", n.IP, err)
		}
	}
	if out := run(t, "ip", "-n", a, "neigh", "show", "dev", "a0"); strings.Contains(out, "192.0.2.9") {
		t.Errorf("neighbour still there:\n%s", out)
	}
}

func TestSysctl(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t)
	h := open(t, ns)
	rootBefore, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "0"} {
		if err := h.SetSysctl("net/ipv4/ip_forward", v); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(run(t, "ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.ip_forward")); got != v {
			t.Errorf("ip_forward in %s = %q, want %q", ns, got, v)
		}
		if got, err := h.Sysctl("net.ipv4.ip_forward"); err != nil || got != v {
			t.Errorf("Sysctl = %q, %v; want %q", got, err, v)
		}
	}
	if rootAfter, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(rootAfter) != string(rootBefore) {
		t.Errorf("root namespace ip_forward changed from %q to %q", rootBefore, rootAfter)
	}
	if err := h.SetSysctl("kernel/hostname", "x"); err == nil {
		t.Error("SetSysctl accepted a key outside net/")
	}
	if err := h.SetSysctl("net/../kernel/hostname", "x"); err == nil {
		t.Error("SetSysctl accepted a key escaping net/")
	}
	if _, err := h.Sysctl("net/ipv4/conf/nope0/forwarding"); !errors.Is(err, engine.ErrNotExist) {
		t.Errorf("Sysctl of a missing key: %v, want ErrNotExist", err)
	}
}

func TestWatchLinks(t *testing.T) {
	requireRoot(t)
	a, b := newNetns(t), newNetns(t)
	h := open(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := h.WatchLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "-n", a, "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", b)
	run(t, "ip", "-n", a, "link", "set", "a0", "up")
	timeout := time.After(5 * time.Second)
	for up := false; !up; {
		select {
		case l := <-c:
			if l.Name == "b0" {
				t.Errorf("saw b0 of another namespace: %+v", l)
			}
			up = l.Name == "a0" && l.Up
		case <-timeout:
			t.Fatal("no a0 up event within 5s")
		}
	}
	cancel()
	for range c {
		// Drains until WatchLinks closes the channel.
	}
}

func TestCommand(t *testing.T) {
	requireRoot(t)
	a, b := newNetns(t), newNetns(t)
	vethPair(t, a, b)
	out, err := open(t, a).Command(context.Background(), "ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	mustContain(t, string(out), "a0@")
}

// twoHosts builds a veth link a0 (192.0.2.1/24) — b0 (192.0.2.2/24).
func twoHosts(t testing.TB) (ha, hb *Host, a, b string) {
	t.Helper()
	a, b = newNetns(t), newNetns(t)
	vethPair(t, a, b)
	run(t, "ip", "-n", a, "addr", "add", "192.0.2.1/24", "dev", "a0")
	run(t, "ip", "-n", b, "addr", "add", "192.0.2.2/24", "dev", "b0")
	return open(t, a), open(t, b), a, b
}

func TestUDPBetweenNamespaces(t *testing.T) {
	requireRoot(t)
	ha, hb, _, b := twoHosts(t)
	srv, err := hb.ListenUDP(netip.MustParseAddrPort("192.0.2.2:0"), engine.UDPOptions{Device: "b0", Broadcast: true, ReuseAddr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	port := srv.LocalAddr().(*net.UDPAddr).Port
	mustContain(t, run(t, "ip", "netns", "exec", b, "ss", "-uln"), "192.0.2.2%b0:"+strconv.Itoa(port))

	// ReuseAddr lets a second socket share the port.
	srv2, err := hb.ListenUDP(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(port)), engine.UDPOptions{ReuseAddr: true})
	if err != nil {
		t.Errorf("second socket with ReuseAddr: %v", err)
	} else {
		srv2.Close()
	}

	cli, err := ha.ListenUDP(netip.AddrPort{}, engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	dst := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(port))
	if _, err := cli.WriteToUDPAddrPort([]byte("probe"), dst); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	n, from, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "probe" || from.Addr() != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("got %q from %s, want \"probe\" from 192.0.2.1", buf[:n], from)
	}
	// And back.
	if _, err := srv.WriteToUDPAddrPort([]byte("stop"), from); err != nil {
		t.Fatal(err)
	}
	cli.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, _, err = cli.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "stop" {
		t.Errorf("reply %q, %v; want \"stop\"", buf[:n], err)
	}

	// IPv6, bound to "::".
	run(t, "ip", "-n", ha.Name(), "addr", "add", "2001:db8::1/64", "dev", "a0", "nodad")
	run(t, "ip", "-n", b, "addr", "add", "2001:db8::2/64", "dev", "b0", "nodad")
	srv6, err := hb.ListenUDP(netip.MustParseAddrPort("[::]:0"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv6.Close()
	cli6, err := ha.ListenUDP(netip.MustParseAddrPort("[2001:db8::1]:0"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli6.Close()
	dst6 := netip.AddrPortFrom(netip.MustParseAddr("2001:db8::2"), uint16(srv6.LocalAddr().(*net.UDPAddr).Port))
	if _, err := cli6.WriteToUDPAddrPort([]byte("v6"), dst6); err != nil {
		t.Fatal(err)
	}
	srv6.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, from, err = srv6.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "v6" || from.Addr() != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("IPv6 got %q from %s, %v", buf[:n], from, err)
	}
}

// ipv4UDP builds an IPv4/UDP packet with a valid header checksum (the UDP
// checksum is optional in IPv4 and left zero).
func ipv4UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	copy(p[12:16], src.AsSlice())
	copy(p[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// TestPacketSeesForeignAddress is the RHCP client's situation (DESIGN.md,
// notes from the field): a frame to b0's MAC carrying an IP destination b
// does not own. b's kernel drops it; its AF_PACKET socket must see it.
func TestPacketSeesForeignAddress(t *testing.T) {
	requireRoot(t)
	ha, hb, a, _ := twoHosts(t)
	bl, err := hb.LinkByName("b0")
	if err != nil {
		t.Fatal(err)
	}
	// a routes the maintenance address via b's link address, with b's MAC
	// pinned so no ARP is needed.
	run(t, "ip", "-n", a, "neigh", "replace", "192.0.2.2", "lladdr", bl.MAC.String(), "dev", "a0", "nud", "permanent")
	run(t, "ip", "-n", a, "route", "add", "203.0.113.77/32", "via", "192.0.2.2", "dev", "a0")

	raw, err := hb.OpenPacket("b0", engine.PacketOptions{Protocol: engine.EthIPv4})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cooked, err := hb.OpenPacket("b0", engine.PacketOptions{Protocol: engine.EthIPv4, Cooked: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cooked.Close()
	if raw.LinkType() != 1 || cooked.LinkType() != 101 {
		t.Errorf("link types %d, %d; want 1 (Ethernet), 101 (raw IP)", raw.LinkType(), cooked.LinkType())
	}

	cli, err := ha.ListenUDP(netip.AddrPort{}, engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	before := time.Now()
	if _, err := cli.WriteToUDPAddrPort([]byte("maintenance"), netip.MustParseAddrPort("203.0.113.77:4000")); err != nil {
		t.Fatal(err)
	}
	readFrame := func(c engine.PacketConn, ipOff int) engine.PacketInfo {
		t.Helper()
		buf := make([]byte, 2048)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for {
			n, info, err := c.ReadPacket(buf)
			if err != nil {
				t.Fatalf("no frame to 203.0.113.77: %v", err)
			}
			if n >= ipOff+20 && netip.AddrFrom4([4]byte(buf[ipOff+16:ipOff+20])) == netip.MustParseAddr("203.0.113.77") {
				if !strings.Contains(string(buf[:n]), "maintenance") {
					t.Errorf("payload missing from frame % x", buf[:n])
				}
				return info
			}
		}
	}
	info := readFrame(raw, 14)
	if info.Direction != engine.DirIn || info.Protocol != engine.EthIPv4 || info.Ifindex != bl.Index || info.CapLen != info.Len {
		t.Errorf("raw info %+v, want in, IPv4, ifindex %d", info, bl.Index)
	}
	if info.Time.Before(before.Add(-time.Second)) || info.Time.After(time.Now()) {
		t.Errorf("timestamp %v not around %v", info.Time, before)
	}
	readFrame(cooked, 0)

	// Short buffer: Len keeps the frame's length.
	if _, err := cli.WriteToUDPAddrPort([]byte("maintenance"), netip.MustParseAddrPort("203.0.113.77:4000")); err != nil {
		t.Fatal(err)
	}
	small := make([]byte, 20)
	raw.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, info, err := raw.ReadPacket(small)
	if err != nil || n != 20 || info.Len <= 20 {
		t.Errorf("short read n=%d info=%+v err=%v; want 20 bytes of a longer frame", n, info, err)
	}

	// Deadlines come from the runtime poller.
	raw.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		if _, _, err = raw.ReadPacket(small); err != nil {
			break
		}
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past deadline: %v, want os.ErrDeadlineExceeded", err)
	}
}

func TestPacketWrite(t *testing.T) {
	requireRoot(t)
	ha, hb, _, _ := twoHosts(t)
	const etherType = 0x88b5 // IEEE 802 local experimental
	rx, err := ha.OpenPacket("a0", engine.PacketOptions{Protocol: etherType})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	al, _ := ha.LinkByName("a0")
	bl, _ := hb.LinkByName("b0")

	raw, err := hb.OpenPacket("b0", engine.PacketOptions{Protocol: etherType, Promiscuous: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	mustContain(t, run(t, "ip", "-n", hb.Name(), "-d", "link", "show", "b0"), "promiscuity 1")
	frame := append(append(append([]byte{}, al.MAC...), bl.MAC...), 0x88, 0xb5)
	frame = append(frame, []byte("raw frame")...)
	if err := raw.WritePacket(frame, etherType, nil); err != nil {
		t.Fatal(err)
	}
	cooked, err := hb.OpenPacket("b0", engine.PacketOptions{Protocol: etherType, Cooked: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cooked.Close()
	if err := cooked.WritePacket([]byte("cooked broadcast"), etherType, nil); err != nil {
		t.Fatal(err)
	}

	buf := make([]byte, 256)
	want := []struct {
		payload string
		dir     engine.Direction
	}{{"raw frame", engine.DirIn}, {"cooked broadcast", engine.DirBroadcast}}
	for _, w := range want {
		rx.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, info, err := rx.ReadPacket(buf)
		if err != nil {
			t.Fatalf("waiting for %q: %v", w.payload, err)
		}
		if got := string(buf[14:n]); !strings.HasPrefix(got, w.payload) || info.Direction != w.dir || info.Protocol != etherType {
			t.Errorf("got %q %+v, want %q direction %s", got, info, w.payload, w.dir)
		}
	}
	raw.Close()
	if out := run(t, "ip", "-n", hb.Name(), "-d", "link", "show", "b0"); !strings.Contains(out, "promiscuity 0") {
		t.Errorf("promiscuous mode not dropped with the socket:\n%s", out)
	}
}

func TestTUN(t *testing.T) {
	requireRoot(t)
	ns := newNetns(t)
	h := open(t, ns)
	dev, err := h.CreateTUN("fct0", 1400)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if dev.Name() != "fct0" {
		t.Errorf("Name() = %q", dev.Name())
	}
	mustContain(t, run(t, "ip", "-n", ns, "-d", "link", "show", "fct0"), "mtu 1400", "tun type tun")
	if l, err := h.LinkByName("fct0"); err != nil || l.Kind != "tun" {
		t.Errorf("LinkByName(fct0) = %+v, %v; want kind tun", l, err)
	}
	if err := h.AddAddress("fct0", engine.Address{Prefix: netip.MustParsePrefix("198.18.0.1/24")}); err != nil {
		t.Fatal(err)
	}
	if err := h.SetLinkUp("fct0", true); err != nil {
		t.Fatal(err)
	}
	mustContain(t, run(t, "ip", "-n", ns, "addr", "show", "dev", "fct0"), "inet 198.18.0.1/24")

	// A packet written into the TUN reaches a socket of the namespace, and
	// the reply comes back out of the TUN.
	srv, err := h.ListenUDP(netip.MustParseAddrPort("198.18.0.1:5000"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// A capture on a TUN (no link-layer header) sees bare IP packets.
	capture, err := h.OpenPacket("fct0", engine.PacketOptions{Protocol: engine.EthAll})
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Close()
	if capture.LinkType() != 101 {
		t.Errorf("LinkType on a TUN = %d, want 101 (raw IP)", capture.LinkType())
	}
	peer := netip.MustParseAddr("198.18.0.2")
	if _, err := dev.Write(ipv4UDP(peer, netip.MustParseAddr("198.18.0.1"), 6000, 5000, []byte("through tun"))); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	srv.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "through tun" || from.Addr() != peer {
		t.Fatalf("server got %q from %s, %v", buf[:n], from, err)
	}
	capture.SetReadDeadline(time.Now().Add(3 * time.Second))
	cbuf := make([]byte, 2048)
	if n, info, err := capture.ReadPacket(cbuf); err != nil || n < 20 || cbuf[0] != 0x45 || info.Direction != engine.DirIn || info.Protocol != engine.EthIPv4 {
		t.Errorf("capture on the TUN: % x %+v %v; want the IPv4 packet written, inbound", cbuf[:min(n, 32)], info, err)
	}
	if _, err := srv.WriteToUDPAddrPort([]byte("reply"), from); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n, err := dev.Read(buf)
			if err != nil {
				t.Errorf("tun read: %v", err)
				return
			}
			if n >= 28 && buf[9] == 17 && netip.AddrFrom4([4]byte(buf[16:20])) == peer {
				if string(buf[28:n]) != "reply" {
					t.Errorf("tun read %q, want reply", buf[28:n])
				}
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("no reply out of the TUN within 3s")
	}

	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := exec.Command("ip", "-n", ns, "link", "show", "fct0").Run()
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fct0 still exists 3s after Close")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := h.LinkByName("fct0"); !errors.Is(err, engine.ErrNotExist) {
		t.Errorf("after Close LinkByName(fct0): %v, want ErrNotExist", err)
	}
}

// natLab: client c (c0 192.0.2.2) — router r (r0 192.0.2.1, r1
// 198.51.100.1) — server s (s0 198.51.100.2). s has no route back to
// 192.0.2.0/24: only source NAT on r lets its replies reach c.
func natLab(t *testing.T) (hc, hr, hs *Host) {
	t.Helper()
	c, r, s := newNetns(t), newNetns(t), newNetns(t)
	run(t, "ip", "-n", c, "link", "add", "c0", "type", "veth", "peer", "name", "r0", "netns", r)
	run(t, "ip", "-n", r, "link", "add", "r1", "type", "veth", "peer", "name", "s0", "netns", s)
	for _, cmd := range [][]string{
		{c, "addr", "add", "192.0.2.2/24", "dev", "c0"}, {c, "link", "set", "c0", "up"},
		{c, "route", "add", "default", "via", "192.0.2.1"},
		{r, "addr", "add", "192.0.2.1/24", "dev", "r0"}, {r, "link", "set", "r0", "up"},
		{r, "addr", "add", "198.51.100.1/24", "dev", "r1"}, {r, "link", "set", "r1", "up"},
		{s, "addr", "add", "198.51.100.2/24", "dev", "s0"}, {s, "link", "set", "s0", "up"},
	} {
		run(t, append([]string{"ip", "-n"}, cmd...)...)
	}
	hc, hr, hs = open(t, c), open(t, r), open(t, s)
	if err := hr.SetSysctl("net/ipv4/ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	return hc, hr, hs
}

// exchange sends a datagram from cli to dst and returns the source the
// server saw, or an invalid AddrPort if nothing came within wait; the server
// echoes and the client must get the echo back.
func exchange(t *testing.T, cli, srv engine.UDPConn, dst netip.AddrPort, wait time.Duration) netip.AddrPort {
	t.Helper()
	if _, err := cli.WriteToUDPAddrPort([]byte("ping"), dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	srv.SetReadDeadline(time.Now().Add(wait))
	_, from, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil {
		return netip.AddrPort{}
	}
	if _, err := srv.WriteToUDPAddrPort([]byte("pong"), from); err != nil {
		t.Errorf("echo to %s: %v", from, err)
		return from
	}
	cli.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, _, err := cli.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "pong" {
		t.Errorf("echo back through NAT: %q, %v", buf[:n], err)
	}
	return from
}

func TestMasqueradeAndConntrack(t *testing.T) {
	requireRoot(t)
	hc, hr, hs := natLab(t)
	srv, err := hs.ListenUDP(netip.MustParseAddrPort("198.51.100.2:7000"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := hc.ListenUDP(netip.AddrPort{}, engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	dst := netip.MustParseAddrPort("198.51.100.2:7000")

	// Before NAT the server sees the client's own address and cannot
	// answer it; a raw send checks only the first half.
	if _, err := cli.WriteToUDPAddrPort([]byte("ping"), dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	srv.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, from, err := srv.ReadFromUDPAddrPort(buf); err != nil || from.Addr() != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("before NAT the server saw %s, %v; want 192.0.2.2", from, err)
	}
	if err := hr.SetSysctl("net/netfilter/nf_conntrack_acct", "1"); err != nil {
		t.Fatal(err)
	}
	// The datagram above left a conntrack entry without NAT; start clean.
	if _, err := hr.DeleteConntrack(engine.ConntrackFilter{}); err != nil {
		t.Fatal(err)
	}
	remove, err := hr.AddMasquerade(engine.Masquerade{Name: "t", Source: netip.MustParsePrefix("192.0.2.0/24"), OutIface: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, run(t, "ip", "netns", "exec", hr.Name(), "nft", "list", "table", "ip", "fieldcon-t"),
		"type nat hook postrouting priority srcnat", `ip saddr 192.0.2.0/24 oifname "r1" masquerade`)
	// Adding again replaces rather than stacks.
	if _, err := hr.AddMasquerade(engine.Masquerade{Name: "t", Source: netip.MustParsePrefix("192.0.2.0/24"), OutIface: "r1"}); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "ip", "netns", "exec", hr.Name(), "nft", "list", "table", "ip", "fieldcon-t"); strings.Count(out, "masquerade") != 1 {
		t.Errorf("second AddMasquerade stacked rules:\n%s", out)
	}

	from := exchange(t, cli, srv, dst, 3*time.Second)
	if from.Addr() != netip.MustParseAddr("198.51.100.1") {
		t.Fatalf("server saw %s, want the router's 198.51.100.1", from)
	}
	flows, err := hr.Conntrack(engine.ConntrackFilter{Source: netip.MustParsePrefix("192.0.2.0/24"), Protocol: 17})
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 1 {
		t.Fatalf("conntrack flows %+v, want 1", flows)
	}
	f := flows[0]
	cliPort := cli.LocalAddr().(*net.UDPAddr).Port
	if f.OrigSrc != netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(cliPort)) || f.OrigDst != dst ||
		f.ReplySrc != dst || f.ReplyDst != from || f.PacketsOrig != 1 || f.PacketsReply != 1 || f.Timeout == 0 {
		t.Errorf("flow %+v, want 192.0.2.2:%d → %s translated to %s, 1 packet each way", f, cliPort, dst, from)
	}
	mustContain(t, run(t, "ip", "netns", "exec", hr.Name(), "conntrack", "-L", "-p", "udp"),
		"src=192.0.2.2 dst=198.51.100.2", "dport=7000", "src=198.51.100.2 dst=198.51.100.1")
	if got, _ := hr.Conntrack(engine.ConntrackFilter{Source: netip.MustParsePrefix("203.0.113.0/24")}); len(got) != 0 {
		t.Errorf("filter on another source matched %+v", got)
	}
	n, err := hr.DeleteConntrack(engine.ConntrackFilter{Source: netip.MustParsePrefix("192.0.2.0/24")})
	if err != nil || n != 1 {
		t.Errorf("DeleteConntrack = %d, %v; want 1", n, err)
	}
	if got, _ := hr.Conntrack(engine.ConntrackFilter{}); len(got) != 0 {
		t.Errorf("flows left after delete: %+v", got)
	}

	// snat to an address and port range.
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if err := remove(); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if out := run(t, "ip", "netns", "exec", hr.Name(), "nft", "list", "tables"); strings.Contains(out, "fieldcon-t") {
		t.Errorf("table left after remove:\n%s", out)
	}
	remove, err = hr.AddMasquerade(engine.Masquerade{Name: "s", Source: netip.MustParsePrefix("192.0.2.0/24"), OutIface: "r1",
		To: netip.MustParseAddr("198.51.100.1"), PortMin: 20000, PortMax: 20010})
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	mustContain(t, run(t, "ip", "netns", "exec", hr.Name(), "nft", "list", "table", "ip", "fieldcon-s"), "snat to 198.51.100.1:20000-20010")
	from = exchange(t, cli, srv, dst, 3*time.Second)
	if from.Addr() != netip.MustParseAddr("198.51.100.1") || from.Port() < 20000 || from.Port() > 20010 {
		t.Errorf("server saw %s, want 198.51.100.1:20000-20010", from)
	}
}

func TestForwardFilter(t *testing.T) {
	requireRoot(t)
	hc, hr, hs := natLab(t)
	// Replies need a way back: route on s rather than NAT here.
	run(t, "ip", "-n", hs.Name(), "route", "add", "192.0.2.0/24", "via", "198.51.100.1")
	remove, err := hr.AddForwardFilter(engine.ForwardFilter{Name: "fw", InIface: "r0", OutIface: "r1", AllowUDP: []uint16{7000}})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, run(t, "ip", "netns", "exec", hr.Name(), "nft", "list", "table", "ip", "fieldcon-fw"),
		"type filter hook forward priority filter", "ct state established,related accept",
		`iifname "r0" oifname "r1" udp dport 7000 accept`, `iifname "r0" oifname "r1" drop`)
	cli, err := hc.ListenUDP(netip.AddrPort{}, engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, tc := range []struct {
		port    uint16
		allowed bool
	}{{7000, true}, {7001, false}} {
		dst := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.2"), tc.port)
		srv, err := hs.ListenUDP(dst, engine.UDPOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := exchange(t, cli, srv, dst, 500*time.Millisecond).IsValid()
		if got != tc.allowed {
			t.Errorf("port %d passed=%t, want %t", tc.port, got, tc.allowed)
		}
		if tc.port == 7001 {
			if err := remove(); err != nil {
				t.Fatal(err)
			}
			if !exchange(t, cli, srv, dst, 3*time.Second).IsValid() {
				t.Error("port 7001 still blocked after the filter was removed")
			}
		}
		srv.Close()
	}
}

// TestCloseUnblocksReaders: roles stop their reader goroutines by closing
// the socket or device; a blocked read must return, and nothing the driver
// started may keep running.
func TestCloseUnblocksReaders(t *testing.T) {
	requireRoot(t)
	ha, _, _, _ := twoHosts(t)
	before := runtime.NumGoroutine()

	pc, err := ha.OpenPacket("a0", engine.PacketOptions{Protocol: 0x88b5})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := ha.CreateTUN("fct1", 1500)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watch, err := ha.WatchLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() {
		_, _, err := pc.ReadPacket(make([]byte, 64))
		errs <- err
	}()
	go func() {
		_, err := dev.Read(make([]byte, 2048))
		errs <- err
	}()
	time.Sleep(100 * time.Millisecond)
	pc.Close()
	dev.Close()
	cancel()
	for range 2 {
		select {
		case err := <-errs:
			if err == nil {
				t.Error("a read on a closed socket returned no error")
			}
		case <-time.After(3 * time.Second):
			t.Fatal("a read stayed blocked 3s after Close")
		}
	}
	for range watch {
	}
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after closing everything:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConcurrentUse: roles share one Host; its netlink handle must serve
// them from many goroutines at once.
func TestConcurrentUse(t *testing.T) {
	requireRoot(t)
	ha, _, a, _ := twoHosts(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A subnet each: removing a primary address takes the
			// secondaries of its subnet with it (promote_secondaries=0).
			ad := engine.Address{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 1}), 24)}
			for range 20 {
				if err := ha.AddAddress("a0", ad); err != nil {
					errs <- err
					return
				}
				if _, err := ha.Addresses(""); err != nil {
					errs <- err
					return
				}
				if _, err := ha.Routes(); err != nil {
					errs <- err
					return
				}
				if err := ha.DelAddress("a0", ad); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if out := run(t, "ip", "-n", a, "addr", "show", "dev", "a0"); strings.Contains(out, "198.18.") {
		t.Errorf("addresses left:\n%s", out)
	}
}
