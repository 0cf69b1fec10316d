package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
	"github.com/flynn/noise"
)

// newBareServer is a server with its tables and socket but no loops, for
// driving handle directly.
func newBareServer(t testing.TB, allowed PublicKey) (*Server, *Responder) {
	t.Helper()
	h := fake.NewHost("server", fake.NewNetwork(), "eth0")
	h.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("203.0.113.1/24")})
	bus := engine.NewBus(0)
	env := &engine.Env{Node: "server", Host: engine.NewTracked(h, nil), Emit: bus.NodeEmitter("server"),
		Progress: engine.NewProgress("tunnel_server"), Log: slog.New(slog.DiscardHandler)}
	s := NewServer(profiles.TunnelServer{Clients: []profiles.TunnelPeer{{Name: "c", PublicKey: allowed.String()}}})
	pool, _ := NewPool(netip.MustParsePrefix("198.19.0.0/24"))
	s.env, s.pool = env, pool
	s.byIndex, s.byAddr, s.byKey = map[uint32]*tunnelEntry{}, map[netip.Addr]*tunnelEntry{}, map[PublicKey]*tunnelEntry{}
	s.lastTS, s.nat = map[PublicKey]uint64{}, map[string]engine.MappingRow{}
	s.loadAllowed()
	conn, err := h.ListenUDP(netip.MustParseAddrPort("0.0.0.0:51820"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.conn = conn
	sk, _ := GenerateKey()
	return s, NewResponder(sk, 0)
}

// FuzzServerHandle sends arbitrary datagrams to a server: none may create
// a tunnel or bind an address (no state for unauthenticated packets).
func FuzzServerHandle(f *testing.F) {
	ck, _ := GenerateKey()
	s, resp := newBareServer(f, PublicKey(ck.Public))
	stranger, _ := GenerateKey()
	req, _, _ := Initiate(stranger, PublicKey(resp.static.Public), 1, time.Now(), nil)
	f.Add(req)
	tr := make([]byte, 48)
	putTransportHeader(tr, TypeData, 1, 0)
	f.Add(tr)
	f.Add([]byte{2, 1, 0, 0})
	from := netip.MustParseAddrPort("203.0.113.9:4000")
	f.Fuzz(func(t *testing.T, b []byte) {
		s.handle(b, from, time.Now(), resp, nil)
		if len(s.byIndex) != 0 || len(s.pool.Bindings()) != 0 {
			t.Fatalf("datagram %x created state", b)
		}
	})
}

func TestServerDropsReplayedRequest(t *testing.T) {
	ck, _ := GenerateKey()
	s, resp := newBareServer(t, PublicKey(ck.Public))
	from := netip.MustParseAddrPort("203.0.113.9:4000")
	req, _, _ := Initiate(ck, PublicKey(resp.static.Public), 1, time.Now(), nil)
	s.handle(req, from, time.Now(), resp, nil)
	if len(s.byIndex) != 1 {
		t.Fatalf("valid request: %d tunnels", len(s.byIndex))
	}
	first := s.Tunnels()[0].Index
	// The very same datagram again (a captured request replayed) must not
	// replace the tunnel.
	s.handle(req, netip.MustParseAddrPort("203.0.113.66:5000"), time.Now(), resp, nil)
	if got := s.Tunnels(); len(got) != 1 || got[0].Index != first || got[0].Endpoint != from.String() {
		t.Fatalf("replayed request changed the table: %+v", got)
	}
	if s.Drops()[DropReplayed] != 1 {
		t.Fatalf("drops %v", s.Drops())
	}
}

// TestServerRestartKeepsAddresses: bindings are stored before the response
// promises them, and a restarted server gives a client its address back.
func TestServerRestartKeepsAddresses(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ck, _ := GenerateKey()
	other, _ := GenerateKey()
	s, resp := newBareServer(t, PublicKey(ck.Public))
	s.env.Store = st
	s.cfg.Clients = append(s.cfg.Clients, profiles.TunnelPeer{Name: "o", PublicKey: PublicKey(other.Public).String()})
	s.loadAllowed()
	req, _, _ := Initiate(ck, PublicKey(resp.static.Public), 1, time.Now(), nil)
	s.handle(req, netip.MustParseAddrPort("203.0.113.9:4000"), time.Now(), resp, nil)

	// A new server on the same store: the other client comes first, yet
	// the first client's address stays reserved for it.
	s2, _ := newBareServer(t, PublicKey(ck.Public))
	s2.env.Store, s2.cfg.Clients = st, s.cfg.Clients
	s2.loadAllowed()
	s2.restorePool()
	for _, k := range []struct {
		key  PublicKey
		want string
	}{{PublicKey(other.Public), "198.19.0.3"}, {PublicKey(ck.Public), "198.19.0.2"}} {
		b, err := s2.pool.Allocate(k.key, "", time.Now())
		if err != nil || b.Address.String() != k.want {
			t.Fatalf("after restart: %v %v, want %s", b, err, k.want)
		}
	}
}

// TestServerRestartKeepsIdleBindings: a binding restored from the store
// whose client was last heard long ago survives the first age tick after a
// restart, so its client can still reconnect and get it back.
func TestServerRestartKeepsIdleBindings(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ck, _ := GenerateKey()
	s, _ := newBareServer(t, PublicKey(ck.Public))
	s.env.Store = st
	old := netip.MustParseAddr("198.19.0.3")
	b := Binding{Address: old, Client: PublicKey{7}, Name: "gone", Seen: time.Now().Add(-24 * time.Hour)}
	if err := s.env.Store.Put(poolBucket, b.Address.String(), &b); err != nil {
		t.Fatal(err)
	}
	s.restorePool()
	s.age(time.Now())
	if _, bound := s.pool.Lookup(old); !bound {
		t.Fatalf("restored binding for %s freed by the first age tick", old)
	}
	nb, err := s.pool.Allocate(PublicKey(ck.Public), "c", time.Now())
	if err != nil || nb.Address != netip.MustParseAddr("198.19.0.2") {
		t.Fatalf("another key after restart: %+v, %v, want 198.19.0.2", nb, err)
	}
}

// TestServerCountsReplaysAfterRekey: once a tunnel has a previous session,
// a replayed message of the current one still counts as a replay, and a
// message of the previous one still opens.
func TestServerCountsReplaysAfterRekey(t *testing.T) {
	ck, _ := GenerateKey()
	s, _ := newBareServer(t, PublicKey(ck.Public))
	oldC, oldS, _ := pair(t)
	newC, newS, _ := pair(t)
	te := &tunnelEntry{index: newS.Local, key: PublicKey(ck.Public), name: "c", addr: netip.MustParseAddr("198.19.0.2"),
		endpoint: netip.MustParseAddrPort("203.0.113.9:4000"), lastRecv: time.Now()}
	te.sess.Store(newS)
	te.prev.Store(oldS)
	s.byIndex[te.index], s.byAddr[te.addr], s.byKey[te.key] = te, te, te
	from := netip.MustParseAddrPort("203.0.113.9:4000")

	msg := newC.Seal(nil, TypeHeartbeat, nil)
	s.handle(msg, from, time.Now(), nil, nil)
	s.handle(msg, from, time.Now(), nil, nil)
	s.handle(oldC.Seal(nil, TypeHeartbeat, nil), from, time.Now(), nil, nil)
	d := s.Drops()
	if d[DropReplayed] != 1 || d[DropBadAuth] != 0 {
		t.Fatalf("drops %v, want one replay and no bad_auth", d)
	}
	if got := te.pktsIn.Load(); got != 2 {
		t.Fatalf("%d messages opened, want 2 (current and previous session)", got)
	}
}

func TestNATGatewayRules(t *testing.T) {
	h := fake.NewNAT(fake.NewHost("nat", nil, "eth0", "eth1"))
	bus := engine.NewBus(0)
	tr := engine.NewTracked(h, nil)
	env := &engine.Env{Node: "nat", Host: tr, Emit: bus.NodeEmitter("nat"), Progress: engine.NewProgress("nat_gateway"), Log: slog.New(slog.DiscardHandler)}
	g := NewNATGateway(profiles.NATGateway{Inside: "eth0", Outside: "eth1", Source: profiles.Prefix{Prefix: netip.MustParsePrefix("198.18.0.0/24")},
		AllowUDP: []int{51820}, UDPTimeout: profiles.Duration{Duration: 5 * time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx, env) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []string{
		"sysctl -w net.ipv4.ip_forward=1",
		"nft add rule ip fieldcon-natgw postrouting ip saddr 198.18.0.0/24 oifname eth1 masquerade",
		"nft add rule ip fieldcon-natgw-filter forward ct state established,related accept",
		"nft add rule ip fieldcon-natgw-filter forward iifname eth0 oifname eth1 udp dport 51820 accept",
		"nft add rule ip fieldcon-natgw-filter forward iifname eth0 oifname eth1 drop",
		"sysctl -w net.netfilter.nf_conntrack_udp_timeout=5",
		"sysctl -w net.netfilter.nf_conntrack_udp_timeout_stream=5",
	}
	if got := strings.Join(h.Transcript(), "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("transcript:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if err := tr.Undo(); err != nil {
		t.Fatal(err)
	}
	if r := h.Rules(); len(r) != 0 {
		t.Fatalf("rules after undo: %v", r)
	}
}

// TestCountError: both roles file a failed message under the counter its
// error names, wrapped or not.
func TestCountError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{ErrTruncated, DropTruncated},
		{ErrBadMAC, DropBadMAC},
		{fmt.Errorf("%w: response for index 1", ErrBadAuth), DropBadAuth},
		{ErrReplayed, DropReplayed},
		{ErrRateLimited, DropRateLimited},
		{errors.New("something else"), DropMalformed},
	} {
		c := newCounters(DropTruncated, DropMalformed, DropBadMAC, DropBadAuth, DropReplayed, DropRateLimited)
		c.countError(tc.err)
		for name, n := range c.snapshot() {
			if want := map[bool]uint64{true: 1}[name == tc.want]; n != want {
				t.Errorf("%v: %s = %d, want %d", tc.err, name, n, want)
			}
		}
	}
}

// TestServerLimitsHandshakesPerSource: a source holding a valid cookie (it
// receives at its address, so the cookie does not stop it) still gets only
// its rate of handshakes; the rest are dropped before any Diffie-Hellman,
// counted and reported in rate-limited events, while another source's
// handshake completes.
func TestServerLimitsHandshakesPerSource(t *testing.T) {
	ck, _ := GenerateKey()
	other, _ := GenerateKey()
	s, bare := newBareServer(t, PublicKey(ck.Public))
	s.cfg.Clients = append(s.cfg.Clients, profiles.TunnelPeer{Name: "o", PublicKey: PublicKey(other.Public).String()})
	s.loadAllowed()
	bus := engine.NewBus(0)
	sub := bus.Subscribe(1000, false)
	s.env.Emit = bus.NodeEmitter("server")
	const rate, burst = 5, 50
	resp := NewResponder(bare.static, 1).WithSourceRate(rate)
	serverPub := PublicKey(resp.static.Public)
	now := time.Now()
	ts := now
	request := func(key noise.DHKey, cookie []byte) ([]byte, *Initiation) {
		ts = ts.Add(time.Millisecond)
		req, in, err := Initiate(key, serverPub, uint32(ts.UnixNano()), ts, cookie)
		if err != nil {
			t.Fatal(err)
		}
		return req, in
	}
	// A request from elsewhere puts the server over its global rate (1/s):
	// from now on, within this second, every request needs a cookie.
	stranger, _ := GenerateKey()
	warm, _ := request(stranger, nil)
	resp.Accept(warm, netip.MustParseAddrPort("198.51.100.200:1"), now)
	// cookieFor gets a source's cookie as a client does: a request without
	// one, answered with a cookie reply.
	cookieFor := func(key noise.DHKey, src netip.AddrPort) []byte {
		req, in := request(key, nil)
		_, reply, err := resp.Accept(req, src, now)
		if !errors.Is(err, ErrNoCookie) {
			t.Fatalf("request without cookie under load: %v, want ErrNoCookie", err)
		}
		cookie, err := in.OpenCookie(reply)
		if err != nil {
			t.Fatal(err)
		}
		return cookie
	}
	srcA := netip.MustParseAddrPort("203.0.113.9:4000")
	cookieA := cookieFor(ck, srcA)
	flood := func(at time.Time) {
		for range burst {
			req, _ := request(ck, cookieA)
			s.handle(req, srcA, at, resp, nil)
		}
	}
	rekeys := func() uint64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if te := s.byKey[PublicKey(ck.Public)]; te != nil {
			return te.rekeys.Load()
		}
		return 0
	}
	flood(now)
	// One tunnel and rate-1 rekeys: the source's bucket holds rate.
	if got, limited := rekeys(), s.Drops()[DropRateLimited]; got != rate-1 || limited != burst-rate {
		t.Fatalf("a burst of %d valid-cookie requests from one source: 1 tunnel and %d rekeys, %d rate_limited; want %d rekeys, %d rate_limited",
			burst, got, limited, rate-1, burst-rate)
	}

	// Another source meanwhile: its handshake completes.
	srcB := netip.MustParseAddrPort("203.0.113.77:5000")
	req, _ := request(other, cookieFor(other, srcB))
	s.handle(req, srcB, now, resp, nil)
	s.mu.RLock()
	te := s.byKey[PublicKey(other.Public)]
	s.mu.RUnlock()
	if te == nil || te.peer() != srcB {
		t.Fatalf("the other source's handshake did not complete: drops %v", s.Drops())
	}

	// A second later the bucket is full again: rate more, no more.
	flood(now.Add(time.Second))
	if got, limited := rekeys(), s.Drops()[DropRateLimited]; got != 2*rate-1 || limited != 2*(burst-rate) {
		t.Fatalf("a second burst a second later: %d rekeys, %d rate_limited; want %d, %d", got, limited, 2*rate-1, 2*(burst-rate))
	}

	// Events say so, at most maxDropEvents a second; the ones left out are
	// counted in the next.
	var events int
	var reported uint64
	for len(sub.C) > 0 {
		e := <-sub.C
		if e.Kind != engine.KindTunnelHandshakeDropped {
			continue
		}
		events++
		if e.Fields["reason"] != DropRateLimited || e.Fields["source"] != srcA.String() {
			t.Fatalf("event %v", e.Fields)
		}
		reported++
		if n, ok := e.Fields["suppressed"].(uint64); ok {
			reported += n
		}
	}
	if events == 0 || events > 2*maxDropEvents {
		t.Fatalf("%d %s events for two bursts a second apart, want 1 to %d", events, engine.KindTunnelHandshakeDropped, 2*maxDropEvents)
	}
	// The second burst's suppressed drops are reported with the next event.
	if want := uint64(2*(burst-rate)) - uint64(burst-rate-maxDropEvents); reported != want {
		t.Fatalf("events report %d dropped handshakes, want %d", reported, want)
	}
}

// diskAtResponse is a server socket that, as each establishment response
// leaves, copies the store's file as it is on disk then: what a kill -9
// right after the send would leave behind.
type diskAtResponse struct {
	engine.UDPConn
	t      *testing.T
	db     string
	copies []string
}

func (c *diskAtResponse) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if len(b) > 0 && b[0] == TypeResponse {
		raw, err := os.ReadFile(c.db)
		if err != nil {
			c.t.Error(err)
		}
		path := filepath.Join(c.t.TempDir(), "at-response.db")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			c.t.Error(err)
		}
		c.copies = append(c.copies, path)
	}
	return c.UDPConn.WriteToUDPAddrPort(b, to)
}

// TestServerStoresTimestampBeforeResponse: the store file holds a request's
// timestamp by the time its response leaves, for a new tunnel and for a
// rekey, so a crash right after the send cannot forget it.
func TestServerStoresTimestampBeforeResponse(t *testing.T) {
	db := filepath.Join(t.TempDir(), "server.db")
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ck, _ := GenerateKey()
	s, resp := newBareServer(t, PublicKey(ck.Public))
	s.env.Store = st
	conn := &diskAtResponse{UDPConn: s.conn, t: t, db: db}
	s.conn = conn
	from := netip.MustParseAddrPort("203.0.113.9:4000")
	first := time.Now()
	var want []uint64
	for i, at := range []time.Time{first, first.Add(time.Second)} {
		req, _, _ := Initiate(ck, PublicKey(resp.static.Public), uint32(i+1), at, nil)
		s.handle(req, from, at, resp, nil)
		want = append(want, uint64(at.UnixNano()))
	}
	if len(conn.copies) != 2 {
		t.Fatalf("%d responses sent, want 2 (new tunnel, rekey)", len(conn.copies))
	}
	for i, path := range conn.copies {
		c, err := store.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var ts uint64
		err = c.Get(handshakeBucket, PublicKey(ck.Public).String(), &ts)
		c.Close()
		if err != nil || ts != want[i] {
			t.Errorf("response %d: the store on disk holds timestamp %d (%v), want %d", i+1, ts, err, want[i])
		}
	}
}

// TestServerRestoresTimestampsPastDamagedRow: a damaged row of the
// handshake bucket costs its own key's guard, not the others'.
func TestServerRestoresTimestampsPastDamagedRow(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ck, _ := GenerateKey()
	s, _ := newBareServer(t, PublicKey(ck.Public))
	s.env.Store = st
	for k, v := range map[string]any{"AAAA": uint64(1), PublicKey{9}.String(): "not a number", PublicKey(ck.Public).String(): uint64(42)} {
		if err := st.Put(handshakeBucket, k, v); err != nil {
			t.Fatal(err)
		}
	}
	s.restoreTimestamps()
	if got := s.lastTS[PublicKey(ck.Public)]; got != 42 || len(s.lastTS) != 1 {
		t.Fatalf("restored %v, want only %s: 42", s.lastTS, PublicKey(ck.Public))
	}
}
