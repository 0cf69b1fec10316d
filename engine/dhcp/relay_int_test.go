package dhcp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
)

const relayToDnsmasq = `
[[node]]
name = "srv"
[node.static]
addresses = [{ iface = "eth0", address = "198.51.100.1/24" }]
routes = [{ dst = "192.0.2.0/24", via = "198.51.100.2" }]

[[node]]
name = "relay"
[node.static]
forwarding = true
addresses = [{ iface = "eth0", address = "198.51.100.2/24" }, { iface = "eth1", address = "192.0.2.1/24" }]
[node.dhcp_relay]
downstream = ["eth1"]
upstream = "eth0"
servers = ["198.51.100.1"]
remote_id = "ESN-RELAY"

[[node]]
name = "ud"

[lab]
[[lab.link]]
a = "srv:eth0"
b = "relay:eth0"
[[lab.link]]
a = "relay:eth1"
b = "ud:eth0"
`

const twoRelays = `
[[node]]
name = "srv"
[node.static]
addresses = [{ iface = "eth0", address = "198.51.100.1/24" }]
routes = [{ dst = "192.0.2.0/24", via = "198.51.100.2" }, { dst = "198.18.0.0/24", via = "198.51.100.2" }]
[node.dhcp_server]
ifaces = ["eth0"]
lease_time = "6s"
[[node.dhcp_server.pools]]
subnet = "192.0.2.0/24"
start = "192.0.2.100"
end = "192.0.2.150"
routers = ["192.0.2.1"]

[[node]]
name = "r2"
[node.static]
forwarding = true
addresses = [{ iface = "eth0", address = "198.51.100.2/24" }, { iface = "eth1", address = "198.18.0.1/24" }]
routes = [{ dst = "192.0.2.0/24", via = "198.18.0.2" }]
[node.dhcp_relay]
downstream = ["eth1"]
upstream = "eth0"
servers = ["198.51.100.1"]
remote_id = "ESN-R2"

[[node]]
name = "r1"
[node.static]
forwarding = true
addresses = [{ iface = "eth0", address = "198.18.0.2/24" }, { iface = "eth1", address = "192.0.2.1/24" }]
routes = [{ dst = "0.0.0.0/0", via = "198.18.0.1" }]
[node.dhcp_relay]
downstream = ["eth1"]
upstream = "eth0"
servers = ["198.18.0.1"]
# The server answers r1's giaddr itself, routed through r2 (RFC 1542 §4.1.2).
reply_from = ["198.51.100.1"]
remote_id = "ESN-R1"

[[node]]
name = "ud"

[lab]
[[lab.link]]
a = "srv:eth0"
b = "r2:eth0"
[[lab.link]]
a = "r2:eth1"
b = "r1:eth0"
[[lab.link]]
a = "r1:eth1"
b = "ud:eth0"
`

// udhcpc starts busybox udhcpc on node's eth0 with a script that
// configures the address and logs events; it returns the log path.
func udhcpc(t *testing.T, r *siteRun, node string) string {
	t.Helper()
	bb := labtest.RequireBinary(t, "udhcpc")
	log := filepath.Join(t.TempDir(), "udhcpc.log")
	script := writeScript(t, "udhcpc-script", fmt.Sprintf(`echo "$1 $ip $(date +%%T.%%N)" >> %s
case "$1" in
bound|renew) ip addr replace "$ip/$mask" dev "$interface"
	[ -n "$router" ] && ip route replace default via "$router" ;;
deconfig) ip addr flush dev "$interface" ;;
esac
`, log))
	args := []string{"-f", "-i", "eth0", "-s", script, "-t", "10", "-T", "1"}
	if strings.HasSuffix(bb, "busybox") {
		args = append([]string{bb, "udhcpc"}, args...)
	} else {
		args = append([]string{bb}, args...)
	}
	r.peer(node, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("udhcpc script log: %q", readFile(log))
		}
	})
	return log
}

// TestRelayUdhcpcToDnsmasq: fieldcon's relay between busybox udhcpc and
// dnsmasq; dnsmasq sees the relayed request (giaddr, option 82).
func TestRelayUdhcpcToDnsmasq(t *testing.T) {
	labtest.RequireRoot(t)
	dnsmasq := labtest.RequireBinary(t, "dnsmasq")
	r := startSite(t, relayToDnsmasq, "srv", "relay")
	r.wait("relay listening", 10*time.Second, func() bool {
		for _, e := range r.bus.History() {
			if e.Node == "relay" && e.Kind == engine.KindRoleStarted && e.Fields["role"] == "dhcp_relay" {
				return strings.Contains(r.ip("srv", "addr"), "198.51.100.1/24")
			}
		}
		return false
	})
	dir := t.TempDir()
	_, dlog := r.peer("srv", dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--port=0", "--bind-interfaces",
		"--interface=eth0", "--except-interface=lo", "--log-dhcp", "--dhcp-authoritative", "--no-ping",
		"--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,2m",
		"--dhcp-leasefile="+dir+"/leases", "--pid-file="+dir+"/pid")
	time.Sleep(500 * time.Millisecond)
	log := udhcpc(t, r, "ud")
	r.wait("udhcpc bound through the relay", 20*time.Second, func() bool { return strings.Contains(readFile(log), "bound 192.0.2.") })
	addrs := r.ip("ud", "-4", "addr", "show", "dev", "eth0")
	if !strings.Contains(addrs, "192.0.2.1") {
		t.Errorf("udhcpc's address not in the kernel:\n%s", addrs)
	}
	// dnsmasq logs the relay it answered through and the option 82 it saw.
	dl := dlog.String()
	if !strings.Contains(dl, "192.0.2.1") {
		t.Errorf("dnsmasq did not see the relay's giaddr:\n%s", dl)
	}
	// dnsmasq echoes the option 82 it got: circuit-id (1) "eth1", then
	// remote-id (2) "ESN-RELAY" (9 bytes).
	if !strings.Contains(dl, "option: 82 agent-id  01:04:65:74:68:31:02:09:45:53:4e:2d:52:45") {
		t.Errorf("dnsmasq did not get option 82 with circuit-id eth1 and remote-id ESN-RELAY:\n%s", dl)
	}
	t.Logf("udhcpc: %q", readFile(log))
}

// TestTwoRelaysInARow: udhcpc → relay r1 → relay r2 → fieldcon's server.
// giaddr stays r1's, hops count two, and the option 82 r1 added arrives at
// the server (its view of the lease) and is stripped before the client.
func TestTwoRelaysInARow(t *testing.T) {
	labtest.RequireRoot(t)
	r := startSite(t, twoRelays, "srv", "r2", "r1")
	r.wait("relays and server listening", 10*time.Second, func() bool {
		n := 0
		for _, e := range r.bus.History() {
			if e.Kind == engine.KindRoleStarted && (e.Fields["role"] == "dhcp_relay" || e.Fields["role"] == "dhcp_server") {
				n++
			}
		}
		return n == 3
	})
	time.Sleep(500 * time.Millisecond)
	if os.Getenv("DHCPDEBUG") != "" {
		r.peer("srv", "tcpdump", "-l", "-n", "-i", "eth0", "udp")
		r.peer("ud", "tcpdump", "-l", "-n", "-i", "eth0")
		time.Sleep(time.Second)
	}
	log := udhcpc(t, r, "ud")
	r.wait("udhcpc bound through two relays", 20*time.Second, func() bool { return strings.Contains(readFile(log), "bound 192.0.2.") })
	r.wait("udhcpc renewed (busybox renews no earlier than 15s)", 25*time.Second, func() bool { return strings.Contains(readFile(log), "renew 192.0.2.") })
	t.Logf("udhcpc: %q", readFile(log))
	acks := r.events("srv", engine.KindDHCPBound)
	if len(acks) == 0 {
		t.Fatal("server emitted no bound event")
	}
	f := acks[0].Fields
	t.Logf("server's view: %v", f)
	if f["circuit_id"] != "eth1" || f["remote_id"] != "ESN-R1" {
		t.Errorf("server saw option 82 circuit-id %v remote-id %v; want eth1 and ESN-R1 (the first relay's)", f["circuit_id"], f["remote_id"])
	}
	if !strings.Contains(r.ip("ud", "-4", "addr", "show", "dev", "eth0"), "192.0.2.1") {
		t.Errorf("no address in the kernel:\n%s", r.ip("ud", "addr"))
	}
}
