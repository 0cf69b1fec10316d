package rhcp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/rhcp"
)

// The renewal test's leases: short, so two minutes span several renewals.
// Kea gives 30 s (T1 15 s, T2 26.25 s by RFC 2131 §4.4.5's defaults).
// dnsmasq raises any lease below two minutes to two minutes (its option.c:
// "leases of a minute or less confuse some clients"), so it gives 120 s
// with T1 and T2 set to those of a 30 s lease.
const (
	keaLease     = 30 * time.Second
	dnsmasqLease = 2 * time.Minute
	renewT1      = 15 * time.Second
)

// TestLabRHCPPlusDHCPRenewal runs RHCP+DHCP with short leases from dnsmasq
// and from Kea (in parallel): two minutes later the formal address is still
// on the device, its kernel valid lifetime comes from the lease and has been
// refreshed (`ip -j addr`), the device reported renewals, and the server's
// lease file shows an expiry renewed into the future.
func TestLabRHCPPlusDHCPRenewal(t *testing.T) {
	labtest.RequireRoot(t)
	for _, peer := range []struct {
		name  string
		lease time.Duration
		start func(t *testing.T, netns string) func(ip string) (time.Time, error)
	}{
		{"dnsmasq", dnsmasqLease, func(t *testing.T, netns string) func(string) (time.Time, error) {
			leases, _ := startDnsmasq(t, labtest.RequireBinary(t, "dnsmasq"), netns, dnsmasqConfig{lease: dnsmasqLease, t1: renewT1})
			return func(ip string) (time.Time, error) { return dnsmasqExpiry(leases, ip) }
		}},
		{"kea", keaLease, func(t *testing.T, netns string) func(string) (time.Time, error) {
			leases, _ := startKea(t, labtest.RequireBinary(t, "kea-dhcp4"), netns, keaConfig{lease: keaLease})
			return func(ip string) (time.Time, error) { return keaExpiry(leases, ip) }
		}},
	} {
		t.Run(peer.name, func(t *testing.T) {
			t.Parallel()
			p := loadLab(t, "rhcp-dhcp")
			fastProbes(p)
			p.Node("dhcp").Dnsmasq = nil // the test runs the server itself
			l := labtest.Up(t, p)
			bus := engine.NewBus(10000)
			ev := collect(bus)
			runSite(t, p, l, bus, t.TempDir(), "dhcp")
			ev.wait(t, 5*time.Second, "dhcp", engine.KindAddressAdded, map[string]string{"address": "198.18.0.2/24"})
			expiry := peer.start(t, l.Netns("dhcp"))
			runSite(t, p, l, bus, t.TempDir(), "server", "router", "device")
			checkFormalRenewed(t, ev, l.Netns("device"), peer.lease, expiry)
		})
	}
	t.Run("lost", func(t *testing.T) {
		t.Parallel()
		formalLost(t, labtest.RequireBinary(t, "dnsmasq"), labtest.RequireBinary(t, "kea-dhcp4"))
	})
}

// formalLost loses the formal lease both ways: dnsmasq restarted with
// another range NAKs the renewal (Kea drops an out-of-pool renewal without
// a NAK), then Kea with a 10 s lease is stopped and the lease expires. Each
// time the address leaves the kernel, address.removed and an error event
// report it, and the device takes the next probe the RHCP server sends (a
// re-probe) as at the start.
func formalLost(t *testing.T, dnsmasq, kea string) {
	p := loadLab(t, "rhcp-dhcp")
	fastProbes(p)
	p.Node("dhcp").Dnsmasq = nil
	l := labtest.Up(t, p)
	bus := engine.NewBus(10000)
	ev := collect(bus)
	runSite(t, p, l, bus, t.TempDir(), "dhcp")
	ev.wait(t, 5*time.Second, "dhcp", engine.KindAddressAdded, map[string]string{"address": "198.18.0.2/24"})
	_, stop := startDnsmasq(t, dnsmasq, l.Netns("dhcp"), dnsmasqConfig{lease: 2 * time.Minute, t1: 4 * time.Second})
	r := runSite(t, p, l, bus, t.TempDir(), "server", "router", "device")
	dev := l.Netns("device")
	formal := ev.wait(t, 30*time.Second, "device", engine.KindAddressAdded, map[string]string{"source": "dhcp"})
	addr := fmt.Sprint(formal.Fields["address"])

	// NAK: the server no longer has the address to give.
	stop()
	_, stop = startDnsmasq(t, dnsmasq, l.Netns("dhcp"), dnsmasqConfig{lease: 2 * time.Minute, t1: 4 * time.Second,
		first: "203.0.113.200", last: "203.0.113.209"})
	removed := ev.waitAfter(t, formal.Time, 15*time.Second, "device", engine.KindAddressRemoved, map[string]string{"address": addr, "source": "dhcp"})
	lost := waitLost(t, ev, formal.Time)
	t.Logf("lost %s after %s: %v", addr, removed.Time.Sub(formal.Time).Round(time.Millisecond), lost.Fields["message"])
	if msg := fmt.Sprint(lost.Fields["message"]); !strings.Contains(msg, addr+" lost") || !strings.Contains(msg, "nak") {
		t.Errorf("error event %q does not say the formal lease was lost to a NAK", msg)
	}
	if _, ok := kernelAddress(t, dev, addr); ok {
		t.Errorf("the NAKed address %s is still on the device", addr)
	}
	stop()

	// RHCP goes on: a re-probe gives a temporary address and DHCP a new
	// formal one, here from Kea.
	_, stop = startKea(t, kea, l.Netns("dhcp"), keaConfig{lease: 10 * time.Second})
	reprobe(t, r)
	again := ev.waitAfter(t, removed.Time, 30*time.Second, "device", engine.KindAddressAdded, map[string]string{"source": "dhcp"})
	addr = fmt.Sprint(again.Fields["address"])
	ev.waitAfter(t, removed.Time, 5*time.Second, "device", engine.KindAddressRemoved, map[string]string{"address": "203.0.113.10/24"})

	// Expiry: no server answers the renewals or the rebinds.
	stop()
	removed = ev.waitAfter(t, again.Time, 15*time.Second, "device", engine.KindAddressRemoved, map[string]string{"address": addr, "source": "dhcp"})
	lost = waitLost(t, ev, again.Time)
	t.Logf("lost %s after %s: %v", addr, removed.Time.Sub(again.Time).Round(time.Millisecond), lost.Fields["message"])
	if msg := fmt.Sprint(lost.Fields["message"]); !strings.Contains(msg, addr+" lost") || !strings.Contains(msg, "expired") {
		t.Errorf("error event %q does not say the formal lease expired", msg)
	}
	if d := removed.Time.Sub(again.Time); d < 9*time.Second {
		t.Errorf("the address went %s after the lease began, before its 10 s were up", d)
	}
	if _, ok := kernelAddress(t, dev, addr); ok {
		t.Errorf("the expired address %s is still on the device", addr)
	}
}

// waitLost waits for the device's error event about a lost formal lease.
func waitLost(t *testing.T, ev *events, after time.Time) engine.Event {
	t.Helper()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		ev.mu.Lock()
		for _, e := range ev.all {
			if e.Time.After(after) && e.Node == "device" && e.Kind == engine.KindError && strings.Contains(fmt.Sprint(e.Fields["message"]), "lost") {
				ev.mu.Unlock()
				return e
			}
		}
		ev.mu.Unlock()
	}
	t.Fatalf("no error event about a lost lease on device after %s; events:\n%s", after.Format("15:04:05.000"), ev.dump())
	return engine.Event{}
}

// reprobe is the console's re-probe of ESN-0001 on the RHCP server.
func reprobe(t *testing.T, r *running) {
	t.Helper()
	role, ok := r.site.Engine.Role("server", "rhcp_server")
	srv, isServer := role.(*rhcp.Server)
	if !ok || !isServer {
		t.Fatal("no rhcp_server on node server")
	}
	if err := srv.Reprobe(context.Background(), "ESN-0001"); err != nil {
		t.Fatal(err)
	}
}

// checkFormalRenewed waits for the device's formal address, then checks it
// is held and renewed for two minutes of a lease of lt. serverExpiry reads
// the server's lease file: the expiry it has for an address.
func checkFormalRenewed(t *testing.T, ev *events, dev string, lt time.Duration, serverExpiry func(ip string) (time.Time, error)) {
	t.Helper()
	formal := ev.wait(t, 30*time.Second, "device", engine.KindAddressAdded, map[string]string{"source": "dhcp"})
	addr := fmt.Sprint(formal.Fields["address"])
	ip, _, _ := strings.Cut(addr, "/")
	ev.wait(t, 5*time.Second, "device", engine.KindMechanismWon, map[string]string{"mechanism": "rhcp+dhcp", "address": addr})
	bound := formal.Time
	var first time.Time
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if first, err = serverExpiry(ip); err == nil || time.Now().After(end) {
			if err != nil {
				t.Fatalf("server lease of %s: %v", ip, err)
			}
			break
		}
	}
	secs := uint32(lt / time.Second)
	k, ok := kernelAddress(t, dev, addr)
	if !ok {
		t.Fatalf("formal address %s not on the device", addr)
	}
	t.Logf("formal %s bound at %s: kernel valid_lft %d s, preferred_lft %d s; server expiry %s",
		addr, bound.Format("15:04:05.000"), k.Valid, k.Preferred, first.Format("15:04:05"))
	if k.Valid > secs || k.Preferred > secs {
		t.Errorf("formal address %s has valid_lft %d s, preferred_lft %d s, want at most the lease's %d s", addr, k.Valid, k.Preferred, secs)
	}

	time.Sleep(time.Until(bound.Add(2 * time.Minute)))

	// Renewed at most T1 (and a retransmission) ago, the address has nearly
	// the whole lease left; unrenewed it would have lost 120 s of it.
	k, ok = kernelAddress(t, dev, addr)
	switch {
	case !ok:
		t.Errorf("after 2 minutes the formal address %s is gone:\n%s", addr, ipn(t, dev, "-4", "addr", "show", "dev", "eth0"))
	case k.Valid > secs || k.Valid+uint32((renewT1+5*time.Second)/time.Second) < secs:
		t.Errorf("after 2 minutes the formal address %s has valid_lft %d s, want %d–%d s (refreshed by renewals)",
			addr, k.Valid, secs-uint32((renewT1+5*time.Second)/time.Second), secs)
	}
	renewed := ev.count("device", engine.KindDHCPRenewed, map[string]string{"address": addr}, bound)
	if want := int(2 * time.Minute / renewT1 / 2); renewed < want {
		t.Errorf("%d dhcp.lease.renewed for %s in 2 minutes with T1 %s, want at least %d", renewed, addr, renewT1, want)
	}
	if n := ev.count("device", engine.KindAddressRemoved, map[string]string{"address": addr}, bound); n != 0 {
		t.Errorf("the formal address was removed %d times", n)
	}
	last, err := serverExpiry(ip)
	if err != nil {
		t.Errorf("server lease of %s after 2 minutes: %v", ip, err)
	} else if !last.After(time.Now()) || last.Sub(first) < time.Minute {
		t.Errorf("server's lease of %s expires %s (first %s): not renewed", ip, last.Format("15:04:05"), first.Format("15:04:05"))
	}
	t.Logf("after 2 minutes: kernel valid_lft %d s, %d renewals, server expiry %s", k.Valid, renewed, last.Format("15:04:05"))
}

// kernelLifetimes are an address's lifetimes as `ip -j addr` shows them.
type kernelLifetimes struct {
	Local     string `json:"local"`
	Prefixlen int    `json:"prefixlen"`
	Valid     uint32 `json:"valid_life_time"`
	Preferred uint32 `json:"preferred_life_time"`
}

// kernelAddress reads addr (CIDR) on eth0 of the namespace with
// `ip -j -n NS addr`.
func kernelAddress(t *testing.T, netns, addr string) (kernelLifetimes, bool) {
	t.Helper()
	var links []struct {
		AddrInfo []kernelLifetimes `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(ipn(t, netns, "-j", "-4", "addr", "show", "dev", "eth0")), &links); err != nil {
		t.Fatalf("ip -j addr: %v", err)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if fmt.Sprintf("%s/%d", a.Local, a.Prefixlen) == addr {
				return a, true
			}
		}
	}
	return kernelLifetimes{}, false
}

// dnsmasqExpiry reads dnsmasq's lease file: one lease per line, "expiry
// (Unix seconds) MAC address hostname client-id".
func dnsmasqExpiry(path, ip string) (time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == ip {
			s, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("dnsmasq lease %q: %w", line, err)
			}
			return time.Unix(s, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("no lease for %s in %s:\n%s", ip, path, b)
}

// keaExpiry reads Kea's memfile (CSV, one line per lease change, the latest
// last): the expire column of the last line for ip.
func keaExpiry(path, ip string) (time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	col := -1
	var found time.Time
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		row := strings.Split(sc.Text(), ",")
		if col < 0 {
			for i, h := range row {
				if h == "expire" {
					col = i
				}
			}
			if col < 0 {
				return time.Time{}, fmt.Errorf("kea lease file %s: no expire column in %q", path, sc.Text())
			}
			continue
		}
		if len(row) > col && row[0] == ip {
			s, err := strconv.ParseInt(row[col], 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("kea lease %q: %w", sc.Text(), err)
			}
			found = time.Unix(s, 0)
		}
	}
	if found.IsZero() {
		return time.Time{}, fmt.Errorf("no lease for %s in %s", ip, path)
	}
	return found, sc.Err()
}

// dnsmasqConfig is what startDnsmasq serves: the lab's formal subnet.
type dnsmasqConfig struct {
	lease, t1 time.Duration // T2 is 7/8 of a lease of 2·t1
	// first and last bound the range; default 203.0.113.100–199.
	first, last string
}

// startDnsmasq runs dnsmasq in netns (authoritative: it NAKs a request for
// an address it cannot give), stopped by PID at cleanup or by the returned
// stop; it returns the path of its lease file.
func startDnsmasq(t *testing.T, dnsmasq, netns string, dc dnsmasqConfig) (string, func()) {
	t.Helper()
	if dc.first == "" {
		dc.first, dc.last = "203.0.113.100", "203.0.113.199"
	}
	dir := t.TempDir()
	leases := filepath.Join(dir, "leases")
	cmd := exec.Command("ip", "netns", "exec", netns, dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface=eth0", "--bind-interfaces", "--dhcp-authoritative", "--no-ping", "--log-dhcp", "--log-facility=-",
		fmt.Sprintf("--dhcp-range=%s,%s,255.255.255.0,%ds", dc.first, dc.last, int(dc.lease/time.Second)),
		fmt.Sprintf("--dhcp-option=option:T1,%d", int(dc.t1/time.Second)),
		fmt.Sprintf("--dhcp-option=option:T2,%d", int(dc.t1*2*7/8/time.Second)),
		"--dhcp-leasefile="+leases, "--pid-file="+filepath.Join(dir, "pid"))
	out := &labtest.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			o := out.String()
			t.Logf("dnsmasq (%s-%s): %d DHCPACKs, %d DHCPNAKs", dc.first, dc.last, strings.Count(o, "DHCPACK("), strings.Count(o, "DHCPNAK("))
			if t.Failed() {
				t.Logf("dnsmasq output:\n%s", o)
			}
		})
	}
	t.Cleanup(stop)
	time.Sleep(500 * time.Millisecond)
	return leases, stop
}

// keaConfig is what startKea serves: the lab's formal subnet with one pool.
type keaConfig struct {
	lease time.Duration
	pool  string // default the lab's 203.0.113.100 - 203.0.113.199
}

// startKea runs kea-dhcp4 in netns, stopped by PID at cleanup or by the
// returned stop; it returns the path of its lease file.
func startKea(t *testing.T, kea, netns string, kc keaConfig) (string, func()) {
	t.Helper()
	if kc.pool == "" {
		kc.pool = "203.0.113.100 - 203.0.113.199"
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "kea-dhcp4.conf")
	leases := filepath.Join(dir, "leases.csv")
	cfg := fmt.Sprintf(`{"Dhcp4": {
  "interfaces-config": {"interfaces": ["eth0"], "dhcp-socket-type": "udp"},
  "lease-database": {"type": "memfile", "persist": true, "name": %q, "lfc-interval": 0},
  "valid-lifetime": %d,
  "subnet4": [{"id": 1, "subnet": "203.0.113.0/24", "pools": [{"pool": %q}]}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}]
}}`, leases, int(kc.lease/time.Second), kc.pool)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", netns, kea, "-c", conf)
	cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+dir, "KEA_LOCKFILE_DIR="+dir)
	out := &labtest.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			o := out.String()
			t.Logf("kea (pool %s): %d DHCP4_LEASE_ALLOC", kc.pool, strings.Count(o, "DHCP4_LEASE_ALLOC"))
			if t.Failed() {
				t.Logf("kea output:\n%s", o)
			}
		})
	}
	t.Cleanup(stop)
	time.Sleep(500 * time.Millisecond)
	return leases, stop
}
