package dhcp_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/profiles"
)

// TestEmbeddedDHCPProfile runs the embedded `dhcp` profile: both devices get
// their addresses through the relay (device-a its reservation, device-b by
// rapid commit), the server sees option 82, the devices pin their next hop,
// and a FORCERENEW reaches device-a through the relay.
func TestEmbeddedDHCPProfile(t *testing.T) {
	labtest.RequireRoot(t)
	src, err := profiles.EmbeddedSource("dhcp")
	if err != nil {
		t.Fatal(err)
	}
	r := startSite(t, string(src))
	a := r.waitEvent("device-a", engine.KindDHCPBound, 1, 15*time.Second)[0].Fields
	b := r.waitEvent("device-b", engine.KindDHCPBound, 1, 15*time.Second)[0].Fields
	if a["address"] != "192.0.2.21/25" || a["cloud_server"] != "203.0.113.10" {
		t.Errorf("device-a %v; want its reservation 192.0.2.21/25 and the cloud server", a)
	}
	if !strings.HasPrefix(b["address"].(string), "192.0.2.14") || b["rapid_commit"] != true {
		t.Errorf("device-b %v; want a pool address by rapid commit", b)
	}
	for _, e := range r.events("server", engine.KindDHCPBound) {
		if e.Fields["remote_id"] != "ESN-RELAY-01" || (e.Fields["circuit_id"] != "eth1" && e.Fields["circuit_id"] != "eth2") {
			t.Errorf("server's view without option 82: %v", e.Fields)
		}
	}
	for _, n := range []string{"device-a", "device-b"} {
		r.waitEvent(n, engine.KindNeighborPinned, 1, 5*time.Second)
		if !strings.Contains(r.ip(n, "neigh"), "PERMANENT") {
			t.Errorf("%s: no permanent neighbour:\n%s", n, r.ip(n, "neigh"))
		}
	}
	srv := r.role("server", "dhcp_server").(*dhcp.ServerRole)
	if err := srv.ForceRenew(dhcp.ClientKey(dhcp.EncodeClientID("ESN-0001"), nil)); err != nil {
		t.Fatal(err)
	}
	r.waitEvent("device-a", engine.KindForceRenewReceived, 1, 2*time.Second)
	r.waitEvent("device-a", engine.KindDHCPRenewed, 1, 2*time.Second)
}
