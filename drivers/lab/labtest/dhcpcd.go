package labtest

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Dhcpcd is a dhcpcd (Roy Marples' DHCP client, Debian's dhcpcd-base)
// running in the foreground in a lab namespace.
type Dhcpcd struct {
	t     testing.TB
	netns string
	iface string
	cmd   *exec.Cmd
	out   *LockedBuffer
	// Events is the file its hook script appends "$reason $new_ip_address"
	// to, one line per event.
	Events string
}

// StartDhcpcd runs `dhcpcd -B -d -4` on iface inside netns with the given
// dhcpcd.conf lines, and stops it (by PID) when the test ends. Its lease,
// DUID and pid files live in a temporary directory bind-mounted over
// /var/lib/dhcpcd and /run inside the private mount namespace `ip netns
// exec` creates, so nothing of the root namespace's dhcpcd state is read or
// written; its hook script only logs (no resolv.conf, no hostname).
func StartDhcpcd(t testing.TB, netns, iface string, conf ...string) *Dhcpcd {
	t.Helper()
	bin := RequireBinary(t, "dhcpcd")
	if netns == "" {
		t.Fatal("labtest.StartDhcpcd: empty namespace name would run in the root namespace")
	}
	dir := t.TempDir()
	db, run := filepath.Join(dir, "db"), filepath.Join(dir, "run")
	for _, d := range []string{db, run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := &Dhcpcd{t: t, netns: netns, iface: iface, out: &LockedBuffer{}, Events: filepath.Join(dir, "events")}
	hook := filepath.Join(dir, "hook")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho \"$reason $new_ip_address\" >> "+d.Events+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cf := filepath.Join(dir, "dhcpcd.conf")
	lines := append([]string{"script " + hook, "noipv4ll", "nodelay"}, conf...)
	if err := os.WriteFile(cf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh := "mount --bind " + run + " /run && mount --bind " + db + " /var/lib/dhcpcd && exec " + bin +
		" -B -d -4 -f " + cf + " " + iface
	d.cmd = exec.Command("ip", "netns", "exec", netns, "sh", "-c", sh)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	// Its own process group, so that its privilege-separation helpers
	// (children of it) go with it; and Wait does not hang on a pipe one of
	// them still holds.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	d.cmd.WaitDelay = 2 * time.Second
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start dhcpcd in %s: %v", netns, err)
	}
	t.Cleanup(d.stop)
	return d
}

// stop ends dhcpcd by its PID (ip netns exec and sh exec it, so the PID
// is dhcpcd's): SIGTERM, and once it has exited (or after five seconds)
// SIGKILL to its process group, which takes the privilege-separation
// helpers it forked. It is reaped only after that, so the group id cannot
// have been reused by then.
func (d *Dhcpcd) stop() {
	pid := d.cmd.Process.Pid
	d.cmd.Process.Signal(syscall.SIGTERM)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && !exited(pid); {
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	d.cmd.Wait()
	if d.t.Failed() {
		d.t.Logf("dhcpcd in %s:\n%s", d.netns, d.out.String())
	}
}

// exited reports whether an unreaped child has exited (a zombie).
func exited(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// Log is what dhcpcd printed so far.
func (d *Dhcpcd) Log() string { return d.out.String() }

// WaitLog waits until dhcpcd's output holds s at least n times, failing
// the test after within.
func (d *Dhcpcd) WaitLog(s string, n int, within time.Duration) {
	d.t.Helper()
	end := time.Now().Add(within)
	for time.Now().Before(end) {
		if strings.Count(d.Log(), s) >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("dhcpcd did not log %q %d time(s) within %s", s, n, within)
}

// Addresses lists the IPv4 addresses the kernel has on dhcpcd's interface
// (`ip -j -n NETNS -4 addr show dev IFACE`).
func (d *Dhcpcd) Addresses() []netip.Prefix {
	d.t.Helper()
	return Addresses(d.t, d.netns, d.iface)
}

// Addresses lists the IPv4 addresses of iface in netns as the kernel has
// them (`ip -j -n NETNS -4 addr show dev IFACE`).
func Addresses(t testing.TB, netns, iface string) []netip.Prefix {
	t.Helper()
	out, err := exec.Command("ip", "-j", "-n", netns, "-4", "addr", "show", "dev", iface).Output()
	if err != nil {
		t.Fatalf("ip -j -n %s addr show dev %s: %v", netns, iface, err)
	}
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatalf("ip -j addr: %v\n%s", err, out)
	}
	var ps []netip.Prefix
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if addr, err := netip.ParseAddr(a.Local); err == nil {
				ps = append(ps, netip.PrefixFrom(addr, a.PrefixLen))
			}
		}
	}
	return ps
}

// LockedBuffer collects a child process's output while the test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *LockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *LockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
