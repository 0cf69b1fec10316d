package tunnel

import (
	"context"
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// tunHost is a fake NAT-capable host that hands the test the TUN devices
// roles create, as wireguard-go's tuntest does.
type tunHost struct {
	*fake.NAT
	// batch hands roles batch-capable TUNs and sockets (batch_test.go).
	batch bool
	// tap, when set, sees (and can hold) every datagram the host's sockets send.
	tap  *udpTap
	mu   sync.Mutex
	tuns map[string]*fake.TUN
}

// udpTap records what a host's sockets send, as a capture on its link
// would, and can lose it all on the way (held).
type udpTap struct {
	mu   sync.Mutex
	sent [][]byte
	held bool
}

func (t *udpTap) hold(on bool) {
	t.mu.Lock()
	t.held = on
	t.mu.Unlock()
}

// first returns the first datagram sent of a message type.
func (t *udpTap) first(typ byte) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.sent {
		if len(b) > 0 && b[0] == typ {
			return b
		}
	}
	return nil
}

type tappedUDP struct {
	engine.UDPConn
	tap *udpTap
}

func (c tappedUDP) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	c.tap.mu.Lock()
	c.tap.sent = append(c.tap.sent, append([]byte(nil), b...))
	held := c.tap.held
	c.tap.mu.Unlock()
	if held {
		return len(b), nil
	}
	return c.UDPConn.WriteToUDPAddrPort(b, to)
}

func newTunHost(name string, n *fake.Network, links ...string) *tunHost {
	return &tunHost{NAT: fake.NewNAT(fake.NewHost(name, n, links...)), tuns: map[string]*fake.TUN{}}
}

func (h *tunHost) CreateTUN(name string, mtu int) (engine.TUN, error) {
	t, err := h.NAT.CreateTUN(name, mtu)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.tuns[name] = t.(*fake.TUN)
	h.mu.Unlock()
	if h.batch {
		return batchTUN{t.(*fake.TUN)}, nil
	}
	return t, nil
}

func (h *tunHost) ListenUDP(laddr netip.AddrPort, opt engine.UDPOptions) (engine.UDPConn, error) {
	c, err := h.NAT.ListenUDP(laddr, opt)
	if err == nil && h.tap != nil {
		return tappedUDP{c, h.tap}, nil
	}
	if err != nil || !h.batch {
		return c, err
	}
	return &batchUDP{UDPConn: c}, nil
}

func (h *tunHost) tun(t *testing.T, name string) *fake.TUN {
	t.Helper()
	for i := 0; i < 100; i++ {
		h.mu.Lock()
		d := h.tuns[name]
		h.mu.Unlock()
		if d != nil {
			return d
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no TUN %s on %s", name, h.Name())
	return nil
}

// ipv4 builds a minimal IPv4 header with a payload (checksums are not
// checked on the fake path).
func ipv4(src, dst string, payload string) []byte {
	b := make([]byte, 20+len(payload))
	b[0] = 0x45
	b[2], b[3] = byte(len(b)>>8), byte(len(b))
	b[8], b[9] = 64, 17
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], payload)
	return b
}

type lab struct {
	eng            *engine.Engine
	net            *fake.Network
	bus            *engine.Bus
	sub            *engine.Subscription
	server, client *tunHost
	srv            *Server
	cli            *Client
	cancel         context.CancelFunc
	done           chan error
	backlog        []engine.Event
}

func writeKey(t *testing.T, dir, name string) (priv string, pub PublicKey) {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(k.Private)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, PublicKey(k.Public)
}

type labOpts struct {
	idle, rekey time.Duration
	batch       bool // batch TUNs and sockets on both nodes
	tap         *udpTap
}

func startLab(t *testing.T, idle time.Duration, rekey ...time.Duration) *lab {
	t.Helper()
	o := labOpts{idle: idle}
	if len(rekey) > 0 {
		o.rekey = rekey[0]
	}
	return startLabOpts(t, o)
}

func startLabOpts(t *testing.T, o labOpts) *lab {
	t.Helper()
	idle := o.idle
	dir := t.TempDir()
	sPriv, sPub := writeKey(t, dir, "server.key")
	cPriv, cPub := writeKey(t, dir, "client.key")
	n := fake.NewNetwork()
	l := &lab{net: n, server: newTunHost("server", n, "eth0"), client: newTunHost("client", n, "eth0")}
	l.server.batch, l.client.batch = o.batch, o.batch
	l.client.tap = o.tap
	l.server.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("203.0.113.1/24")})
	l.client.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("198.18.0.2/24")})
	l.srv = NewServer(profiles.TunnelServer{
		Listen: profiles.AddrPort{AddrPort: netip.MustParseAddrPort("0.0.0.0:51820")}, PrivateKeyFile: sPriv,
		Pool: profiles.Prefix{Prefix: netip.MustParsePrefix("198.19.0.0/24")}, Egress: "eth0",
		Heartbeat: profiles.Duration{Duration: time.Second}, IdleTimeout: profiles.Duration{Duration: idle},
		NATInterval: profiles.Duration{Duration: 100 * time.Millisecond},
		Clients:     []profiles.TunnelPeer{{Name: "client", PublicKey: cPub.String()}},
	})
	l.cli = NewClient(profiles.TunnelClient{
		Server: profiles.AddrPort{AddrPort: netip.MustParseAddrPort("203.0.113.1:51820")}, ServerPublicKey: sPub.String(),
		PrivateKeyFile: cPriv, Routes: []profiles.Prefix{{Prefix: netip.MustParsePrefix("198.51.100.0/24")}},
	})
	if o.rekey > 0 {
		l.cli.RekeyAfter = o.rekey
	}
	st, err := store.Open(filepath.Join(dir, "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	l.bus = engine.NewBus(1000)
	l.sub = l.bus.Subscribe(1000, true)
	e := engine.New(l.bus, nil)
	l.eng = e
	e.AddNode(engine.NodeSpec{Name: "server", Host: l.server, Roles: []engine.Role{l.srv}, Store: st})
	e.AddNode(engine.NodeSpec{Name: "client", Host: l.client, Roles: []engine.Role{l.cli}})
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan error, 1)
	go func() { l.done <- e.Run(ctx) }()
	t.Cleanup(func() {
		l.stop(t)
		st.Close()
	})
	return l
}

// checkLeaks fails the test when goroutines started during it are still
// running a moment after it ended (wireguard-go's tests do the same).
func checkLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		for i := 0; i < 100; i++ {
			if runtime.NumGoroutine() <= before {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before the test, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	})
}

func (l *lab) stop(t *testing.T) {
	if l.cancel == nil {
		return
	}
	l.cancel()
	l.cancel = nil
	select {
	case err := <-l.done:
		if err != nil {
			t.Errorf("engine: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("engine did not stop")
	}
}

// waitEvent returns the first event of kind on node not returned before;
// events of other kinds wait in a backlog for later calls.
func (l *lab) waitEvent(t *testing.T, node, kind string, d time.Duration) engine.Event {
	t.Helper()
	for i, e := range l.backlog {
		if e.Node == node && e.Kind == kind {
			l.backlog = append(l.backlog[:i], l.backlog[i+1:]...)
			return e
		}
	}
	timeout := time.After(d)
	for {
		select {
		case e := <-l.sub.C:
			if e.Kind == engine.KindError {
				t.Logf("error event on %s: %v", e.Node, e.Fields)
			}
			if e.Node == node && e.Kind == kind {
				return e
			}
			l.backlog = append(l.backlog, e)
		case <-timeout:
			t.Fatalf("no %s on %s within %s", kind, node, d)
		}
	}
}

func recvPacket(t *testing.T, c chan []byte) []byte {
	t.Helper()
	select {
	case p := <-c:
		return p
	case <-time.After(3 * time.Second):
		t.Fatal("no packet came out of the tunnel")
	}
	return nil
}

func TestTunnelEndToEnd(t *testing.T) {
	t.Run("one packet per call", func(t *testing.T) { testEndToEnd(t, false) })
	t.Run("batches", func(t *testing.T) { testEndToEnd(t, true) })
}

func testEndToEnd(t *testing.T, batch bool) {
	checkLeaks(t)
	l := startLabOpts(t, labOpts{idle: 30 * time.Second, batch: batch})
	up := l.waitEvent(t, "server", engine.KindTunnelUp, 5*time.Second)
	l.waitEvent(t, "client", engine.KindTunnelUp, 5*time.Second)
	index := up.Fields["index"].(uint32)
	if up.Fields["virtual"] != "198.19.0.2/24" {
		t.Fatalf("virtual address %v, want 198.19.0.2/24", up.Fields["virtual"])
	}
	// The client configured the assigned address and the profile's route.
	tr := l.client.String()
	for _, want := range []string{"ip tuntap add dev tn0 mode tun", "ip addr add 198.19.0.2/24 dev tn0", "ip route add 198.51.100.0/24 dev tn0"} {
		if !strings.Contains(tr, want) {
			t.Errorf("client transcript lacks %q:\n%s", want, tr)
		}
	}
	// The server: TUN with the gateway address, forwarding, source NAT.
	str := l.server.String()
	for _, want := range []string{"ip addr add 198.19.0.1/24 dev tns0", "sysctl -w net.ipv4.ip_forward=1", "nft add rule ip fieldcon-tunnel-tns0 postrouting ip saddr 198.19.0.0/24 oifname eth0 masquerade"} {
		if !strings.Contains(str, want) {
			t.Errorf("server transcript lacks %q:\n%s", want, str)
		}
	}

	// Client → destination: out of the server's TUN, unchanged.
	out := ipv4("198.19.0.2", "198.51.100.10", "hello")
	l.client.tun(t, "tn0").In <- out
	if got := recvPacket(t, l.server.tun(t, "tns0").Out); string(got) != string(out) {
		t.Fatalf("server TUN got %x, want %x", got, out)
	}
	// Destination → client: mapped back into the right tunnel by address.
	back := ipv4("198.51.100.10", "198.19.0.2", "world")
	l.server.tun(t, "tns0").In <- back
	if got := recvPacket(t, l.client.tun(t, "tn0").Out); string(got) != string(back) {
		t.Fatalf("client TUN got %x, want %x", got, back)
	}
	// A packet spoofing another source is dropped at the server.
	l.client.tun(t, "tn0").In <- ipv4("198.19.0.9", "198.51.100.10", "spoof")
	waitFor(t, func() bool { return l.srv.Drops()[DropSpoofed] == 1 })

	rows := l.srv.Tunnels()
	if len(rows) != 1 || rows[0].Index != index || rows[0].Virtual != "198.19.0.2" || rows[0].PacketsIn == 0 || rows[0].PacketsOut == 0 {
		t.Fatalf("tunnel index table: %+v", rows)
	}

	// The NAT table joins conntrack with the tunnel index.
	flow := engine.ConntrackFlow{Protocol: 6,
		OrigSrc: netip.MustParseAddrPort("198.19.0.2:40000"), OrigDst: netip.MustParseAddrPort("198.51.100.10:5201"),
		ReplySrc: netip.MustParseAddrPort("198.51.100.10:5201"), ReplyDst: netip.MustParseAddrPort("198.51.100.1:40000"),
		State: "ESTABLISHED", PacketsOrig: 3, BytesOrig: 180}
	l.server.SetConntrack([]engine.ConntrackFlow{flow})
	added := l.waitEvent(t, "server", engine.KindNATAdded, 3*time.Second)
	if added.Fields["index"] != index || added.Fields["translated"] != "198.51.100.1:40000" || added.Fields["protocol"] != "tcp" {
		t.Fatalf("nat.mapping.added: %v", added.Fields)
	}
	if m := l.srv.Mappings(); len(m) != 1 || m[0].TunnelIndex != index || m[0].PacketsOut != 3 {
		t.Fatalf("NAT table: %+v", m)
	}
	l.server.SetConntrack(nil)
	l.waitEvent(t, "server", engine.KindNATRemoved, 3*time.Second)

	// Stopping removes every rule, route, address and TUN.
	l.stop(t)
	if r := l.server.Rules(); len(r) != 0 {
		t.Errorf("nft rules left after stop: %v", r)
	}
	if _, err := l.server.LinkByName("tns0"); err == nil {
		t.Error("server TUN left after stop")
	}
	if routes, _ := l.client.Routes(); len(routes) != 0 {
		t.Errorf("client routes left after stop: %v", routes)
	}
	if _, err := l.client.LinkByName("tn0"); err == nil {
		t.Error("client TUN left after stop")
	}
}

func TestTunnelAgesOutAndFreesAddress(t *testing.T) {
	checkLeaks(t)
	l := startLab(t, 3*time.Second)
	l.waitEvent(t, "server", engine.KindTunnelUp, 5*time.Second)
	// Cut the path: the server's address goes, so nothing reaches it.
	l.server.DelAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("203.0.113.1/24")})
	aged := l.waitEvent(t, "server", engine.KindTunnelAged, 8*time.Second)
	if aged.Fields["virtual"] != "198.19.0.2" {
		t.Fatalf("aged %v", aged.Fields)
	}
	if n := len(l.srv.Tunnels()); n != 0 {
		t.Fatalf("%d tunnels left after aging", n)
	}
	l.srv.mu.RLock()
	_, bound := l.srv.pool.Lookup(netip.MustParseAddr("198.19.0.2"))
	l.srv.mu.RUnlock()
	if bound {
		t.Fatal("aged tunnel's address still bound")
	}
	// The client notices, and re-establishes once the path is back.
	l.waitEvent(t, "client", engine.KindTunnelDown, 10*time.Second)
	l.server.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("203.0.113.1/24")})
	l.waitEvent(t, "server", engine.KindTunnelUp, 10*time.Second)
}

func TestServerDropsJunkWithoutState(t *testing.T) {
	checkLeaks(t)
	l := startLab(t, 30*time.Second)
	l.waitEvent(t, "server", engine.KindTunnelUp, 5*time.Second)
	// An attacker: a second socket on the client's host.
	c, err := l.client.ListenUDP(netip.MustParseAddrPort("198.18.0.2:6666"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := netip.MustParseAddrPort("203.0.113.1:51820")
	stranger, _ := GenerateKey()
	sPub := mustServerPub(t, l)
	req, _, _ := Initiate(stranger, sPub, 1, time.Now(), nil)
	junk := [][]byte{
		{4, 1},                   // truncated
		make([]byte, RequestLen), // bad version
		append([]byte{1, 1, 0, 0}, make([]byte, RequestLen-4)...), // bad mac1
		req, // valid mac, unknown client key
		func() []byte { b := make([]byte, 40); putTransportHeader(b, TypeData, 12345, 0); return b }(), // unknown index
	}
	for _, b := range junk {
		c.WriteToUDPAddrPort(b, srv)
	}
	idx := l.srv.Tunnels()[0].Index
	forged := make([]byte, 60)
	putTransportHeader(forged, TypeData, idx, 7)
	c.WriteToUDPAddrPort(forged, srv) // right index, wrong tag
	waitFor(t, func() bool {
		d := l.srv.Drops()
		return d[DropTruncated] == 1 && d[DropMalformed] == 1 && d[DropBadMAC] == 1 && d[DropUnknownKey] == 1 && d[DropUnknownIndex] == 1 && d[DropBadAuth] == 1
	})
	if n := len(l.srv.Tunnels()); n != 1 {
		t.Fatalf("junk changed the tunnel table: %d tunnels", n)
	}
}

func mustServerPub(t *testing.T, l *lab) PublicKey {
	k, err := KeySource{File: l.srv.cfg.PrivateKeyFile}.Load()
	if err != nil {
		t.Fatal(err)
	}
	return PublicKey(k.Public)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met within 3s")
}

func TestTunnelRekeysKeepingIndexAndTraffic(t *testing.T) {
	t.Run("one packet per call", func(t *testing.T) { testRekeys(t, false) })
	t.Run("batches", func(t *testing.T) { testRekeys(t, true) })
}

func testRekeys(t *testing.T, batch bool) {
	checkLeaks(t)
	l := startLabOpts(t, labOpts{idle: 30 * time.Second, rekey: 500 * time.Millisecond, batch: batch})
	up := l.waitEvent(t, "server", engine.KindTunnelUp, 5*time.Second)
	waitFor(t, func() bool { return l.cli.Rekeys() >= 3 })
	for i := 0; i < 3; i++ {
		out := ipv4("198.19.0.2", "198.51.100.10", "after rekey")
		l.client.tun(t, "tn0").In <- out
		if got := recvPacket(t, l.server.tun(t, "tns0").Out); string(got) != string(out) {
			t.Fatalf("server TUN got %x", got)
		}
		back := ipv4("198.51.100.10", "198.19.0.2", "back")
		l.server.tun(t, "tns0").In <- back
		if got := recvPacket(t, l.client.tun(t, "tn0").Out); string(got) != string(back) {
			t.Fatalf("client TUN got %x", got)
		}
		time.Sleep(300 * time.Millisecond)
	}
	rows := l.srv.Tunnels()
	if len(rows) != 1 || rows[0].Index != up.Fields["index"].(uint32) {
		t.Fatalf("after rekeys the tunnel index table is %+v, want index %v", rows, up.Fields["index"])
	}
	for len(l.sub.C) > 0 {
		l.backlog = append(l.backlog, <-l.sub.C)
	}
	for _, e := range l.backlog {
		if e.Kind == engine.KindTunnelUp && e.Node == "server" || e.Kind == engine.KindTunnelDown {
			t.Fatalf("a rekey looked like a new tunnel: %s %v", e.Kind, e.Fields)
		}
	}
}

// TestServerRefusesRequestReplayedAfterRestart: a client's establishment
// request, captured as it left, replayed to the server after a restart
// (the server's memory is gone, its store is not) is refused: no response,
// counted as replayed, no tunnel; and the real client still connects.
func TestServerRefusesRequestReplayedAfterRestart(t *testing.T) {
	checkLeaks(t)
	tap := &udpTap{}
	l := startLabOpts(t, labOpts{idle: 30 * time.Second, tap: tap})
	l.waitEvent(t, "server", engine.KindTunnelUp, 5*time.Second)
	l.waitEvent(t, "client", engine.KindTunnelUp, 5*time.Second)
	req := tap.first(TypeRequest)
	if len(req) != RequestLen {
		t.Fatalf("captured no establishment request (%d bytes)", len(req))
	}
	// An attacker on the public side, with a socket of its own.
	attacker := newTunHost("attacker", l.net, "eth0")
	attacker.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("192.0.2.66/24")})
	c, err := attacker.ListenUDP(netip.MustParseAddrPort("192.0.2.66:6666"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// The client's datagrams are lost while the server restarts, so the
	// replay is the first request the new server sees.
	tap.hold(true)
	restarted := time.Now()
	if err := l.eng.RestartRole(context.Background(), "server", "tunnel_server"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return serving(l.eng, restarted) })
	for len(l.sub.C) > 0 {
		l.backlog = append(l.backlog, <-l.sub.C)
	}
	l.backlog = nil
	before := l.srv.Drops()[DropReplayed]
	if _, err := c.WriteToUDPAddrPort(req, netip.MustParseAddrPort("203.0.113.1:51820")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 1500)
	if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("the restarted server answered a replayed request with a %d-byte type %d message", n, buf[0])
	}
	if got := l.srv.Drops()[DropReplayed] - before; got != 1 {
		t.Fatalf("replayed request counted %d times as replayed, want 1 (drops %v)", got, l.srv.Drops())
	}
	if rows := l.srv.Tunnels(); len(rows) != 0 {
		t.Fatalf("a replayed request made a tunnel: %+v", rows)
	}
	dropped := l.waitEvent(t, "server", engine.KindTunnelHandshakeDropped, time.Second)
	if dropped.Fields["reason"] != DropReplayed || dropped.Fields["client"] != "client" || dropped.Fields["source"] != "192.0.2.66:6666" {
		t.Fatalf("%s %v", dropped.Kind, dropped.Fields)
	}

	// The real client's next request is newer than anything stored.
	tap.hold(false)
	up := l.waitEvent(t, "server", engine.KindTunnelUp, 10*time.Second)
	if ep, _ := up.Fields["endpoint"].(string); !strings.HasPrefix(ep, "198.18.0.2:") || up.Fields["virtual"] != "198.19.0.2/24" {
		t.Fatalf("after the replay: %s %v, want the client at 198.18.0.2 with 198.19.0.2/24", up.Kind, up.Fields)
	}
}

// serving says whether the server role finished starting after since.
func serving(e *engine.Engine, since time.Time) bool {
	snap := e.Snapshot()
	n := snap.Node("server")
	for _, r := range n.Roles {
		for _, s := range r.Steps {
			if r.Kind == "tunnel_server" && s.Name == "serving" && s.Done && s.At.After(since) {
				return true
			}
		}
	}
	return false
}
