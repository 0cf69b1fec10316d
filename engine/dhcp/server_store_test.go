package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// fakeServer is a dhcp_server role on a fake host with a store on disk, and
// a relay host in front of it that talks to it from 192.0.2.2:67.
type fakeServer struct {
	t     *testing.T
	cfg   profiles.DHCPServer
	sh    *fake.Host
	st    *store.Store
	role  *ServerRole
	stop  func()
	conn  engine.UDPConn
	relay netip.Addr
}

func newFakeServer(t *testing.T, mod func(*profiles.DHCPServer)) *fakeServer {
	t.Helper()
	nw := fake.NewNetwork()
	sh := fake.NewHost("srv", nw, "eth0")
	sh.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("192.0.2.1/24")})
	rh := fake.NewHost("relay", nw, "eth0")
	rh.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("192.0.2.2/24")})
	cfg := profiles.DHCPServer{Ifaces: []string{"eth0"}, ForceRenew: true, Pools: []profiles.DHCPPool{{
		Subnet: profiles.Prefix{Prefix: netip.MustParsePrefix("192.0.2.0/24")},
		Start:  profiles.Addr{Addr: netip.MustParseAddr("192.0.2.100")}, End: profiles.Addr{Addr: netip.MustParseAddr("192.0.2.110")},
	}}}
	if mod != nil {
		mod(&cfg)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "srv.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	conn, err := rh.ListenUDP(netip.MustParseAddrPort("192.0.2.2:67"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fakeServer{t: t, cfg: cfg, sh: sh, st: st, conn: conn, relay: netip.MustParseAddr("192.0.2.2")}
	f.start()
	return f
}

// start runs a new server role on the store (a restart after stop).
func (f *fakeServer) start() {
	f.t.Helper()
	f.role = NewServerRole(f.cfg)
	e, _, stop := runEngine(f.t, "srv", f.sh, f.st, f.role)
	f.stop = stop
	waitFor(f.t, "listening", func() bool {
		snap := e.Snapshot()
		for _, r := range snap.Node("srv").Roles {
			for _, step := range r.Steps {
				if step.Name == "listening" && step.Done {
					return true
				}
			}
		}
		return false
	})
}

// send relays m to the server; ask also waits for its reply.
func (f *fakeServer) send(m *dhcpv4.DHCPv4) {
	m.GatewayIPAddr = net.IP(f.relay.AsSlice())
	f.conn.WriteToUDPAddrPort(m.ToBytes(), netip.MustParseAddrPort("192.0.2.1:67"))
}

func (f *fakeServer) ask(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	f.t.Helper()
	f.send(m)
	f.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := f.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		f.t.Fatalf("no reply to %s: %v", m.MessageType(), err)
	}
	r, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// bind runs DISCOVER/REQUEST for a client and returns its ACK.
func (f *fakeServer) bind(mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	f.t.Helper()
	d, _ := dhcpv4.NewDiscovery(mac, mods...)
	offer := f.ask(d)
	if offer.MessageType() != dhcpv4.MessageTypeOffer {
		f.t.Fatalf("DISCOVER from %s answered with %s", mac, offer.MessageType())
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer, mods...)
	ack := f.ask(req)
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		f.t.Fatalf("REQUEST from %s answered with %s (%s)", mac, ack.MessageType(), ack.Message())
	}
	return ack
}

// table is a lease table as comparable lines, by key.
func table(ls []ServerLease) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, fmt.Sprintf("%s %s %s", l.Key, l.Address, l.State))
	}
	sort.Strings(out)
	return out
}

func (f *fakeServer) memory() []ServerLease {
	f.role.mu.Lock()
	defer f.role.mu.Unlock()
	return f.role.srv.Leases()
}

func (f *fakeServer) stored() []ServerLease {
	f.t.Helper()
	ls, err := LoadLeases(f.st)
	if err != nil {
		f.t.Fatal(err)
	}
	return ls
}

// TestDeclineKeepsStoreAndMemoryAlike: after a DECLINE the store holds what
// the server holds in memory, so a restarted server neither gives the
// declined address back to the client that declined it nor finds that
// client still bound to it.
func TestDeclineKeepsStoreAndMemoryAlike(t *testing.T) {
	f := newFakeServer(t, nil)
	id := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte("\x00ESN-D")))
	ack := f.bind(cliMAC, id)
	addr := ack.YourIPAddr
	decline, _ := dhcpv4.New(dhcpv4.WithHwAddr(cliMAC), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline), id,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(addr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP{192, 0, 2, 1})))
	f.send(decline)
	waitFor(t, "the declined address stored", func() bool {
		for _, l := range f.stored() {
			if l.State == LeaseDeclined {
				return true
			}
		}
		return false
	})
	mem, disk := table(f.memory()), table(f.stored())
	if fmt.Sprint(mem) != fmt.Sprint(disk) {
		t.Errorf("after DECLINE memory and store differ:\n memory %q\n store  %q", mem, disk)
	}
	f.stop()
	f.start()
	if got := table(f.memory()); fmt.Sprint(got) != fmt.Sprint(mem) {
		t.Errorf("restarted server holds %q, the running one held %q", got, mem)
	}
	// The client asks for the declined address again (INIT-REBOOT): NAK.
	reboot, _ := dhcpv4.New(dhcpv4.WithHwAddr(cliMAC), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), id,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(addr)))
	if r := f.ask(reboot); r.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("after restart the declined %s was %s to the client that declined it", addr, r.MessageType())
	}
}

// TestDepartedClientsForgotten: clients with rotating MACs that come, take
// an address and go do not grow the store without bound: the rows of
// released and expired leases are deleted once the grace period has passed
// without the client being seen. A reserved client's row stays.
func TestDepartedClientsForgotten(t *testing.T) {
	reserved := net.HardwareAddr{0x02, 0, 0, 0, 0x0e, 0x01}
	f := newFakeServer(t, func(c *profiles.DHCPServer) {
		c.SweepInterval = profiles.Duration{Duration: 50 * time.Millisecond}
		c.ForgetAfter = profiles.Duration{Duration: 500 * time.Millisecond}
		c.Reservations = []profiles.DHCPReservation{{MAC: reserved.String(), Address: profiles.Addr{Addr: netip.MustParseAddr("192.0.2.60")}}}
	})
	release := func(mac net.HardwareAddr, addr net.IP) {
		m, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
			dhcpv4.WithClientIP(addr), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP{192, 0, 2, 1})))
		f.send(m)
	}
	ack := f.bind(reserved)
	release(reserved, ack.YourIPAddr)
	const clients = 300
	for i := 0; i < clients; i++ {
		mac := net.HardwareAddr{0x02, 0x10, 0, 0, byte(i >> 8), byte(i)}
		release(mac, f.bind(mac).YourIPAddr)
	}
	t.Logf("%d rows right after %d clients came and went", len(f.stored()), clients+1)
	// After the grace period only the reserved client's row is left, in
	// the store as in memory.
	time.Sleep(500 * time.Millisecond)
	waitFor(t, "departed clients' rows deleted", func() bool { return len(f.stored()) <= 1 })
	rows := f.stored()
	if len(rows) != 1 || rows[0].MAC != reserved.String() {
		t.Errorf("rows left %q, want only the reserved client's", table(rows))
	}
	if mem, disk := table(f.memory()), table(rows); fmt.Sprint(mem) != fmt.Sprint(disk) {
		t.Errorf("memory %q, store %q", mem, disk)
	}
	// A departed client that comes back is served as a new one.
	if ack := f.bind(net.HardwareAddr{0x02, 0x10, 0, 0, 0, 7}); ack.YourIPAddr == nil {
		t.Errorf("returning client not served")
	}
}

// TestForgetWhatIsDeparted: Forget deletes only rows of departed clients
// past the grace period: not bound leases, not a reserved client's row,
// not a release younger than the grace; a declined address's row goes
// after its hold and the grace.
func TestForgetWhatIsDeparted(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := bindingServer()
	_, _, _ = bindVictim(t, s, now) // reserved by client-id, bound
	gone := NewClient(ClientConfig{MAC: net.HardwareAddr{2, 0, 0, 0, 3, 1}})
	bound(t, exchange(t, s, gone, now, gone.Start(now)))
	s.Handle(mustDecode(t, gone.Release(now)[0].Msg), link, now)
	stays := NewClient(ClientConfig{MAC: net.HardwareAddr{2, 0, 0, 0, 3, 2}})
	bound(t, exchange(t, s, stays, now, stays.Start(now)))
	dmac := net.HardwareAddr{2, 0, 0, 0, 3, 3}
	declines := NewClient(ClientConfig{MAC: dmac})
	dl := bound(t, exchange(t, s, declines, now, declines.Start(now)))
	decline, _ := dhcpv4.New(dhcpv4.WithHwAddr(dmac), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(dl.Address.Addr().AsSlice()))))
	if rep := s.Handle(mustDecode(t, decline), link, now); rep.Commit == nil || rep.Commit.State != LeaseDeclined {
		t.Fatalf("decline: %+v", rep)
	}
	if got := s.Forget(now.Add(time.Hour), 2*time.Hour); len(got) != 0 {
		t.Errorf("forgot %v within the grace period", got)
	}
	// Past the grace (and past the bound leases' expiry, not yet swept).
	got := s.Forget(now.Add(3*time.Hour), 2*time.Hour)
	want := []string{"declined:" + dl.Address.Addr().String(), ClientKey(nil, gone.cfg.MAC)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("forgot %v, want %v", got, want)
	}
	if _, held := s.byAddr[dl.Address.Addr()]; held {
		t.Errorf("forgotten declined address still indexed")
	}
	// Swept, the bound leases expire; the unreserved one is forgotten
	// after the grace, the reserved client's row stays.
	s.Sweep(now.Add(3 * time.Hour))
	got = s.Forget(now.Add(6*time.Hour), 2*time.Hour)
	if want := []string{ClientKey(nil, stays.cfg.MAC)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after sweeping: forgot %v, want %v", got, want)
	}
	if _, ok := s.Lease(ClientKey(victimID, cliMAC)); !ok {
		t.Errorf("reserved client's row forgotten")
	}
}

func mustDecode(t *testing.T, m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	r, err := dhcpv4.FromBytes(m.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return r
}
