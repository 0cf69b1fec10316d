package dhcp_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
)

// twoPorts: one relay, two client ports. The victim (fieldcon's client,
// reserved by its client-id) is behind eth1, the attacker behind eth2.
const twoPorts = `
[[node]]
name = "srv"
[node.static]
addresses = [{ iface = "eth0", address = "198.51.100.1/24" }]
routes = [{ dst = "192.0.2.0/24", via = "198.51.100.2" }, { dst = "198.18.0.0/24", via = "198.51.100.2" }]
[node.dhcp_server]
ifaces = ["eth0"]
forcerenew = true
lease_time = "1h"
[[node.dhcp_server.pools]]
subnet = "192.0.2.0/24"
start = "192.0.2.100"
end = "192.0.2.150"
routers = ["192.0.2.1"]
[[node.dhcp_server.pools]]
subnet = "198.18.0.0/24"
start = "198.18.0.100"
end = "198.18.0.150"
routers = ["198.18.0.1"]
[[node.dhcp_server.reservations]]
client_id = "ESN-V1"
address = "192.0.2.20"

[[node]]
name = "relay"
[node.static]
forwarding = true
addresses = [{ iface = "eth0", address = "198.51.100.2/24" }, { iface = "eth1", address = "192.0.2.1/24" }, { iface = "eth2", address = "198.18.0.1/24" }]
[node.dhcp_relay]
downstream = ["eth1", "eth2"]
upstream = "eth0"
servers = ["198.51.100.1"]
remote_id = "ESN-RELAY"

[[node]]
name = "victim"
[node.dhcp_client]
iface = "eth0"
client_id = "ESN-V1"

[[node]]
name = "attacker"

[lab]
[[lab.link]]
a = "srv:eth0"
b = "relay:eth0"
[[lab.link]]
a = "relay:eth1"
b = "victim:eth0"
[[lab.link]]
a = "relay:eth2"
b = "attacker:eth0"
`

// TestAnotherPortCannotTakeALease: from the other relay port, with the
// victim's client-id and even its MAC, an attacker gets neither the
// victim's address nor its RFC 6704 nonce, and its RELEASE and DECLINE are
// not applied; the victim's lease stays as it was and the server's
// FORCERENEW still reaches it.
func TestAnotherPortCannotTakeALease(t *testing.T) {
	labtest.RequireRoot(t)
	r := startSite(t, twoPorts)
	b := r.waitEvent("victim", engine.KindDHCPBound, 1, 20*time.Second)
	if b[0].Fields["address"] != "192.0.2.20/24" {
		t.Fatalf("victim bound %v", b[0].Fields)
	}
	srv := r.role("srv", "dhcp_server").(*dhcp.ServerRole)
	victimMAC := mustMAC(t, r.ip("victim", "-br", "link", "show", "eth0"))
	key := dhcp.ClientKey(dhcp.EncodeClientID("ESN-V1"), victimMAC)
	before, ok := srv.Lease(key)
	if !ok || before.CircuitID != "eth1" || len(before.Nonce) != 16 {
		t.Fatalf("server's lease of the victim: %+v", before)
	}

	// The attacker clones the victim's MAC: only the port tells them apart.
	r.ip("attacker", "link", "set", "eth0", "address", victimMAC.String())
	h := labtest.Host(t, r.lab, "attacker")
	env := &engine.Env{Node: "attacker", Host: engine.NewTracked(h, r.bus.NodeEmitter("attacker")), Emit: r.bus.NodeEmitter("attacker"),
		Progress: engine.NewProgress("acquire"), Log: slog.New(slog.DiscardHandler)}
	steal := dhcp.AcquireConfig{Iface: "eth0", ClientID: dhcp.EncodeClientID("ESN-V1"), NonceCapable: true,
		Timeout: 6 * time.Second, Backoff: dhcp.Backoff{Initial: 500 * time.Millisecond}}
	if l, err := dhcp.Acquire(context.Background(), env, steal); err == nil {
		t.Errorf("attacker port got %s with nonce %x (the victim's is %x)", l.Address, l.Nonce, before.Nonce)
	}
	// An address of its own, to send from.
	own, err := dhcp.Acquire(context.Background(), env, dhcp.AcquireConfig{Iface: "eth0", ClientID: dhcp.EncodeClientID("ESN-A1"),
		Timeout: 10 * time.Second, Backoff: dhcp.Backoff{Initial: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if err := dhcp.ApplyLease(env, own, true); err != nil {
		t.Fatal(err)
	}
	conn, err := h.ListenUDP(netip.AddrPortFrom(own.Address.Addr(), 68), engine.UDPOptions{Broadcast: true, ReuseAddr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	forged := func(typ dhcpv4.MessageType) *dhcpv4.DHCPv4 {
		m, _ := dhcpv4.New(dhcpv4.WithHwAddr(victimMAC), dhcpv4.WithMessageType(typ),
			dhcpv4.WithOption(dhcpv4.OptClientIdentifier(dhcp.EncodeClientID("ESN-V1"))),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP{198, 51, 100, 1})))
		if typ == dhcpv4.MessageTypeRelease {
			m.ClientIPAddr = net.IP{192, 0, 2, 20}
		} else {
			m.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IP{192, 0, 2, 20}))
		}
		return m
	}
	statsBefore := srv.Stats()
	for _, typ := range []dhcpv4.MessageType{dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline} {
		// Broadcast, so the relay relays it from eth2; and unicast
		// straight to the server from the attacker's own address.
		for _, to := range []string{"255.255.255.255:67", "198.51.100.1:67"} {
			if _, err := conn.WriteToUDPAddrPort(forged(typ).ToBytes(), netip.MustParseAddrPort(to)); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.wait("the server to read the four forgeries", 5*time.Second, func() bool {
		s := srv.Stats()
		return s.Received-statsBefore.Received >= 4
	})
	t.Logf("server's silent reasons: %v", srv.Stats().SilentWhy)

	after, ok := srv.Lease(key)
	if !ok || after.State != dhcp.LeaseBound || after.MAC != before.MAC || after.CircuitID != "eth1" ||
		after.GIAddr != before.GIAddr || after.Address != before.Address || !bytes.Equal(after.Nonce, before.Nonce) {
		t.Fatalf("victim's lease changed by the attacker port:\n before %+v\n after  %+v", before, after)
	}
	// The nonce is still the victim's: the server's FORCERENEW makes it
	// renew.
	if err := srv.ForceRenew(key); err != nil {
		t.Fatal(err)
	}
	r.waitEvent("victim", engine.KindForceRenewReceived, 1, 5*time.Second)
	r.waitEvent("victim", engine.KindDHCPRenewed, 1, 5*time.Second)
	if n := len(r.events("victim", engine.KindForceRenewRejected)); n != 0 {
		t.Errorf("victim rejected %d FORCERENEWs", n)
	}
}
