package main

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
)

// dhcpcdSite is a dhcp_server with RFC 6704 nonces serving a dhcpcd on its
// link: dhcpcd's defaults (it offers option 145 and requires FORCERENEW to
// be authenticated with the reconfigure key it was given).
const dhcpcdSite = `
[[node]]
name = "srv"
[node.static]
addresses = [{ iface = "eth0", address = "192.0.2.1/24" }]
[node.dhcp_server]
ifaces = ["eth0"]
forcerenew = true
lease_time = "1h"
[[node.dhcp_server.pools]]
subnet = "192.0.2.0/24"
start = "192.0.2.100"
end = "192.0.2.150"
cloud_server = "203.0.113.10"
[[node.dhcp_server.reservations]]
client_id = "ESN-DC"
address = "192.0.2.20"

[[node]]
name = "dc"

[lab]
[[lab.link]]
a = "srv:eth0"
b = "dc:eth0"
`

// dhcpcdRun is `fieldcon run` of dhcpcdSite (from a file the test can edit)
// with a dhcpcd bound to its reservation.
type dhcpcdRun struct {
	bin, profile, name, state string
	events                    <-chan engine.Event
	dhcpcd                    *labtest.Dhcpcd
}

func startDhcpcdRun(t *testing.T) *dhcpcdRun {
	t.Helper()
	labtest.RequireRoot(t)
	labtest.RequireBinary(t, "dhcpcd")
	r := &dhcpcdRun{bin: buildBinary(t), profile: filepath.Join(t.TempDir(), "site.toml"),
		name: labtest.UniqueName("frdc"), state: t.TempDir()}
	if err := os.WriteFile(r.profile, []byte(dhcpcdSite), 0o644); err != nil {
		t.Fatal(err)
	}
	_, r.events = startRun(t, r.bin, "-p", r.profile, "--lab", "--lab-name", r.name, "--state", r.state)
	waitKind(t, r.events, "srv", engine.KindRoleStarted, 60*time.Second)
	// Option 61 = type 0 + "ESN-DC", the encoding of the profile's client_id.
	r.dhcpcd = labtest.StartDhcpcd(t, lab.NetnsName(r.name, "dc"), "eth0", "clientid 00:45:53:4e:2d:44:43", "noarp")
	waitBound(t, r.events, "192.0.2.20", 20*time.Second)
	r.dhcpcd.WaitLog("leased 192.0.2.20", 1, 5*time.Second)
	return r
}

// waitBound waits for the server's ACK of address (its dhcp.lease.bound).
func waitBound(t *testing.T, events <-chan engine.Event, address string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("run ended before the server ACKed %s", address)
			}
			if e.Node == "srv" && e.Kind == engine.KindDHCPBound && e.Fields["address"] == address {
				return
			}
		case <-deadline:
			t.Fatalf("the server ACKed no request for %s within %s", address, within)
		}
	}
}

// editProfile rewrites the running profile with old replaced by new; the
// server reloads it within a second or two.
func (r *dhcpcdRun) editProfile(t *testing.T, old, new string) {
	t.Helper()
	b, err := os.ReadFile(r.profile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("profile lacks %q", old)
	}
	if err := os.WriteFile(r.profile, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDhcpcdAcceptsForceRenew (issue #13 item 1): dhcpcd 9 drops a
// FORCERENEW whose xid is not the one of its last exchange. Both
// `fieldcon forcerenew` and the running server's push on a profile edit
// must make dhcpcd log the FORCERENEW and renew, the server ACKing the
// renewal.
func TestDhcpcdAcceptsForceRenew(t *testing.T) {
	r := startDhcpcdRun(t)

	out, err := exec.Command(r.bin, "forcerenew", "-p", r.profile, "--lab", "--lab-name", r.name, "--state", r.state,
		"--node", "srv", "ESN-DC").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "FORCERENEW sent to 192.0.2.20:68") {
		t.Fatalf("fieldcon forcerenew: %v\n%s", err, out)
	}
	r.dhcpcd.WaitLog("Force Renew from", 1, 3*time.Second)
	waitBound(t, r.events, "192.0.2.20", 3*time.Second)
	r.dhcpcd.WaitLog("renewing lease of 192.0.2.20", 1, time.Second)

	// The profile edit: the cloud server changes, the server pushes.
	r.editProfile(t, `cloud_server = "203.0.113.10"`, `cloud_server = "203.0.113.30"`)
	waitKind(t, r.events, "srv", engine.KindForceRenewSent, 5*time.Second)
	r.dhcpcd.WaitLog("Force Renew from", 2, 3*time.Second)
	waitBound(t, r.events, "192.0.2.20", 3*time.Second)
	r.dhcpcd.WaitLog("renewing lease of 192.0.2.20", 2, time.Second)
	if n := strings.Count(r.dhcpcd.Log(), "authentication failed"); n != 0 {
		t.Errorf("dhcpcd logged %d authentication failures", n)
	}
	logDhcpcd(t, r.dhcpcd, "Force Renew", "renewing", "acknowledged", "NAK", "leased", "deleting IP")
}

// logDhcpcd logs dhcpcd's lines that hold one of words.
func logDhcpcd(t *testing.T, d *labtest.Dhcpcd, words ...string) {
	for _, line := range strings.Split(d.Log(), "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				t.Logf("dhcpcd: %s", line)
				break
			}
		}
	}
}

// TestDhcpcdFollowsReservationMove (issue #13 item 2): when a bound
// client's reservation moves, the server NAKs its renewal (RFC 2131
// §4.3.2) and dhcpcd rediscovers: it ends with exactly the new address.
func TestDhcpcdFollowsReservationMove(t *testing.T) {
	r := startDhcpcdRun(t)
	r.editProfile(t, `address = "192.0.2.20"`, `address = "192.0.2.21"`)
	waitKind(t, r.events, "srv", engine.KindForceRenewSent, 5*time.Second)
	waitBound(t, r.events, "192.0.2.21", 10*time.Second)
	r.dhcpcd.WaitLog("leased 192.0.2.21", 1, 5*time.Second)
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.21/24")}
	var got []netip.Prefix
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if got = r.dhcpcd.Addresses(); slices.Equal(got, want) {
			logDhcpcd(t, r.dhcpcd, "Force Renew", "NAK", "leased", "IP address")
			return
		}
	}
	t.Fatalf("dhcpcd's interface has %v; want exactly %v", got, want)
}
