package dhcp_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// The server under kill -9 runs in a child process: this test binary,
// re-executed into TestHelperDHCPServer.
const (
	helperNetns = "FIELDCON_DHCP_HELPER_NETNS"
	helperStore = "FIELDCON_DHCP_HELPER_STORE"
)

func burstServerConfig() profiles.DHCPServer {
	return profiles.DHCPServer{
		Ifaces:    []string{"eth0"},
		LeaseTime: profiles.Duration{Duration: time.Hour},
		Pools: []profiles.DHCPPool{{
			Subnet: profiles.Prefix{Prefix: netip.MustParsePrefix("198.18.0.0/16")},
			Start:  profiles.Addr{Addr: netip.MustParseAddr("198.18.1.0")},
			End:    profiles.Addr{Addr: netip.MustParseAddr("198.18.8.255")},
		}},
	}
}

// TestHelperDHCPServer is not a test: it is the server process of
// TestKill9DuringBurst.
func TestHelperDHCPServer(t *testing.T) {
	ns := os.Getenv(helperNetns)
	if ns == "" {
		t.Skip("helper process for TestKill9DuringBurst")
	}
	if err := runHelperServer(ns, os.Getenv(helperStore)); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runHelperServer(ns, path string) error {
	h, err := linux.Open(ns)
	if err != nil {
		return err
	}
	st, err := store.Open(path)
	if err != nil {
		return err
	}
	e := engine.New(engine.NewBus(16), slog.New(slog.DiscardHandler))
	e.AddNode(engine.NodeSpec{Name: "srv", Netns: ns, Host: h, Store: st, Roles: []engine.Role{dhcp.NewServerRole(burstServerConfig())}})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fmt.Println("ready")
	return e.Run(ctx)
}

// burstClient is one simulated client behind a relay (this process owns
// giaddr:67 and sends for everyone).
type burstClient struct {
	mac  net.HardwareAddr
	id   []byte
	xid  dhcpv4.TransactionID
	addr netip.Addr
}

type burst struct {
	conn   engine.UDPConn
	giaddr netip.Addr
	server netip.AddrPort
	mu     sync.Mutex
	wait   map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
}

func (b *burst) readLoop() {
	buf := make([]byte, 4096)
	for {
		n, _, err := b.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		b.mu.Lock()
		c := b.wait[m.TransactionID]
		b.mu.Unlock()
		if c != nil {
			select {
			case c <- m:
			default:
			}
		}
	}
}

// ask sends m and waits for a reply of the same transaction.
func (b *burst) ask(m *dhcpv4.DHCPv4, timeout time.Duration) *dhcpv4.DHCPv4 {
	c := make(chan *dhcpv4.DHCPv4, 4)
	b.mu.Lock()
	b.wait[m.TransactionID] = c
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.wait, m.TransactionID)
		b.mu.Unlock()
	}()
	for try := 0; try < 3; try++ {
		b.conn.WriteToUDPAddrPort(m.ToBytes(), b.server)
		select {
		case r := <-c:
			return r
		case <-time.After(timeout):
		}
	}
	return nil
}

// acquire runs DISCOVER/OFFER/REQUEST/ACK for c; true when ACKed.
func (b *burst) acquire(c *burstClient) bool {
	d, _ := dhcpv4.NewDiscovery(c.mac, dhcpv4.WithTransactionID(c.xid), dhcpv4.WithGatewayIP(net.IP(b.giaddr.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(c.id)))
	offer := b.ask(d, 500*time.Millisecond)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		return false
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithGatewayIP(net.IP(b.giaddr.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(c.id)))
	ack := b.ask(req, 500*time.Millisecond)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		return false
	}
	c.addr, _ = netip.AddrFromSlice(ack.YourIPAddr.To4())
	return true
}

// renew asks the (restarted) server to confirm c's address (RENEWING,
// ciaddr set, through the relay).
func (b *burst) renew(c *burstClient) (netip.Addr, bool) {
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(c.mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.IP(c.addr.AsSlice())), dhcpv4.WithGatewayIP(net.IP(b.giaddr.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(c.id)))
	r := b.ask(m, 500*time.Millisecond)
	if r == nil || r.MessageType() != dhcpv4.MessageTypeAck {
		return netip.Addr{}, false
	}
	a, _ := netip.AddrFromSlice(r.YourIPAddr.To4())
	return a, true
}

const burstLab = `
[[node]]
name = "srv"
[[node]]
name = "cli"
[lab]
[[lab.link]]
a = "srv:eth0"
b = "cli:eth0"
`

// TestKill9DuringBurst: 1,000 clients (simulated behind a relay address)
// hit the server; it is killed with SIGKILL mid-burst. Every client that
// received an ACK finds its lease in the store and, after a restart, gets
// the same address confirmed.
func TestKill9DuringBurst(t *testing.T) {
	labtest.RequireRoot(t)
	if testing.Short() {
		t.Skip("skipping the 1,000-client burst in -short mode")
	}
	p, err := profiles.Parse("burst.toml", []byte(burstLab))
	if err != nil {
		t.Fatal(err)
	}
	l := labtest.Up(t, p)
	srvNS, cliNS := l.Netns("srv"), l.Netns("cli")
	labtest.Exec(t, srvNS, "ip", "addr", "add", "198.18.0.254/16", "dev", "eth0")
	labtest.Exec(t, cliNS, "ip", "addr", "add", "198.18.0.1/16", "dev", "eth0")
	storePath := filepath.Join(t.TempDir(), "srv.db")

	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDHCPServer$")
		cmd.Env = append(os.Environ(), helperNetns+"="+srvNS, helperStore+"="+storePath)
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		end := time.Now().Add(10 * time.Second)
		for time.Now().Before(end) && out.String() == "" {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond) // the role binds its socket after "ready"
		return cmd
	}
	server := start()

	h := labtest.Host(t, l, "cli")
	giaddr := netip.MustParseAddr("198.18.0.1")
	conn, err := h.ListenUDP(netip.AddrPortFrom(giaddr, 67), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := &burst{conn: conn, giaddr: giaddr, server: netip.MustParseAddrPort("198.18.0.254:67"), wait: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}}
	go b.readLoop()
	defer conn.Close()

	const n = 1000
	clients := make([]*burstClient, n)
	for i := range clients {
		clients[i] = &burstClient{mac: net.HardwareAddr{0x02, 0xbb, 0, 0, byte(i >> 8), byte(i)}, id: []byte(fmt.Sprintf("\x00ESN-%04d", i))}
		clients[i].xid = dhcpv4.TransactionID{0xfc, 0, byte(i >> 8), byte(i)}
	}
	var acked atomic.Int64
	ok := make([]bool, n)
	var killed atomic.Bool
	var killedAt time.Time
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	began := time.Now()
	for i, c := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if b.acquire(c) {
				ok[i] = true
				// Kill the server once 40% of the clients are bound,
				// while others are in the middle of their exchanges.
				if acked.Add(1) == n*4/10 && killed.CompareAndSwap(false, true) {
					server.Process.Signal(syscall.SIGKILL)
					killedAt = time.Now()
				}
			}
		}()
	}
	wg.Wait()
	server.Wait()
	got := int(acked.Load())
	t.Logf("%d of %d clients got an ACK before the kill -9 (%.0f leases/s); killed after %s", got, n, float64(got)/killedAt.Sub(began).Seconds(), killedAt.Sub(began))
	if !killed.Load() || got >= n {
		t.Fatalf("the server was not killed mid-burst (acked %d)", got)
	}

	// Straight from disk: every ACKed client's lease is there.
	st, err := store.Open(storePath)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := dhcp.LoadLeases(st)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]dhcp.ServerLease{}
	for _, sl := range leases {
		byKey[sl.Key] = sl
	}
	missing := 0
	for i, c := range clients {
		if !ok[i] {
			continue
		}
		sl, found := byKey[dhcp.ClientKey(c.id, c.mac)]
		if !found || sl.State != dhcp.LeaseBound || sl.Address != c.addr {
			missing++
			if missing < 5 {
				t.Errorf("client %d: ACKed %s, stored %+v", i, c.addr, sl)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d ACKed clients lost their lease", missing)
	}
	t.Logf("store after kill -9: %d leases, all %d ACKed clients present", len(leases), got)

	// Restarted, the server confirms every ACKed client's address.
	start()
	for i, c := range clients {
		if !ok[i] {
			continue
		}
		if a, ok := b.renew(c); !ok || a != c.addr {
			t.Errorf("client %d: after restart renew got %s (ok %v), want %s", i, a, ok, c.addr)
		}
	}
}
