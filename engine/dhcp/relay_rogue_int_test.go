package dhcp_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
)

// relayWithRogue: a relay with two client ports; a rogue server sits on
// eth2, a client on eth1, the real server upstream.
const relayWithRogue = `
[[node]]
name = "srv"
[node.static]
addresses = [{ iface = "eth0", address = "198.51.100.1/24" }]
routes = [{ dst = "192.0.2.0/24", via = "198.51.100.2" }]
[node.dhcp_server]
ifaces = ["eth0"]
lease_time = "2m"
[[node.dhcp_server.pools]]
subnet = "192.0.2.0/24"
start = "192.0.2.100"
end = "192.0.2.150"
routers = ["192.0.2.1"]

[[node]]
name = "relay"
[node.static]
forwarding = true
addresses = [
  { iface = "eth0", address = "198.51.100.2/24" },
  { iface = "eth1", address = "192.0.2.1/24" },
  { iface = "eth2", address = "203.0.113.1/24" },
]
[node.dhcp_relay]
downstream = ["eth1", "eth2"]
upstream = "eth0"
servers = ["198.51.100.1"]
remote_id = "ESN-RELAY"

[[node]]
name = "ud"

[[node]]
name = "rogue"
[node.static]
addresses = [{ iface = "eth0", address = "203.0.113.66/24" }]
routes = [{ dst = "0.0.0.0/0", via = "203.0.113.1" }]

[lab]
[[lab.link]]
a = "srv:eth0"
b = "relay:eth0"
[[lab.link]]
a = "relay:eth1"
b = "ud:eth0"
[[lab.link]]
a = "relay:eth2"
b = "rogue:eth0"
`

// rogueXID marks the rogue's replies in the capture.
var rogueXID = dhcpv4.TransactionID{0x0b, 0xad, 0xf0, 0x0d}

// rogueOffer is a BOOTREPLY crafted to pass as a relayed answer for the
// client port eth1: giaddr the relay's eth1 address and, when circuit is
// set, option 82 naming eth1.
func rogueOffer(t *testing.T, circuit bool) []byte {
	t.Helper()
	m, err := dhcpv4.New(dhcpv4.WithReply(&dhcpv4.DHCPv4{OpCode: dhcpv4.OpcodeBootRequest, HWType: 1,
		ClientHWAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}, TransactionID: rogueXID}),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
		dhcpv4.WithYourIP(net.ParseIP("192.0.2.66")),
		dhcpv4.WithGatewayIP(net.ParseIP("192.0.2.1")),
		dhcpv4.WithServerIP(net.ParseIP("203.0.113.66")),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("203.0.113.66"))),
		dhcpv4.WithOption(dhcpv4.OptRouter(net.ParseIP("203.0.113.66"))),
		dhcpv4.WithLeaseTime(3600))
	if err != nil {
		t.Fatal(err)
	}
	m.OpCode = dhcpv4.OpcodeBootReply
	m.Flags = 0x8000 // broadcast: the relay would broadcast it on the client's port
	if circuit {
		m.UpdateOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("eth1"))))
	}
	return m.ToBytes()
}

// TestRelayDropsRogueReplies: a rogue server on the relay's client port
// eth2 sends BOOTREPLYs made to look relayed for eth1 (to the relay's own
// address on eth2 and, routed, to its eth1 address). None may reach eth1
// (AF_PACKET capture on the client's side); the relay counts and reports
// them; the real server upstream still serves the client through the relay.
func TestRelayDropsRogueReplies(t *testing.T) {
	labtest.RequireRoot(t)
	r := startSite(t, relayWithRogue, "srv", "relay", "rogue")
	r.wait("relay and server listening", 10*time.Second, func() bool {
		n := 0
		for _, e := range r.bus.History() {
			if e.Kind == engine.KindRoleStarted && (e.Fields["role"] == "dhcp_relay" || e.Fields["role"] == "dhcp_server") {
				n++
			}
		}
		return n == 2 && strings.Contains(r.ip("rogue", "route"), "default via 203.0.113.1")
	})
	time.Sleep(500 * time.Millisecond)

	// Capture on the client's port: everything to UDP 68 that eth1 carries.
	ud := labtest.Host(t, r.lab, "ud")
	if err := ud.SetLinkUp("eth0", true); err != nil {
		t.Fatal(err)
	}
	pc, err := ud.OpenPacket("eth0", engine.PacketOptions{Protocol: engine.EthIPv4, Filter: dhcp.ClientFilter()})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var mu sync.Mutex
	var rogueSeen, realSeen int
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	captured := make(chan struct{})
	go func() {
		defer close(captured)
		buf := make([]byte, 65536)
		for ctx.Err() == nil {
			_ = pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, _, err := pc.ReadPacket(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			f, err := dhcp.ParseFrame(buf[:n])
			if err != nil {
				continue
			}
			m, err := dhcpv4.FromBytes(f.Payload)
			if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
				continue
			}
			mu.Lock()
			if m.TransactionID == rogueXID {
				rogueSeen++
				t.Logf("rogue reply on the client's port: %s -> %s yiaddr %s", f.Src, f.Dst, m.YourIPAddr)
			} else {
				realSeen++
			}
			mu.Unlock()
		}
	}()

	rogue := labtest.Host(t, r.lab, "rogue")
	c, err := rogue.ListenUDP(netip.MustParseAddrPort("203.0.113.66:67"), engine.UDPOptions{Device: "eth0", ReuseAddr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 5; i++ {
		for _, to := range []string{"203.0.113.1:67", "192.0.2.1:67"} {
			for _, circuit := range []bool{true, false} {
				if _, err := c.WriteToUDPAddrPort(rogueOffer(t, circuit), netip.MustParseAddrPort(to)); err != nil {
					t.Fatalf("rogue send to %s: %v", to, err)
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The real server still serves the client through the relay.
	log := udhcpc(t, r, "ud")
	r.wait("udhcpc bound through the relay", 20*time.Second, func() bool { return strings.Contains(readFile(log), "bound 192.0.2.1") })
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-captured
	mu.Lock()
	defer mu.Unlock()
	if rogueSeen != 0 {
		t.Errorf("%d rogue replies reached the client's port eth1, want 0", rogueSeen)
	}
	if realSeen == 0 {
		t.Error("the capture saw none of the real server's replies; it would not have seen the rogue's either")
	}
	drops := r.events("relay", engine.KindRelayReplyDropped)
	total := 0
	for _, e := range drops {
		if e.Fields["reason"] != dhcp.RelayDropDownstream || e.Fields["iface"] != "eth2" {
			t.Errorf("drop event %v, want reason %s on eth2", e.Fields, dhcp.RelayDropDownstream)
		}
		total++
		if n, ok := e.Fields["suppressed"].(int); ok {
			total += n
		}
	}
	if total != 20 {
		t.Errorf("relay reported %d dropped replies, want the rogue's 20", total)
	}
	st := r.role("relay", "dhcp_relay").(*dhcp.RelayRole).Stats()
	if st.Dropped[dhcp.RelayDropDownstream] != 20 || st.Replies == 0 {
		t.Errorf("relay stats %+v, want 20 dropped as %s and the real server's replies relayed", st, dhcp.RelayDropDownstream)
	}
}
