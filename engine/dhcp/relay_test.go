package dhcp

import (
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestRelayReplyAcceptance: a BOOTREPLY is relayed only when it arrives on
// the upstream interface from a configured server (or reply_from); each
// other case is dropped with its reason.
func TestRelayReplyAcceptance(t *testing.T) {
	relay := NewRelay(RelayConfig{
		Downstream: map[string]netip.Addr{"eth1": netip.MustParseAddr("192.0.2.1"), "eth2": netip.MustParseAddr("203.0.113.1")},
		Upstream:   "eth0",
		Servers:    []netip.Addr{netip.MustParseAddr("198.51.100.1")},
		ReplyFrom:  []netip.Addr{netip.MustParseAddr("198.51.100.7")},
	})
	reply := func(giaddr, circuit string) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithGatewayIP(net.ParseIP(giaddr)))
		if err != nil {
			t.Fatal(err)
		}
		m.OpCode = dhcpv4.OpcodeBootReply
		if circuit != "" {
			m.UpdateOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte(circuit))))
		}
		return m
	}
	for _, tc := range []struct {
		name, from, in, giaddr, circuit string
		drop, out                       string
	}{
		{"from the server upstream", "198.51.100.1", "eth0", "192.0.2.1", "eth1", "", "eth1"},
		{"from a server behind a relay chain", "198.51.100.7", "eth0", "192.0.2.1", "", "", "eth1"},
		{"circuit-id picks the port", "198.51.100.1", "eth0", "192.0.2.1", "eth2", "", "eth2"},
		{"rogue on a client port", "203.0.113.66", "eth2", "192.0.2.1", "eth1", RelayDropDownstream, ""},
		{"rogue spoofing the server on a client port", "198.51.100.1", "eth2", "192.0.2.1", "eth1", RelayDropDownstream, ""},
		{"rogue on the client's own port", "192.0.2.66", "eth1", "192.0.2.1", "", RelayDropDownstream, ""},
		{"upstream but not a server", "198.51.100.66", "eth0", "192.0.2.1", "eth1", RelayDropNotServer, ""},
		{"giaddr not ours", "198.51.100.1", "eth0", "198.18.0.1", "", RelayDropNotOurs, ""},
		{"circuit we do not have", "198.51.100.1", "eth0", "192.0.2.1", "eth9", RelayDropCircuit, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fwd, drop := relay.Reply(reply(tc.giaddr, tc.circuit), netip.MustParseAddr(tc.from), tc.in)
			if drop != tc.drop {
				t.Fatalf("drop reason %q, want %q", drop, tc.drop)
			}
			switch {
			case tc.out == "" && fwd != nil:
				t.Errorf("relayed to %+v, want dropped", fwd)
			case tc.out != "" && (len(fwd) != 1 || fwd[0].Iface != tc.out):
				t.Errorf("relayed %+v, want one reply out of %s", fwd, tc.out)
			}
		})
	}
}
