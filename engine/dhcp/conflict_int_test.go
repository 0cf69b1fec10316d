package dhcp_test

import (
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
)

const conflictLab = `
[[node]]
name = "srv"
[node.static]
# 192.0.2.100 is already in use on the link (here by the server itself),
# but it is the first address of the pool.
addresses = [{ iface = "eth0", address = "192.0.2.1/24" }, { iface = "eth0", address = "192.0.2.100/24" }]
[node.dhcp_server]
ifaces = ["eth0"]
server_id = "192.0.2.1"
lease_time = "1h"
[[node.dhcp_server.pools]]
subnet = "192.0.2.0/24"
start = "192.0.2.100"
end = "192.0.2.101"

[[node]]
name = "cli"
[node.dhcp_client]
iface = "eth0"
client_id = "ESN-X1"
arp_probe = true
decline_wait = "200ms"

[lab]
[[lab.link]]
a = "srv:eth0"
b = "cli:eth0"
`

// TestArpProbeDeclinesAndInitReboot: the client's RFC 5227 probe finds the
// offered address answered for by another host, raises conflict.detected,
// DECLINEs it and binds the next one; restarted with its store, it asks
// for that address again (INIT-REBOOT) and keeps it.
func TestArpProbeDeclinesAndInitReboot(t *testing.T) {
	labtest.RequireRoot(t)
	r := startSite(t, conflictLab, "srv")
	r.waitEvent("srv", engine.KindRoleStarted, 2, 5*time.Second)
	state := t.TempDir()
	stop := r.run(state, "cli")
	c := r.waitEvent("cli", engine.KindConflictDetected, 1, 10*time.Second)[0].Fields
	if c["address"] != "192.0.2.100" || c["in_use_by"] == nil {
		t.Errorf("conflict %v; want 192.0.2.100 with the MAC that answered", c)
	}
	r.waitEvent("cli", engine.KindDHCPDeclined, 1, time.Second)
	b := r.waitEvent("cli", engine.KindDHCPBound, 1, 10*time.Second)[0].Fields
	if b["address"] != "192.0.2.101/24" {
		t.Fatalf("bound %v after the decline; want 192.0.2.101/24", b["address"])
	}
	stop()
	r.run(state, "cli")
	bs := r.waitEvent("cli", engine.KindDHCPBound, 2, 10*time.Second)
	if bs[1].Fields["address"] != "192.0.2.101/24" {
		t.Errorf("after restart bound %v; want the stored 192.0.2.101/24", bs[1].Fields["address"])
	}
	if n := len(r.events("cli", engine.KindConflictDetected)); n != 1 {
		t.Errorf("%d conflicts; the restart must not probe into the declined address again", n)
	}
}
