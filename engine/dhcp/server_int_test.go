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

const serverForPeers = `
[[node]]
name = "srv"
[node.static]
addresses = [{ iface = "eth0", address = "192.0.2.1/25" }, { iface = "eth1", address = "192.0.2.129/25" }]
[node.dhcp_server]
ifaces = ["eth0", "eth1"]
lease_time = "6s"
sweep_interval = "1s"
[[node.dhcp_server.pools]]
subnet = "192.0.2.0/25"
start = "192.0.2.10"
end = "192.0.2.50"
routers = ["192.0.2.1"]
[[node.dhcp_server.pools]]
subnet = "192.0.2.128/25"
start = "192.0.2.140"
end = "192.0.2.160"
[[node.dhcp_server.reservations]]
client_id = "ESN-DH"
address = "192.0.2.42"
[[node.dhcp_server.reservations]]
client_id = "ESN-UD"
address = "192.0.2.150"

[[node]]
name = "dh"
[[node]]
name = "ud"

[lab]
[[lab.link]]
a = "srv:eth0"
b = "dh:eth0"
[[lab.link]]
a = "srv:eth1"
b = "ud:eth0"
`

// writeScript writes an executable hook script for a DHCP client peer that
// configures the address in its namespace and logs each event to log.
func writeScript(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// TestServerRoleWithDhclientAndUdhcpc: fieldcon's server hands addresses to
// ISC dhclient and busybox udhcpc, both renew, and reservations by
// client-id hold.
func TestServerRoleWithDhclientAndUdhcpc(t *testing.T) {
	labtest.RequireRoot(t)
	dhclient := labtest.RequireBinary(t, "dhclient")
	busybox := labtest.RequireBinary(t, "udhcpc")
	r := startSite(t, serverForPeers, "srv")
	r.waitEvent("srv", engine.KindRoleStarted, 2, 5*time.Second)
	time.Sleep(500 * time.Millisecond)

	dir := t.TempDir()
	dhLog, udLog := filepath.Join(dir, "dh.log"), filepath.Join(dir, "ud.log")
	dhScript := writeScript(t, "dhclient-script", fmt.Sprintf(`echo "$reason $new_ip_address" >> %s
case "$reason" in
BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
EXPIRE|RELEASE|STOP) ip addr flush dev "$interface" ;;
esac
`, dhLog))
	conf := filepath.Join(dir, "dhclient.conf")
	// Option 61 = type 0 + "ESN-DH", the encoding fieldcon's profiles use.
	os.WriteFile(conf, []byte("send dhcp-client-identifier 0:45:53:4e:2d:44:48;\n"), 0o644)
	r.peer("dh", dhclient, "-d", "-v", "-cf", conf, "-lf", filepath.Join(dir, "dh.leases"),
		"-pf", filepath.Join(dir, "dh.pid"), "-sf", dhScript, "eth0")

	udScript := writeScript(t, "udhcpc-script", fmt.Sprintf(`echo "$1 $ip" >> %s
case "$1" in
bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
deconfig) ip addr flush dev "$interface" ;;
esac
`, udLog))
	args := []string{"-f", "-i", "eth0", "-s", udScript, "-t", "5", "-T", "1", "-x", "0x3d:0045534e2d5544"}
	if strings.HasSuffix(busybox, "busybox") {
		args = append([]string{busybox, "udhcpc"}, args...)
	} else {
		args = append([]string{busybox}, args...)
	}
	r.peer("ud", args...)

	for _, c := range []struct{ node, log, bound, renew, addr string }{
		{"dh", dhLog, "BOUND 192.0.2.42", "RENEW 192.0.2.42", "192.0.2.42/25"},
		{"ud", udLog, "bound 192.0.2.150", "renew 192.0.2.150", "192.0.2.150/25"},
	} {
		r.wait(c.node+" bound with its reservation", 15*time.Second, func() bool { return strings.Contains(readFile(c.log), c.bound) })
		r.wait(c.node+" renewed (busybox renews no earlier than 15s)", 25*time.Second, func() bool { return strings.Contains(readFile(c.log), c.renew) })
		if !strings.Contains(r.ip(c.node, "-4", "addr", "show", "dev", "eth0"), c.addr) {
			t.Errorf("%s: kernel lacks %s:\n%s", c.node, c.addr, r.ip(c.node, "addr"))
		}
		t.Logf("%s events: %q", c.node, strings.ReplaceAll(readFile(c.log), "\n", "; "))
	}
	// The server's view: at least an ACK and a renewal ACK per client.
	acks := map[string]int{}
	for _, e := range r.events("srv", engine.KindDHCPBound) {
		acks[e.Fields["address"].(string)]++
	}
	if acks["192.0.2.42"] < 2 || acks["192.0.2.150"] < 2 {
		t.Errorf("server ACKs per address %v; want ≥2 (bind and renew) for each reservation", acks)
	}
}
