// Package labtest helps integration tests of any package run against real
// kernels and real peers: it skips without root or a peer binary, and brings
// a profile's lab up under a unique name that is removed (and checked gone)
// when the test ends.
package labtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/profiles"
)

// RequireRoot skips the test unless it runs as root with iproute2 present.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: requires root for network namespaces (run `sudo make test`)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: requires ip (install the Debian package iproute2)")
	}
}

// debianPackage names the package that installs a peer binary, for the skip
// message.
var debianPackage = map[string]string{
	"ip": "iproute2", "tc": "iproute2", "ss": "iproute2",
	"dnsmasq":   "dnsmasq-base",
	"dhclient":  "isc-dhcp-client",
	"busybox":   "busybox",
	"kea-dhcp4": "kea-dhcp4-server",
	"perfdhcp":  "kea-admin",
	"dhcpcd":    "dhcpcd-base",
	"tcpdump":   "tcpdump",
	"tshark":    "tshark",
	"iperf3":    "iperf3",
	"nft":       "nftables",
	"conntrack": "conntrack",
	"socat":     "socat",
	"ping":      "iputils-ping",
}

// RequireBinary returns the path of a peer program, or skips the test with
// a message naming the Debian package to install. busybox applets (udhcpc,
// udhcpd) are found through busybox: run them as `busybox udhcpc`.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	if name == "udhcpc" || name == "udhcpd" {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		name = "busybox"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		pkg := debianPackage[name]
		if pkg == "" {
			pkg = name
		}
		t.Skipf("skipping: requires %s (install the Debian package %s)", name, pkg)
	}
	return p
}

// UniqueName returns a short lab name that no other test uses: prefix
// (default "t") and random hex, at most 20 characters and without '-', so
// its namespaces fc-<name>-<node> cannot be mistaken for another lab's.
func UniqueName(prefix string) string {
	prefix = strings.ReplaceAll(strings.ToLower(prefix), "-", "")
	if prefix == "" {
		prefix = "t"
	}
	if len(prefix) > 12 {
		prefix = prefix[:12]
	}
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Up brings the lab of p up under a unique name (root required, else the
// test is skipped) and removes it when the test ends, failing the test if
// any of its namespaces is left.
func Up(t testing.TB, p *profiles.Profile) *lab.Lab {
	t.Helper()
	RequireRoot(t)
	name := UniqueName("t")
	l, err := lab.Up(context.Background(), p, name)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Down(name); err != nil {
			t.Errorf("lab down %s: %v", name, err)
		}
		if lab.Exists(name) {
			t.Errorf("lab %s: namespaces left after down", name)
		}
		entries, _ := os.ReadDir("/var/run/netns")
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), lab.NetnsName(name, "")) {
				t.Errorf("namespace %s left after lab down", e.Name())
			}
		}
	})
	return l
}

// Host opens the linux host of a lab node, closed when the test ends.
func Host(t testing.TB, l *lab.Lab, node string) *linux.Host {
	t.Helper()
	h, err := linux.Open(l.Netns(node))
	if err != nil {
		t.Fatalf("open node %s of lab %s: %v", node, l.Name, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// Exec runs a command inside a namespace (`ip netns exec NETNS args...`),
// fails the test if it fails, and returns its combined output.
func Exec(t testing.TB, netns string, args ...string) string {
	t.Helper()
	if netns == "" {
		t.Fatal("labtest.Exec: empty namespace name would run in the root namespace")
	}
	out, err := exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec %s %s: %v\n%s", netns, strings.Join(args, " "), err, out)
	}
	return string(out)
}
