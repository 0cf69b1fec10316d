package dhcp_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
)

const clientVsDnsmasq = `
[[node]]
name = "srv"
[node.static]
addresses = [{ iface = "eth0", address = "192.0.2.1/25" }, { iface = "eth1", address = "192.0.2.129/25" }]

[[node]]
name = "cli"
[node.dhcp_client]
iface = "eth0"
client_id = "ESN-C1"
retransmit_initial = "500ms"
pin_server = true
routes = true

[[node]]
name = "uni"
[node.static]
addresses = [{ iface = "eth0", address = "192.0.2.250/25" }]
[node.dhcp_client]
iface = "eth0"
client_id = "ESN-C2"
server = "192.0.2.129"
retransmit_initial = "500ms"

[lab]
[[lab.link]]
a = "srv:eth0"
b = "cli:eth0"
[[lab.link]]
a = "srv:eth1"
b = "uni:eth0"
`

// TestClientRoleWithDnsmasq: fieldcon's client gets an address from dnsmasq
// by broadcast and by unicast to the named server, the kernel has it
// (ip -n), and both renew at T1.
func TestClientRoleWithDnsmasq(t *testing.T) {
	labtest.RequireRoot(t)
	dnsmasq := labtest.RequireBinary(t, "dnsmasq")
	r := startSite(t, clientVsDnsmasq, "srv")
	r.wait("server addresses", 5*time.Second, func() bool { return strings.Contains(r.ip("srv", "addr"), "192.0.2.129/25") })
	dir := t.TempDir()
	r.peer("srv", dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--port=0", "--bind-interfaces",
		"--interface=eth0", "--interface=eth1", "--except-interface=lo", "--log-dhcp", "--dhcp-authoritative",
		"--dhcp-range=192.0.2.100,192.0.2.120,255.255.255.128,2m", "--dhcp-range=192.0.2.200,192.0.2.220,255.255.255.128,2m",
		// dnsmasq's shortest lease is 2m; short T1/T2 make the test see renewals.
		"--dhcp-option=option:T1,3", "--dhcp-option=option:T2,5", "--no-ping",
		"--dhcp-leasefile="+dir+"/leases", "--pid-file="+dir+"/pid")
	time.Sleep(300 * time.Millisecond)
	r.run(t.TempDir(), "cli", "uni")

	for _, node := range []string{"cli", "uni"} {
		bound := r.waitEvent(node, "dhcp.lease.bound", 1, 15*time.Second)
		addr, _ := bound[0].Fields["address"].(string)
		t.Logf("%s bound %s (%v)", node, addr, bound[0].Fields)
		if !strings.Contains(r.ip(node, "-4", "addr", "show", "dev", "eth0"), addr) {
			t.Errorf("%s: kernel does not have %s:\n%s", node, addr, r.ip(node, "addr"))
		}
		renewed := r.waitEvent(node, "dhcp.lease.renewed", 1, 10*time.Second)
		if renewed[0].Fields["address"] != addr {
			t.Errorf("%s renewed %v, want %s", node, renewed[0].Fields["address"], addr)
		}
	}
	if !strings.Contains(r.ip("cli", "route"), "default via 192.0.2.1") {
		t.Errorf("no default route from the lease:\n%s", r.ip("cli", "route"))
	}
	if n := r.ip("cli", "neigh", "show", "192.0.2.1"); !strings.Contains(n, "PERMANENT") {
		t.Errorf("server not pinned: %s", n)
	}
}
