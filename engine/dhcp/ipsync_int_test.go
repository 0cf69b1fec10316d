package dhcp_test

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/profiles"
)

const ipSync = `
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
client_id = "ESN-F1"
address = "192.0.2.20"

[[node]]
name = "cli"
[node.dhcp_client]
iface = "eth0"
client_id = "ESN-F1"
pin_server = true
arp_probe = true

[lab]
[[lab.link]]
a = "srv:eth0"
b = "cli:eth0"
`

// TestForceRenewAndPinning: the server's FORCERENEW makes the client renew
// within a second and pick up a changed cloud server and a moved address;
// unauthenticated and wrongly keyed FORCERENEWs are rejected; the pinned
// server neighbour entry survives a forged gratuitous ARP.
func TestForceRenewAndPinning(t *testing.T) {
	labtest.RequireRoot(t)
	r := startSite(t, ipSync, "srv", "cli")
	bound := r.waitEvent("cli", engine.KindDHCPBound, 1, 10*time.Second)
	if bound[0].Fields["address"] != "192.0.2.20/24" || bound[0].Fields["cloud_server"] != "203.0.113.10" {
		t.Fatalf("bound %v", bound[0].Fields)
	}
	pinned := r.waitEvent("cli", engine.KindNeighborPinned, 1, 5*time.Second)
	srvMAC := pinned[0].Fields["mac"].(string)
	neigh := r.ip("cli", "neigh", "show", "192.0.2.1", "dev", "eth0")
	if !strings.Contains(neigh, "PERMANENT") || !strings.Contains(neigh, srvMAC) {
		t.Fatalf("neighbour not pinned: %q", neigh)
	}

	// Forged FORCERENEWs from the server's namespace, port 67.
	h := labtest.Host(t, r.lab, "srv")
	conn, err := h.ListenUDP(netip.MustParseAddrPort("0.0.0.0:67"), engine.UDPOptions{Device: "eth0", ReuseAddr: true})
	if err != nil {
		t.Fatal(err)
	}
	cliMAC := mustMAC(t, r.ip("cli", "-br", "link", "show", "eth0"))
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(cliMAC), dhcpv4.WithMessageType(dhcp.MessageTypeForceRenew))
	m.OpCode = dhcpv4.OpcodeBootReply
	unsigned := m.ToBytes()
	wrongKey, _ := dhcp.SignForceRenew(m, 1000, []byte("not-the-nonce-16"))
	to := netip.MustParseAddrPort("192.0.2.20:68")
	for _, b := range [][]byte{unsigned, wrongKey} {
		if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
			t.Fatal(err)
		}
	}
	// Close it now: sharing port 67 by SO_REUSEPORT, it would take half
	// of the client's renewals away from the server.
	conn.Close()
	rej := r.waitEvent("cli", engine.KindForceRenewRejected, 2, 5*time.Second)
	t.Logf("rejected: %v / %v", rej[0].Fields["reason"], rej[1].Fields["reason"])
	if n := len(r.events("cli", engine.KindDHCPRenewed)); n != 0 {
		t.Fatalf("a forged FORCERENEW made the client renew")
	}

	// Profile reload: the cloud server changes → FORCERENEW → renewal.
	srvRole := r.role("srv", "dhcp_server").(*dhcp.ServerRole)
	cfg := *r.profile.Node("srv").DHCPServer
	cfg.Pools = append([]profiles.DHCPPool(nil), cfg.Pools...)
	cfg.Pools[0].CloudServer = &profiles.Addr{Addr: netip.MustParseAddr("203.0.113.20")}
	start := time.Now()
	pushed, err := srvRole.Reload(cfg)
	if err != nil || len(pushed) != 1 {
		t.Fatalf("reload pushed %v: %v", pushed, err)
	}
	renewed := r.waitEvent("cli", engine.KindDHCPRenewed, 1, 2*time.Second)
	took := time.Since(start)
	t.Logf("forcerenew → renewed in %s: %v", took, renewed[0].Fields["changed"])
	if took > time.Second {
		t.Errorf("renewal took %s; want within 1s", took)
	}
	changed, _ := renewed[0].Fields["changed"].(map[string]any)
	if changed["cloud_server"] == nil || changed["address"] != nil {
		t.Errorf("changed %v; want only cloud_server", changed)
	}
	if renewed[0].Fields["cloud_server"] != "203.0.113.20" {
		t.Errorf("cloud server %v", renewed[0].Fields["cloud_server"])
	}

	// The reservation moves → the server NAKs the renewal of the old
	// address (RFC 2131 §4.3.2, issue #13 item 2); the client removes it,
	// rediscovers, probes the new one and reports the move.
	cfg.Reservations = []profiles.DHCPReservation{{ClientID: "ESN-F1", Address: profiles.Addr{Addr: netip.MustParseAddr("192.0.2.21")}}}
	if _, err := srvRole.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	renewed = r.waitEvent("cli", engine.KindDHCPRenewed, 2, 3*time.Second)
	changed, _ = renewed[1].Fields["changed"].(map[string]any)
	if renewed[1].Fields["address"] != "192.0.2.21/24" || changed["address"] == nil {
		t.Fatalf("second renewal %v", renewed[1].Fields)
	}
	var removed bool
	for _, e := range r.events("cli", engine.KindAddressRemoved) {
		removed = removed || e.Fields["address"] == "192.0.2.20/24"
	}
	if !removed {
		t.Errorf("the old address was not removed on the NAK")
	}
	if got := labtest.Addresses(t, r.netns("cli"), "eth0"); len(got) != 1 || got[0] != netip.MustParsePrefix("192.0.2.21/24") {
		t.Errorf("kernel addresses after the move: %v; want exactly 192.0.2.21/24", got)
	}

	// Forged gratuitous ARP (reply and request form) for the server's
	// address from another MAC, sent through a raw socket.
	pc, err := h.OpenPacket("eth0", engine.PacketOptions{Protocol: engine.EthARP})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	forged := net.HardwareAddr{0x02, 0x66, 0x66, 0x66, 0x66, 0x66}
	for i := 0; i < 3; i++ {
		for _, op := range []uint16{1, 2} {
			f := dhcp.BuildARP(dhcp.ARP{Op: op, EthSrc: forged, SenderMAC: forged, SenderIP: netip.MustParseAddr("192.0.2.1"),
				TargetMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, TargetIP: netip.MustParseAddr("192.0.2.1")})
			if err := pc.WritePacket(f, engine.EthARP, nil); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	neigh = r.ip("cli", "neigh", "show", "192.0.2.1", "dev", "eth0")
	if !strings.Contains(neigh, "PERMANENT") || !strings.Contains(neigh, srvMAC) || strings.Contains(neigh, forged.String()) {
		t.Errorf("pinned entry changed by forged ARP: %q", neigh)
	}
	t.Logf("after forged ARP: %s", strings.TrimSpace(neigh))
}

func mustMAC(t *testing.T, brief string) net.HardwareAddr {
	t.Helper()
	for _, f := range strings.Fields(brief) {
		if m, err := net.ParseMAC(f); err == nil && len(m) == 6 {
			return m
		}
	}
	t.Fatalf("no MAC in %q", brief)
	return nil
}

// TestProfileReloadPushesForceRenew: editing the profile file of a running
// site makes the server FORCERENEW the clients the change concerns; a
// profile that does not validate changes nothing.
func TestProfileReloadPushesForceRenew(t *testing.T) {
	labtest.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "site.toml")
	if err := os.WriteFile(path, []byte(ipSync), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := profiles.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r := startSiteProfile(t, p, "srv", "cli")
	r.waitEvent("cli", engine.KindDHCPBound, 1, 10*time.Second)

	os.WriteFile(path, []byte(strings.Replace(ipSync, `start = "192.0.2.100"`, `start = "192.0.2.100"
bogus_key = true`, 1)), 0o644)
	r.waitEvent("srv", engine.KindError, 1, 3*time.Second)
	if n := len(r.events("srv", engine.KindForceRenewSent)); n != 0 {
		t.Fatalf("an invalid profile pushed %d FORCERENEWs", n)
	}

	os.WriteFile(path, []byte(strings.Replace(ipSync, `cloud_server = "203.0.113.10"`, `cloud_server = "203.0.113.30"`, 1)), 0o644)
	r.waitEvent("srv", engine.KindForceRenewSent, 1, 3*time.Second)
	renewed := r.waitEvent("cli", engine.KindDHCPRenewed, 1, 2*time.Second)
	if renewed[0].Fields["cloud_server"] != "203.0.113.30" {
		t.Errorf("renewed %v; want cloud server 203.0.113.30", renewed[0].Fields)
	}
}
