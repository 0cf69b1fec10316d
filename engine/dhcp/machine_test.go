package dhcp

import (
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/engine"
)

var (
	srvMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	cliMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	srvAddr = netip.MustParseAddr("192.0.2.1")
	link    = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}
)

func testServer(mod func(*ServerConfig)) *Server {
	cfg := ServerConfig{ServerID: srvAddr, ForceRenewNonce: true, RapidCommit: true, Pools: []Pool{{
		Subnet: netip.MustParsePrefix("192.0.2.0/24"), Start: netip.MustParseAddr("192.0.2.100"),
		End: netip.MustParseAddr("192.0.2.110"), Routers: []netip.Addr{srvAddr},
		CloudServer: netip.MustParseAddr("203.0.113.10"), LeaseTime: 100 * time.Second,
	}}}
	if mod != nil {
		mod(&cfg)
	}
	return NewServer(cfg)
}

// exchange runs client actions against the server until nothing is left to
// send, and returns the non-send actions in order.
func exchange(t *testing.T, s *Server, c *Client, now time.Time, acts []Action) []Action {
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
		// Through the wire: encode, decode.
		req, err := dhcpv4.FromBytes(a.Msg.ToBytes())
		if err != nil {
			t.Fatal(err)
		}
		rep := s.Handle(req, link, now)
		if rep.Msg == nil {
			continue
		}
		acts = append(acts, c.Receive(now, rep.Msg.ToBytes(), Source{MAC: srvMAC, IP: srvAddr})...)
	}
	return out
}

func kinds(acts []Action) []ActionKind {
	var k []ActionKind
	for _, a := range acts {
		k = append(k, a.Kind)
	}
	return k
}

func bound(t *testing.T, acts []Action) *Lease {
	t.Helper()
	for _, a := range acts {
		if a.Kind == ActBind {
			return a.Lease
		}
	}
	t.Fatalf("no bind in %v", kinds(acts))
	return nil
}

func TestClientServerDORA(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name  string
		rapid bool
		probe bool
	}{{"four messages", false, false}, {"rapid commit", true, false}, {"with arp probe", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := testServer(nil)
			c := NewClient(ClientConfig{MAC: cliMAC, ClientID: []byte("\x00ESN-1"), RapidCommit: tc.rapid, Probe: tc.probe, NonceCapable: true})
			l := bound(t, exchange(t, s, c, now, c.Start(now)))
			if l.Address != netip.MustParsePrefix("192.0.2.100/24") || l.Server != srvAddr || l.LeaseTime != 100*time.Second {
				t.Errorf("lease %+v", l)
			}
			if l.T1 != 50*time.Second || l.T2 != 87*time.Second {
				t.Errorf("T1 %s T2 %s; want 50s and 87s (whole seconds on the wire)", l.T1, l.T2)
			}
			if l.RapidCommit != tc.rapid {
				t.Errorf("rapid commit %v, want %v", l.RapidCommit, tc.rapid)
			}
			if len(l.Nonce) != 16 || l.CloudServer != netip.MustParseAddr("203.0.113.10") {
				t.Errorf("nonce %x cloud %s", l.Nonce, l.CloudServer)
			}
			sl, ok := s.Lease(ClientKey([]byte("\x00ESN-1"), cliMAC))
			if !ok || sl.State != LeaseBound || string(sl.Nonce) != string(l.Nonce) {
				t.Errorf("server lease %+v", sl)
			}
			if c.State() != StateBound {
				t.Errorf("state %s", c.State())
			}
		})
	}
}

func TestRapidCommitOnRetransmission(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := NewClient(ClientConfig{MAC: cliMAC, RapidCommit: true})
	first := c.Start(now)
	again := c.Tick(now.Add(time.Minute))
	for i, acts := range [][]Action{first, again} {
		if len(acts) != 1 || !acts[0].Msg.Options.Has(dhcpv4.OptionRapidCommit) {
			t.Errorf("DISCOVER %d lacks option 80", i)
		}
	}
}

func TestClientRenewRebindExpire(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := testServer(nil)
	c := NewClient(ClientConfig{MAC: cliMAC, Backoff: Backoff{Initial: time.Second, Max: 4 * time.Second}})
	l := bound(t, exchange(t, s, c, now, c.Start(now)))
	if got := c.Deadline(); !got.Equal(now.Add(l.T1)) {
		t.Fatalf("deadline %s, want T1 %s", got, now.Add(l.T1))
	}
	// T1: unicast REQUEST with ciaddr to the server.
	t1 := now.Add(l.T1)
	acts := c.Tick(t1)
	if len(acts) != 1 || acts[0].Kind != ActSend || acts[0].To != srvAddr || acts[0].ToMAC.String() != srvMAC.String() {
		t.Fatalf("at T1: %+v", acts)
	}
	if ipFrom(acts[0].Msg.ClientIPAddr) != l.Address.Addr() || acts[0].Msg.Options.Has(dhcpv4.OptionServerIdentifier) {
		t.Errorf("renew request must carry ciaddr and no server id (RFC 2131 table 4)")
	}
	renewed := bound(t, exchange(t, s, c, t1, acts))
	if renewed.Address != l.Address || !renewed.Acquired.Equal(t1) {
		t.Errorf("renewed %+v", renewed)
	}
	// Server gone: renew retransmissions, then REBINDING broadcast at T2,
	// then unbind at expiry.
	t1b := t1.Add(renewed.T1)
	c.Tick(t1b)
	if c.State() != StateRenewing {
		t.Fatalf("state %s, want renewing", c.State())
	}
	var sawBroadcast, unbound bool
	for ts := t1b; ts.Before(t1.Add(renewed.LeaseTime + time.Second)); ts = ts.Add(500 * time.Millisecond) {
		for _, a := range c.Tick(ts) {
			if a.Kind == ActSend && a.To == bcast4 && c.State() == StateRebinding {
				sawBroadcast = true
			}
			if a.Kind == ActUnbind {
				unbound = true
			}
		}
	}
	if !sawBroadcast || !unbound {
		t.Errorf("rebinding broadcast %v, unbound at expiry %v", sawBroadcast, unbound)
	}
	if c.State() != StateSelecting {
		t.Errorf("after expiry state %s, want selecting", c.State())
	}
}

func TestClientNakAndInitReboot(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := testServer(nil)
	// INIT-REBOOT for an address outside the pool's subnet: NAK, then DORA.
	c := NewClient(ClientConfig{MAC: cliMAC, Previous: netip.MustParseAddr("198.51.100.7")})
	acts := c.Start(now)
	if c.State() != StateRebooting || ipFrom(acts[0].Msg.RequestedIPAddress()) != netip.MustParseAddr("198.51.100.7") {
		t.Fatalf("start: state %s", c.State())
	}
	l := bound(t, exchange(t, s, c, now, acts))
	if l.Address.Addr() != netip.MustParseAddr("192.0.2.100") {
		t.Errorf("after NAK got %s", l.Address)
	}
	// INIT-REBOOT for its own address: ACK straight away.
	c2 := NewClient(ClientConfig{MAC: cliMAC, Previous: l.Address.Addr()})
	l2 := bound(t, exchange(t, s, c2, now, c2.Start(now)))
	if l2.Address != l.Address {
		t.Errorf("init-reboot got %s, want %s", l2.Address, l.Address)
	}
}

func TestReservations(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	resAddr := netip.MustParseAddr("192.0.2.50")
	macAddr := netip.MustParseAddr("192.0.2.51")
	s := testServer(func(c *ServerConfig) {
		c.Reservations = []Reservation{
			{ClientID: []byte("\x00ESN-R"), Address: resAddr},
			{MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 9}, Address: macAddr},
		}
	})
	c := NewClient(ClientConfig{MAC: cliMAC, ClientID: []byte("\x00ESN-R")})
	if l := bound(t, exchange(t, s, c, now, c.Start(now))); l.Address.Addr() != resAddr {
		t.Errorf("client-id reservation: got %s", l.Address)
	}
	c2 := NewClient(ClientConfig{MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 9}})
	if l := bound(t, exchange(t, s, c2, now, c2.Start(now))); l.Address.Addr() != macAddr {
		t.Errorf("mac reservation: got %s", l.Address)
	}
	// Someone else asking for the reserved address gets a pool address.
	c3 := NewClient(ClientConfig{MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 3}, Previous: resAddr})
	if l := bound(t, exchange(t, s, c3, now, c3.Start(now))); l.Address.Addr() == resAddr {
		t.Errorf("reserved address given to another client")
	}
}

func TestForceRenewAuthentication(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := testServer(nil)
	c := NewClient(ClientConfig{MAC: cliMAC, ClientID: []byte("\x00ESN-F"), NonceCapable: true})
	l := bound(t, exchange(t, s, c, now, c.Start(now)))
	key := ClientKey([]byte("\x00ESN-F"), cliMAC)

	// Unauthenticated: a FORCERENEW without option 90.
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(cliMAC), dhcpv4.WithMessageType(MessageTypeForceRenew))
	m.OpCode = dhcpv4.OpcodeBootReply
	assertRejected(t, c, now, m.ToBytes(), "no authentication")
	// Wrong key.
	bad, _ := SignForceRenew(m, 99, []byte("0123456789abcdef"))
	assertRejected(t, c, now, bad, "digest")
	// Tampered: right key, one byte changed after signing.
	raw, _, _, err := s.ForceRenew(key)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), raw...)
	tampered[12] ^= 1 // ciaddr
	assertRejected(t, c, now, tampered, "digest")

	// Authentic: accepted, the client renews at once.
	acts := c.Receive(now, raw, Source{MAC: srvMAC, IP: srvAddr})
	if len(acts) != 2 || acts[0].Event != engine.KindForceRenewReceived || acts[1].Kind != ActSend || c.State() != StateRenewing {
		t.Fatalf("authentic forcerenew: %+v state %s", acts, c.State())
	}
	// Change the cloud server: the renewal carries the difference.
	s.cfg.Pools[0].CloudServer = netip.MustParseAddr("203.0.113.20")
	l2 := bound(t, exchange(t, s, c, now.Add(time.Second), acts[1:]))
	if d := l2.Diff(l); d["cloud_server"] == nil || d["address"] != nil {
		t.Errorf("diff %v; want only the cloud server", d)
	}
	// Replayed: the same message again is rejected.
	assertRejected(t, c, now.Add(2*time.Second), raw, "replay")
}

func assertRejected(t *testing.T, c *Client, now time.Time, raw []byte, why string) {
	t.Helper()
	acts := c.Receive(now, raw, Source{MAC: srvMAC, IP: srvAddr})
	if len(acts) != 1 || acts[0].Event != engine.KindForceRenewRejected {
		t.Fatalf("%s: want rejected, got %+v", why, acts)
	}
	if c.State() != StateBound {
		t.Fatalf("%s: state changed to %s", why, c.State())
	}
}

func TestIPSyncReservationMoves(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	id := []byte("\x00ESN-S")
	s := testServer(func(c *ServerConfig) {
		c.Reservations = []Reservation{{ClientID: id, Address: netip.MustParseAddr("192.0.2.60")}}
	})
	c := NewClient(ClientConfig{MAC: cliMAC, ClientID: id, NonceCapable: true})
	l := bound(t, exchange(t, s, c, now, c.Start(now)))
	cfg := s.Config()
	cfg.Reservations = []Reservation{{ClientID: id, Address: netip.MustParseAddr("192.0.2.61")}}
	s.SetConfig(cfg)
	key := ClientKey(id, cliMAC)
	sl, _ := s.Lease(key)
	if addr, _ := s.Entitled(sl); addr != netip.MustParseAddr("192.0.2.61") {
		t.Fatalf("entitled %s", addr)
	}
	raw, _, _, err := s.ForceRenew(key)
	if err != nil {
		t.Fatal(err)
	}
	acts := exchange(t, s, c, now, c.Receive(now, raw, Source{MAC: srvMAC, IP: srvAddr}))
	l2 := bound(t, acts)
	if l2.Address.Addr() != netip.MustParseAddr("192.0.2.61") {
		t.Fatalf("after forcerenew: %s", l2.Address)
	}
	// RFC 2131 §4.3.2: the renewal of the old address is NAKed; the client
	// removes it and rediscovers (issue #13 item 2).
	if k := kinds(acts); len(k) < 3 || k[0] != ActEmit || k[1] != ActUnbind || acts[1].Lease.Address != l.Address {
		t.Errorf("actions %v; want the old address unbound on the NAK before the new one is probed and bound", k)
	}
	var probed bool
	for _, a := range acts {
		probed = probed || a.Kind == ActProbe
		if a.Kind == ActBind && (a.Old == nil || a.Old.Address != l.Address || a.Fields["forcerenew"] != true) {
			t.Errorf("bind must carry the old lease and mark forcerenew: %+v", a)
		}
	}
	if !probed {
		t.Errorf("a pushed address must be probed for conflicts first, even without arp_probe")
	}
}

func TestDeclineOnConflict(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var probe *Lease
	// exchange answers probes with "no conflict"; run by hand instead.
	s2 := testServer(nil)
	c2 := NewClient(ClientConfig{MAC: cliMAC, Probe: true, DeclineWait: time.Second})
	acts := c2.Start(now)
	for len(acts) > 0 {
		a := acts[0]
		acts = acts[1:]
		switch a.Kind {
		case ActSend:
			req, _ := dhcpv4.FromBytes(a.Msg.ToBytes())
			if rep := s2.Handle(req, link, now); rep.Msg != nil {
				acts = append(acts, c2.Receive(now, rep.Msg.ToBytes(), Source{MAC: srvMAC, IP: srvAddr})...)
			}
		case ActProbe:
			probe = a.Lease
		}
	}
	if probe == nil {
		t.Fatal("no probe")
	}
	out := c2.ProbeDone(now, true, net.HardwareAddr{2, 0, 0, 0, 0, 0x66})
	if len(out) != 3 || out[0].Msg.MessageType() != dhcpv4.MessageTypeDecline || out[1].Event != engine.KindConflictDetected || out[2].Event != engine.KindDHCPDeclined {
		t.Fatalf("conflict: %+v", out)
	}
	req, _ := dhcpv4.FromBytes(out[0].Msg.ToBytes())
	s2.Handle(req, link, now)
	// After the wait the client starts over and gets another address.
	l := bound(t, exchange(t, s2, c2, now.Add(2*time.Second), c2.Tick(now.Add(2*time.Second))))
	if l.Address == probe.Address {
		t.Errorf("declined address %s handed out again", l.Address)
	}
}

func TestServerReleaseAndSweep(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := testServer(nil)
	c := NewClient(ClientConfig{MAC: cliMAC})
	bound(t, exchange(t, s, c, now, c.Start(now)))
	rel := c.Release(now)
	req, _ := dhcpv4.FromBytes(rel[0].Msg.ToBytes())
	if rep := s.Handle(req, link, now); rep.Commit == nil || rep.Commit.State != LeaseReleased {
		t.Fatalf("release: %+v", rep)
	}
	c2 := NewClient(ClientConfig{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 7}})
	bound(t, exchange(t, s, c2, now, c2.Start(now)))
	if got := s.Sweep(now.Add(99 * time.Second)); len(got) != 0 {
		t.Errorf("swept early: %v", got)
	}
	if got := s.Sweep(now.Add(101 * time.Second)); len(got) != 1 || got[0].State != LeaseExpired {
		t.Errorf("sweep: %v", got)
	}
}

func TestRelayOption82AndChain(t *testing.T) {
	first := NewRelay(RelayConfig{Downstream: map[string]netip.Addr{"eth1": netip.MustParseAddr("192.0.2.1")}, Upstream: "eth0",
		Servers: []netip.Addr{netip.MustParseAddr("198.51.100.2")}, RemoteID: "ESN-R1"})
	second := NewRelay(RelayConfig{Downstream: map[string]netip.Addr{"eth1": netip.MustParseAddr("198.51.100.2")}, Upstream: "eth0",
		Servers: []netip.Addr{netip.MustParseAddr("203.0.113.1")}, RemoteID: "ESN-R2"})
	d, _ := dhcpv4.NewDiscovery(cliMAC)
	f1 := first.Request(d, "eth1")
	if len(f1) != 1 || f1[0].To != netip.MustParseAddrPort("198.51.100.2:67") {
		t.Fatalf("first relay: %+v", f1)
	}
	m, _ := dhcpv4.FromBytes(f1[0].Msg.ToBytes())
	f2 := second.Request(m, "eth1")
	m2, _ := dhcpv4.FromBytes(f2[0].Msg.ToBytes())
	if ipFrom(m2.GatewayIPAddr) != netip.MustParseAddr("192.0.2.1") || m2.HopCount != 2 {
		t.Errorf("after two relays giaddr %s hops %d; want the first relay's and 2", m2.GatewayIPAddr, m2.HopCount)
	}
	rai := m2.RelayAgentInfo()
	if rai == nil || string(rai.Get(dhcpv4.AgentCircuitIDSubOption)) != "eth1" || string(rai.Get(dhcpv4.AgentRemoteIDSubOption)) != "ESN-R1" {
		t.Fatalf("option 82 %v", rai)
	}
	// The server answers to giaddr; the first relay strips option 82 and
	// broadcasts on eth1.
	s := testServer(nil)
	rep := s.Handle(m2, nil, time.Now())
	if rep.To != netip.MustParseAddrPort("192.0.2.1:67") || rep.Msg.RelayAgentInfo() == nil {
		t.Fatalf("server reply to %s (option 82 echoed: %v)", rep.To, rep.Msg.RelayAgentInfo() != nil)
	}
	if fwd, drop := second.Reply(rep.Msg, netip.MustParseAddr("203.0.113.1"), "eth0"); fwd != nil || drop != RelayDropNotOurs {
		t.Errorf("a relay must not forward replies whose giaddr is not its own (dropped as %q)", drop)
	}
	back, _ := first.Reply(rep.Msg, netip.MustParseAddr("198.51.100.2"), "eth0")
	if len(back) != 1 || back[0].Iface != "eth1" || back[0].To.Addr() != bcast4 || back[0].Msg.Options.Has(dhcpv4.OptionRelayAgentInformation) {
		t.Fatalf("reply: %+v", back)
	}
	// A client-sent option 82 with giaddr zero is dropped (RFC 3046 §2.1).
	d2, _ := dhcpv4.NewDiscovery(cliMAC, dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte("x")))))
	if first.Request(d2, "eth1") != nil {
		t.Errorf("forwarded a spoofed option 82")
	}
}

func TestPoolExhaustionAndReuse(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := testServer(nil) // 192.0.2.100–110: 11 addresses
	seen := map[netip.Prefix]bool{}
	var first *Client
	for i := 0; i < 11; i++ {
		c := NewClient(ClientConfig{MAC: net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}})
		l := bound(t, exchange(t, s, c, now, c.Start(now)))
		if seen[l.Address] {
			t.Fatalf("address %s given twice", l.Address)
		}
		seen[l.Address] = true
		if i == 0 {
			first = c
		}
	}
	c := NewClient(ClientConfig{MAC: net.HardwareAddr{2, 0, 0, 0, 2, 0}})
	if acts := exchange(t, s, c, now, c.Start(now)); len(acts) != 0 {
		t.Fatalf("exhausted pool answered: %v", kinds(acts))
	}
	// A release frees an address for the next client, found by wrapping.
	rel := first.Release(now)
	req, _ := dhcpv4.FromBytes(rel[0].Msg.ToBytes())
	s.Handle(req, link, now)
	c2 := NewClient(ClientConfig{MAC: net.HardwareAddr{2, 0, 0, 0, 2, 1}})
	if l := bound(t, exchange(t, s, c2, now, c2.Start(now))); l.Address.Addr() != netip.MustParseAddr("192.0.2.100") {
		t.Errorf("after release got %s, want the released 192.0.2.100", l.Address)
	}
}

func TestAckFromAnotherServerIgnored(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := testServer(nil)
	other := testServer(func(c *ServerConfig) { c.ServerID = netip.MustParseAddr("192.0.2.2") })
	c := NewClient(ClientConfig{MAC: cliMAC})
	acts := c.Start(now)
	req, _ := dhcpv4.FromBytes(acts[0].Msg.ToBytes())
	offer := s.Handle(req, link, now).Msg
	acts = c.Receive(now, offer.ToBytes(), Source{MAC: srvMAC, IP: srvAddr})
	r, _ := dhcpv4.FromBytes(acts[0].Msg.ToBytes())
	// The REQUEST names 192.0.2.1; the other server stays silent...
	if rep := other.Handle(r, link, now); rep.Msg != nil {
		t.Fatalf("a server answered a REQUEST naming another server")
	}
	// ...and an ACK it (or a forger) sends anyway is ignored.
	fake, _ := dhcpv4.NewReplyFromRequest(r, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IP{192, 0, 2, 77}),
		dhcpv4.WithServerIP(net.IPv4zero), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP{192, 0, 2, 2})),
		dhcpv4.WithLeaseTime(60))
	if got := c.Receive(now, fake.ToBytes(), Source{IP: netip.MustParseAddr("192.0.2.2")}); len(got) != 0 || c.State() != StateRequesting {
		t.Fatalf("ACK from another server accepted: %v, state %s", kinds(got), c.State())
	}
}

// TestCapturedForceRenewIsRefused (issue #13 item 5): a FORCERENEW sent by
// `fieldcon forcerenew` (built from a copy of the stored lease, as the CLI
// does beside a running server) is accepted once; after the renewal it
// triggers, the same bytes sent again are refused, even when the server's
// ACK carries a lower replay value.
func TestCapturedForceRenewIsRefused(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name   string
		server func() (uint64, error)
	}{
		{"shared counter", nil},
		// A server whose values are below the CLI's (an older server, or
		// one whose counter file was lost): the client must not go down.
		{"lower server values", func() (uint64, error) { return 7, nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "srv.db.rdm")
			srvRC, cliRC := openCounter(t, path, 64), openCounter(t, path, 1)
			s := testServer(nil)
			s.UseReplayCounter(srvRC.Next)
			if tc.server != nil {
				s.UseReplayCounter(tc.server)
			}
			id := []byte("\x00ESN-P")
			c := NewClient(ClientConfig{MAC: cliMAC, ClientID: id, NonceCapable: true})
			bound(t, exchange(t, s, c, now, c.Start(now)))
			sl, _ := s.Lease(ClientKey(id, cliMAC))
			v, err := cliRC.Next()
			if err != nil {
				t.Fatal(err)
			}
			raw, _, err := BuildForceRenew(sl, srvAddr, v)
			if err != nil {
				t.Fatal(err)
			}
			acts := c.Receive(now, raw, Source{MAC: srvMAC, IP: srvAddr})
			if len(acts) != 2 || acts[0].Event != engine.KindForceRenewReceived {
				t.Fatalf("first forcerenew: %+v", acts)
			}
			bound(t, exchange(t, s, c, now, acts[1:]))
			assertRejected(t, c, now.Add(time.Second), raw, "captured forcerenew replayed after the renewal")
		})
	}
}

func openCounter(t *testing.T, path string, block uint64) *ReplayCounter {
	t.Helper()
	rc, err := OpenReplayCounter(path, block)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// TestForceRenewCarriesLastXID (issue #13 item 1): a FORCERENEW carries the
// xid of the lease's last ACK (dhcpcd drops one with any other xid), the
// stored lease keeps it, and it follows the client's renewals.
func TestForceRenewCarriesLastXID(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := testServer(nil)
	id := []byte("\x00ESN-X")
	c := NewClient(ClientConfig{MAC: cliMAC, ClientID: id, NonceCapable: true})
	key := ClientKey(id, cliMAC)
	acts := c.Start(now)
	for i := 0; i < 3; i++ {
		bound(t, exchange(t, s, c, now, acts))
		sl, _ := s.Lease(key)
		if sl.XID != c.xid {
			t.Fatalf("exchange %d: stored xid %s; the client's last exchange was %s", i, sl.XID, c.xid)
		}
		raw, _, _, err := s.ForceRenew(key)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := dhcpv4.FromBytes(raw)
		if m.TransactionID != c.xid {
			t.Fatalf("exchange %d: forcerenew xid %s; want %s", i, m.TransactionID, c.xid)
		}
		acts = c.Receive(now, raw, Source{MAC: srvMAC, IP: srvAddr})[1:]
	}
}
