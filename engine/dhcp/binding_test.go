package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/engine"
)

// A relay with two ports: the victim sits behind eth1, the attacker behind
// eth2 (RFC 3046: each port is a circuit-id and, here, its own giaddr).
var (
	port1   = netip.MustParseAddr("192.0.2.1")
	port2   = netip.MustParseAddr("198.18.0.1")
	twoPort = NewRelay(RelayConfig{Upstream: "eth0", Downstream: map[string]netip.Addr{"eth1": port1, "eth2": port2},
		Servers: []netip.Addr{srvAddr}, RemoteID: "ESN-RELAY"})
	victimID  = []byte("\x00ESN-VICTIM")
	victimRes = netip.MustParseAddr("192.0.2.50")
	otherMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x66}
	// upstream is the server's own link toward the relay.
	upstream = []netip.Prefix{netip.MustParsePrefix("198.51.100.1/24")}
)

func bindingServer() *Server {
	return testServer(func(c *ServerConfig) {
		c.Pools = append(c.Pools, Pool{Subnet: netip.MustParsePrefix("198.18.0.0/24"),
			Start: netip.MustParseAddr("198.18.0.100"), End: netip.MustParseAddr("198.18.0.110"), LeaseTime: 100 * time.Second})
		c.Reservations = []Reservation{{ClientID: victimID, Address: victimRes}}
	})
}

// viaPort passes a client's message through the relay's port (giaddr and
// option 82 added) to the server, and the reply back; a message a client
// unicasts to the server (ciaddr set, RENEWING, RELEASE) reaches it
// directly, as a router forwards it, from src.
func viaPort(t *testing.T, s *Server, iface string, m *dhcpv4.DHCPv4, now time.Time) Reply {
	t.Helper()
	req, err := dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	if iface == "" {
		return s.HandleFrom(req, upstream, ipFrom(req.ClientIPAddr), now)
	}
	fwd := twoPort.Request(req, iface)
	if len(fwd) != 1 {
		t.Fatalf("relay did not forward from %s", iface)
	}
	return s.HandleFrom(fwd[0].Msg, upstream, netip.MustParseAddr("198.51.100.2"), now)
}

// exchangeVia is exchange through a relay port: requests the client
// broadcasts go through the port, unicast ones straight to the server.
func exchangeVia(t *testing.T, s *Server, c *Client, iface string, now time.Time, acts []Action) []Action {
	t.Helper()
	var out []Action
	for i := 0; len(acts) > 0 && i < 50; i++ {
		a := acts[0]
		acts = acts[1:]
		if a.Kind != ActSend {
			out = append(out, a)
			if a.Kind == ActProbe {
				acts = append(acts, c.ProbeDone(now, false, nil)...)
			}
			continue
		}
		path := iface
		if a.To != bcast4 {
			path = ""
		}
		rep := viaPort(t, s, path, a.Msg, now)
		out = append(out, Action{Kind: ActEmit, Event: "reply", Msg: rep.Msg})
		if rep.Msg == nil {
			continue
		}
		back := rep.Msg
		if path != "" {
			fwd, drop := twoPort.Reply(back, srvAddr, "eth0")
			if len(fwd) != 1 || fwd[0].Iface != iface {
				t.Fatalf("reply to a request from %s went to %+v (dropped: %q)", iface, fwd, drop)
			}
			back = fwd[0].Msg
		}
		acts = append(acts, c.Receive(now, back.ToBytes(), Source{MAC: srvMAC, IP: srvAddr})...)
	}
	return out
}

func replies(acts []Action) []*dhcpv4.DHCPv4 {
	var out []*dhcpv4.DHCPv4
	for _, a := range acts {
		if a.Event == "reply" && a.Msg != nil {
			out = append(out, a.Msg)
		}
	}
	return out
}

func sameLease(t *testing.T, what string, got, want ServerLease) {
	t.Helper()
	if got.MAC != want.MAC || got.CircuitID != want.CircuitID || got.RemoteID != want.RemoteID || got.GIAddr != want.GIAddr ||
		got.Address != want.Address || got.State != want.State || !got.Expiry.Equal(want.Expiry) || !bytes.Equal(got.Nonce, want.Nonce) {
		t.Errorf("%s changed the victim's lease:\n got  %+v\n want %+v", what, got, want)
	}
}

// bindVictim binds the reserved client behind port eth1.
func bindVictim(t *testing.T, s *Server, now time.Time) (*Client, *Lease, ServerLease) {
	t.Helper()
	c := NewClient(ClientConfig{MAC: cliMAC, ClientID: victimID, NonceCapable: true})
	l := bound(t, exchangeVia(t, s, c, "eth1", now, c.Start(now)))
	sl, ok := s.Lease(ClientKey(victimID, cliMAC))
	if !ok || l.Address.Addr() != victimRes || sl.CircuitID != "eth1" || len(l.Nonce) != nonceLen {
		t.Fatalf("victim: lease %+v, server %+v", l, sl)
	}
	return c, l, sl
}

// TestBoundLeaseStaysWithItsPort: requests carrying the victim's client-id
// from another port (other circuit-id and giaddr, or another MAC) get no
// offer, no ACK and no nonce, and leave the victim's lease alone.
func TestBoundLeaseStaysWithItsPort(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := bindingServer()
	victim, vl, before := bindVictim(t, s, now)

	for _, tc := range []struct {
		name  string
		iface string
		mac   net.HardwareAddr
	}{{"other port", "eth2", otherMAC}, {"other port, victim's MAC", "eth2", cliMAC}, {"victim's port, other MAC", "eth1", otherMAC}} {
		t.Run(tc.name, func(t *testing.T) {
			later := now.Add(time.Second)
			// A full DORA, as a client would try it.
			a := NewClient(ClientConfig{MAC: tc.mac, ClientID: victimID, NonceCapable: true})
			for _, m := range replies(exchangeVia(t, s, a, tc.iface, later, a.Start(later))) {
				if m.MessageType() != dhcpv4.MessageTypeNak {
					t.Errorf("answered with %s for %s", m.MessageType(), m.YourIPAddr)
				}
			}
			// INIT-REBOOT and SELECTING REQUESTs for the reserved address,
			// built by hand.
			for _, sel := range []bool{false, true} {
				m, _ := dhcpv4.New(dhcpv4.WithHwAddr(tc.mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
					dhcpv4.WithOption(dhcpv4.OptClientIdentifier(victimID)),
					dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(victimRes.AsSlice()))),
					dhcpv4.WithOption(dhcpv4.OptGeneric(OptionForceRenewNonceCapable, []byte{authAlgHMACMD5})))
				if sel {
					m.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(srvAddr.AsSlice())))
				}
				rep := viaPort(t, s, tc.iface, m, later)
				if rep.Msg == nil || rep.Msg.MessageType() != dhcpv4.MessageTypeNak || rep.Commit != nil {
					t.Errorf("selecting=%v: reply %v commit %v; want a NAK and nothing stored", sel, rep.Msg, rep.Commit)
				} else if rep.Msg.Options.Has(dhcpv4.OptionAuthentication) {
					t.Errorf("NAK carries option 90")
				}
			}
			// Selecting another server: silence, as for any client.
			m, _ := dhcpv4.New(dhcpv4.WithHwAddr(tc.mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithOption(dhcpv4.OptClientIdentifier(victimID)),
				dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(victimRes.AsSlice()))),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP{192, 0, 2, 2})))
			if rep := viaPort(t, s, tc.iface, m, later); rep.Msg != nil || rep.Commit != nil {
				t.Errorf("answered a REQUEST selecting another server: %v", rep.Msg)
			}
			got, _ := s.Lease(ClientKey(victimID, cliMAC))
			sameLease(t, tc.name, got, before)
		})
	}
	// The victim itself renews (unicast, straight to the server) and still
	// accepts the server's FORCERENEW.
	t1 := now.Add(vl.T1)
	renewed := bound(t, exchangeVia(t, s, victim, "eth1", t1, victim.Tick(t1)))
	if !bytes.Equal(renewed.Nonce, vl.Nonce) {
		t.Fatalf("victim's nonce changed on renewal")
	}
	after, _ := s.Lease(ClientKey(victimID, cliMAC))
	if after.CircuitID != "eth1" || after.GIAddr != port1 || !bytes.Equal(after.Nonce, before.Nonce) {
		t.Errorf("renewal unicast from the client rewrote where it lives: %+v", after)
	}
	raw, _, _, err := s.ForceRenew(ClientKey(victimID, cliMAC))
	if err != nil {
		t.Fatal(err)
	}
	if acts := victim.Receive(t1, raw, Source{MAC: srvMAC, IP: srvAddr}); len(acts) == 0 || acts[0].Event != engine.KindForceRenewReceived {
		t.Errorf("victim rejected the server's FORCERENEW: %+v", acts)
	}
}

// TestNonceOncePerBinding: the RFC 6704 key goes out in the ACK that makes
// a binding, never in a renewal's ACK; a new binding gets a new key.
func TestNonceOncePerBinding(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := bindingServer()
	c, l, _ := bindVictim(t, s, now)
	t1 := now.Add(l.T1)
	acts := exchangeVia(t, s, c, "eth1", t1, c.Tick(t1))
	rs := replies(acts)
	if len(rs) != 1 || rs[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renewal: %v", rs)
	}
	if rs[0].Options.Has(dhcpv4.OptionAuthentication) {
		t.Errorf("renewal ACK carries the nonce again (option 90)")
	}
	renewed := bound(t, acts)
	if !bytes.Equal(renewed.Nonce, l.Nonce) {
		t.Errorf("client lost its nonce on a renewal without one")
	}
	// The client reboots (INIT-REBOOT) and starts a new binding: new key.
	c2 := NewClient(ClientConfig{MAC: cliMAC, ClientID: victimID, NonceCapable: true, Previous: victimRes})
	rebooted := bound(t, exchangeVia(t, s, c2, "eth1", t1, c2.Start(t1)))
	if len(rebooted.Nonce) != nonceLen || bytes.Equal(rebooted.Nonce, l.Nonce) {
		t.Errorf("INIT-REBOOT: nonce %x, want a new one (old %x)", rebooted.Nonce, l.Nonce)
	}
	sl, _ := s.Lease(ClientKey(victimID, cliMAC))
	if !bytes.Equal(sl.Nonce, rebooted.Nonce) {
		t.Errorf("server keeps %x, client got %x", sl.Nonce, rebooted.Nonce)
	}
	// Released, then bound again: another new key.
	rel := c2.Release(t1)
	if rep := viaPort(t, s, "", rel[0].Msg, t1); rep.Commit == nil || rep.Commit.State != LeaseReleased {
		t.Fatalf("release: %+v", rep)
	}
	c3 := NewClient(ClientConfig{MAC: cliMAC, ClientID: victimID, NonceCapable: true})
	again := bound(t, exchangeVia(t, s, c3, "eth1", t1, c3.Start(t1)))
	if bytes.Equal(again.Nonce, rebooted.Nonce) || len(again.Nonce) != nonceLen {
		t.Errorf("new binding after release kept the old nonce")
	}
}

// TestReleaseDeclineOnlyFromTheHolder: RELEASE and DECLINE with the
// victim's client-id are applied only when they come from where the lease
// lives.
func TestReleaseDeclineOnlyFromTheHolder(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := bindingServer()
	victim, _, before := bindVictim(t, s, now)
	key := ClientKey(victimID, cliMAC)
	msg := func(typ dhcpv4.MessageType, mac net.HardwareAddr) *dhcpv4.DHCPv4 {
		m, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(typ),
			dhcpv4.WithOption(dhcpv4.OptClientIdentifier(victimID)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(srvAddr.AsSlice()))))
		if typ == dhcpv4.MessageTypeRelease {
			m.ClientIPAddr = net.IP(victimRes.AsSlice())
		} else {
			m.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IP(victimRes.AsSlice())))
		}
		return m
	}
	for _, typ := range []dhcpv4.MessageType{dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline} {
		for _, tc := range []struct {
			name  string
			iface string
			mac   net.HardwareAddr
			src   netip.Addr
		}{
			{"relayed from the other port", "eth2", cliMAC, netip.Addr{}},
			{"relayed from its port, other MAC", "eth1", otherMAC, netip.Addr{}},
			{"unicast, other MAC", "", otherMAC, victimRes},
			{"unicast from another address", "", cliMAC, netip.MustParseAddr("198.18.0.100")},
		} {
			m := msg(typ, tc.mac)
			var rep Reply
			switch {
			case tc.iface != "":
				rep = viaPort(t, s, tc.iface, m, now)
			default:
				req, _ := dhcpv4.FromBytes(m.ToBytes())
				rep = s.HandleFrom(req, upstream, tc.src, now)
			}
			if rep.Commit != nil {
				t.Errorf("%s %s applied: %+v", typ, tc.name, rep.Commit)
			}
			got, ok := s.Lease(key)
			if !ok {
				t.Fatalf("%s %s removed the victim's lease", typ, tc.name)
			}
			sameLease(t, typ.String()+" "+tc.name, got, before)
		}
	}
	// The victim's own RELEASE, unicast from its address, is applied...
	rel := victim.Release(now.Add(time.Second))
	if rep := viaPort(t, s, "", rel[0].Msg, now.Add(time.Second)); rep.Commit == nil || rep.Commit.State != LeaseReleased {
		t.Errorf("victim's own RELEASE not applied: %+v", rep)
	}
	// ...and, bound again, its own DECLINE, relayed from its port.
	c := NewClient(ClientConfig{MAC: cliMAC, ClientID: victimID, NonceCapable: true})
	bound(t, exchangeVia(t, s, c, "eth1", now.Add(2*time.Second), c.Start(now.Add(2*time.Second))))
	if rep := viaPort(t, s, "eth1", msg(dhcpv4.MessageTypeDecline, cliMAC), now.Add(2*time.Second)); rep.Commit == nil || rep.Commit.State != LeaseDeclined {
		t.Errorf("victim's own DECLINE not applied: %+v", rep)
	}
}
