package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
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
	if err := s.persist(&b); err != nil {
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
		{errors.New("something else"), DropMalformed},
	} {
		c := newCounters(DropTruncated, DropMalformed, DropBadMAC, DropBadAuth, DropReplayed)
		c.countError(tc.err)
		for name, n := range c.snapshot() {
			if want := map[bool]uint64{true: 1}[name == tc.want]; n != want {
				t.Errorf("%v: %s = %d, want %d", tc.err, name, n, want)
			}
		}
	}
}
