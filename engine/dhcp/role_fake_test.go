package dhcp

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// runEngine runs roles on a fake host until stop is called.
func runEngine(t *testing.T, node string, h *fake.Host, st *store.Store, roles ...engine.Role) (e *engine.Engine, bus *engine.Bus, stop func()) {
	t.Helper()
	bus = engine.NewBus(1000)
	e = engine.New(bus, slog.New(slog.DiscardHandler))
	e.AddNode(engine.NodeSpec{Name: node, Host: h, Store: st, Roles: roles})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine: %v", err)
		}
	}
	t.Cleanup(stop)
	return e, bus, stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func hasEvent(bus *engine.Bus, kind string) bool {
	for _, e := range bus.History() {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

// TestClientRoleOnFake drives the client role's runner without root: its
// frames go to an in-process server; the host transcript shows what it
// configured, and stopping it undoes everything.
func TestClientRoleOnFake(t *testing.T) {
	before := runtime.NumGoroutine()
	h := fake.NewHost("cli", nil, "eth0")
	srv := testServer(nil)
	srvMACs := net.HardwareAddr{0x02, 0, 0, 0, 0, 0xfe}
	// The wire: answer every DHCP frame the client sends.
	quit := make(chan struct{})
	go func() {
		seen := 0
		for {
			select {
			case <-quit:
				return
			case <-time.After(2 * time.Millisecond):
			}
			sent := h.Sent("eth0")
			for ; seen < len(sent); seen++ {
				f, err := ParseFrame(sent[seen])
				if err != nil {
					continue // ARP probes: nobody answers
				}
				req, err := dhcpv4.FromBytes(f.Payload)
				if err != nil {
					continue
				}
				rep := srv.Handle(req, link, time.Now())
				if rep.Msg == nil {
					continue
				}
				h.Inject("eth0", BuildFrame(Frame{SrcMAC: srvMACs, DstMAC: f.SrcMAC,
					Src: netip.AddrPortFrom(srvAddr, ServerPort), Dst: netip.AddrPortFrom(bcast4, ClientPort), Payload: rep.Msg.ToBytes()}))
			}
		}
	}()
	var once sync.Once
	stopWire := func() { once.Do(func() { close(quit) }) }
	t.Cleanup(stopWire)
	role := NewClientRole(profiles.DHCPClient{Iface: "eth0", ClientID: "ESN-FAKE", Routes: true, PinServer: true, ArpProbe: true,
		ProbeWait: profiles.Duration{Duration: 20 * time.Millisecond}, ProbeInterval: profiles.Duration{Duration: 10 * time.Millisecond}})
	st, err := store.Open(filepath.Join(t.TempDir(), "cli.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, bus, stop := runEngine(t, "cli", h, st, role)
	waitFor(t, "bound", func() bool { return hasEvent(bus, engine.KindDHCPBound) })
	tr := h.String()
	for _, want := range []string{
		"ip addr add 192.0.2.100/24 dev eth0 valid_lft 100 preferred_lft 100",
		"ip route add 0.0.0.0/0 via 192.0.2.1 dev eth0",
		"ip neigh replace 192.0.2.1 lladdr 02:00:00:00:00:fe dev eth0 nud permanent",
	} {
		if !strings.Contains(tr, want) {
			t.Errorf("transcript lacks %q:\n%s", want, tr)
		}
	}
	snap := e.Snapshot()
	if rows := snap.Node("cli").Leases; len(rows) != 1 || rows[0].Address != "192.0.2.100/24" || rows[0].State != "bound" {
		t.Errorf("snapshot leases %+v", rows)
	}
	var stored Lease
	if err := st.Get(clientBucket, "eth0", &stored); err != nil || stored.Address.String() != "192.0.2.100/24" {
		t.Errorf("stored lease %+v (%v)", stored, err)
	}
	stop()
	tr = h.String()
	for _, want := range []string{"ip addr del 192.0.2.100/24 dev eth0", "ip route del 0.0.0.0/0", "ip neigh del 192.0.2.1 dev eth0"} {
		if !strings.Contains(tr, want) {
			t.Errorf("undo lacks %q:\n%s", want, tr)
		}
	}
	stopWire()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before+1 })
}

// TestServerRoleOnFake runs the server role without root: a relay on
// another fake host gets a lease; it is on disk before the ACK arrives, in
// the snapshot, and found again by a restarted server.
func TestServerRoleOnFake(t *testing.T) {
	nw := fake.NewNetwork()
	sh := fake.NewHost("srv", nw, "eth0")
	sh.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("192.0.2.1/24")})
	rh := fake.NewHost("relay", nw, "eth0")
	rh.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("192.0.2.2/24")})
	cfg := profiles.DHCPServer{Ifaces: []string{"eth0"}, ForceRenew: true, Pools: []profiles.DHCPPool{{
		Subnet: profiles.Prefix{Prefix: netip.MustParsePrefix("192.0.2.0/24")},
		Start:  profiles.Addr{Addr: netip.MustParseAddr("192.0.2.100")}, End: profiles.Addr{Addr: netip.MustParseAddr("192.0.2.110")},
	}}}
	path := filepath.Join(t.TempDir(), "srv.db")
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	role := NewServerRole(cfg)
	e, _, stop := runEngine(t, "srv", sh, st, role)
	waitFor(t, "listening", func() bool {
		s := e.Snapshot()
		for _, r := range s.Node("srv").Roles {
			for _, step := range r.Steps {
				if step.Name == "listening" && step.Done {
					return true
				}
			}
		}
		return false
	})
	conn, err := rh.ListenUDP(netip.MustParseAddrPort("192.0.2.2:67"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		t.Helper()
		conn.WriteToUDPAddrPort(m.ToBytes(), netip.MustParseAddrPort("192.0.2.1:67"))
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("no reply: %v", err)
		}
		r, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	gi := dhcpv4.WithGatewayIP(net.IP{192, 0, 2, 2})
	id := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte("\x00ESN-9")))
	nc := dhcpv4.WithOption(dhcpv4.OptGeneric(OptionForceRenewNonceCapable, []byte{1}))
	d, _ := dhcpv4.NewDiscovery(cliMAC, gi, id, nc)
	offer := ask(d)
	req, _ := dhcpv4.NewRequestFromOffer(offer, gi, id, nc)
	ack := ask(req)
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.GetOneOption(dhcpv4.OptionAuthentication) == nil {
		t.Fatalf("reply %s without nonce", ack.MessageType())
	}
	waitFor(t, "counters", func() bool {
		s := role.Stats()
		return s.Received == 2 && s.Discovers == 1 && s.Requests == 1 && s.Offers == 1 && s.Acks == 1 &&
			s.Commits == 1 && s.MaxBatch == 1 && s.Silent == 0 && s.Naks == 0 && s.MaxReplyDelay > 0
	})
	// The promise is on disk by the time the ACK arrived.
	leases, err := LoadLeases(st)
	if err != nil || len(leases) != 1 || leases[0].State != LeaseBound || len(leases[0].Nonce) != 16 {
		t.Fatalf("stored %+v (%v)", leases, err)
	}
	if snap := e.Snapshot(); len(snap.Node("srv").Leases) != 1 || snap.Node("srv").Leases[0].Address != "192.0.2.100" {
		rows := snap.Node("srv").Leases
		t.Errorf("snapshot %+v", rows)
	}
	stop()
	// Restarted on the same store: the client's renewal is acknowledged.
	role2 := NewServerRole(cfg)
	_, _, stop2 := runEngine(t, "srv", sh, st, role2)
	defer stop2()
	time.Sleep(50 * time.Millisecond)
	renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(cliMAC), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.IP{192, 0, 2, 100}), gi, id)
	if r := ask(renew); r.MessageType() != dhcpv4.MessageTypeAck || !r.YourIPAddr.Equal(net.IP{192, 0, 2, 100}) {
		t.Errorf("after restart: %s %s", r.MessageType(), r.YourIPAddr)
	}
}
