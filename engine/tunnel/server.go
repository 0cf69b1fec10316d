package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// Defaults (docs/profiles.md).
const (
	DefaultPort          = 51820
	DefaultMTU           = 1420
	DefaultHeartbeat     = 15 * time.Second // below the 30 s UDP timeout common NATs use
	DefaultIdleTimeout   = 60 * time.Second
	DefaultHandshakeRate = 100
	// DefaultSourceHandshakeRate is WireGuard's per-source limit (its
	// ratelimiter.c: 20 initiations per second).
	DefaultSourceHandshakeRate = 20
)

// Buckets of the server's store.
const (
	poolBucket = "tunnel.pool"
	// handshakeBucket holds the newest accepted request timestamp per
	// client key: the replay guard, which must outlive a restart.
	handshakeBucket = "tunnel.handshake"
)

// Drop counters (docs/protocols/tunnel.md "Receiving rules").
const (
	DropTruncated    = "truncated"
	DropMalformed    = "malformed"
	DropBadMAC       = "bad_mac"
	DropBadAuth      = "bad_auth"
	DropUnknownKey   = "unknown_key"
	DropReplayed     = "replayed"
	DropUnknownIndex = "unknown_index"
	DropSpoofed      = "spoofed_source"
	DropNoTunnel     = "no_tunnel"
	DropRateLimited  = "rate_limited"
	CookieSent       = "cookie_sent"
)

// maxDropEvents is how many tunnel.handshake.dropped events the server
// emits per second; the drops left out are counted and reported with the
// next one (the drop counters count every one).
const maxDropEvents = 5

// counters is a fixed set of named atomic counters.
type counters struct {
	m map[string]*atomic.Uint64
}

func newCounters(names ...string) counters {
	c := counters{m: map[string]*atomic.Uint64{}}
	for _, n := range names {
		c.m[n] = new(atomic.Uint64)
	}
	return c
}

func (c counters) inc(name string) { c.m[name].Add(1) }

// countError counts a message dropped because decoding or opening it failed
// with err, under the counter its error names.
func (c counters) countError(err error) {
	switch {
	case errors.Is(err, ErrTruncated):
		c.inc(DropTruncated)
	case errors.Is(err, ErrBadMAC):
		c.inc(DropBadMAC)
	case errors.Is(err, ErrBadAuth):
		c.inc(DropBadAuth)
	case errors.Is(err, ErrReplayed):
		c.inc(DropReplayed)
	case errors.Is(err, ErrRateLimited):
		c.inc(DropRateLimited)
	default:
		c.inc(DropMalformed)
	}
}

func (c counters) snapshot() map[string]uint64 {
	out := make(map[string]uint64, len(c.m))
	for k, v := range c.m {
		out[k] = v.Load()
	}
	return out
}

// Server is the tunnel_server role.
type Server struct {
	cfg profiles.TunnelServer

	drops counters
	// The rate of tunnel.handshake.dropped events; only the UDP loop
	// touches them.
	dropWindow     time.Time
	dropEvents     int
	dropSuppressed uint64

	mu      sync.RWMutex
	byIndex map[uint32]*tunnelEntry
	byAddr  map[netip.Addr]*tunnelEntry
	byKey   map[PublicKey]*tunnelEntry
	lastTS  map[PublicKey]uint64 // greatest request timestamp per authenticated key
	allowed map[PublicKey]string
	// reloaded is when the allowed keys were last read; only the UDP loop
	// touches it.
	reloaded time.Time
	pool     *Pool
	nat      map[string]engine.MappingRow // NAT table, by flow key

	// run-time handles, set in Run
	env  *engine.Env
	conn engine.UDPConn
	tun  engine.TUN
}

// tunnelEntry is one row of the tunnel index table.
type tunnelEntry struct {
	index uint32
	key   PublicKey
	name  string
	addr  netip.Addr
	// sess is the current session; prev the one a rekey replaced, which
	// still opens what the client sent before it switched.
	sess, prev atomic.Pointer[Session]
	rekeys     atomic.Uint64

	mu       sync.Mutex
	endpoint netip.AddrPort
	maxCtr   uint64
	lastRecv time.Time

	pktsIn, pktsOut, bytesIn, bytesOut atomic.Uint64
}

func (t *tunnelEntry) peer() netip.AddrPort {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.endpoint
}

// NewServer builds the role from its profile section.
func NewServer(cfg profiles.TunnelServer) *Server {
	return &Server{cfg: cfg, drops: newCounters(DropTruncated, DropMalformed, DropBadMAC, DropBadAuth, DropUnknownKey,
		DropReplayed, DropUnknownIndex, DropSpoofed, DropNoTunnel, DropRateLimited, CookieSent)}
}

// Kind implements engine.Role.
func (s *Server) Kind() string { return "tunnel_server" }

func (s *Server) tunName() string {
	if s.cfg.TUN != "" {
		return s.cfg.TUN
	}
	return "tns0"
}

func (s *Server) mtu() int {
	if s.cfg.MTU != 0 {
		return s.cfg.MTU
	}
	return DefaultMTU
}

// Drops returns the drop counters (forged, replayed, truncated, ...).
func (s *Server) Drops() map[string]uint64 { return s.drops.snapshot() }

// Run implements engine.Role.
func (s *Server) Run(ctx context.Context, env *engine.Env) error {
	s.env = env
	env.Progress.Plan("key", "tun", "nat", "listen", "serving")
	key, err := KeySource{File: s.cfg.PrivateKeyFile, Env: s.cfg.PrivateKeyEnv, Generate: s.cfg.GenerateKey}.Load()
	if err != nil {
		return fmt.Errorf("tunnel server: %w", err)
	}
	pool, err := NewPool(s.cfg.Pool.Prefix)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pool, s.byIndex, s.byAddr, s.byKey = pool, map[uint32]*tunnelEntry{}, map[netip.Addr]*tunnelEntry{}, map[PublicKey]*tunnelEntry{}
	s.lastTS, s.nat = map[PublicKey]uint64{}, map[string]engine.MappingRow{}
	s.mu.Unlock()
	s.loadAllowed()
	s.restorePool()
	s.restoreTimestamps()
	env.Progress.Done("key")

	if err := s.setupTUN(env, pool); err != nil {
		return err
	}
	env.Progress.Done("tun")
	natHost, err := s.setupNAT(env, pool)
	if err != nil {
		return err
	}
	env.Progress.Done("nat")
	conn, err := listenRetry(ctx, env.Host, s.cfg.Listen.AddrPort)
	if err != nil && ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tunnel server: listen on %s: %w", s.cfg.Listen, err)
	}
	s.conn = conn
	growBuffers(conn)
	env.Progress.Done("listen")
	env.Progress.Done("serving")

	rate := s.cfg.HandshakeRate
	if rate == 0 {
		rate = DefaultHandshakeRate
	}
	resp := NewResponder(key, rate).WithSourceRate(s.cfg.SourceHandshakeRate)
	// A loop that fails ends the others: a server that cannot read its
	// socket or TUN must say so, not sit there aging tunnels.
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- s.udpLoop(lctx, resp); stop() }()
	go func() { defer wg.Done(); errc <- s.tunLoop(lctx); stop() }()
	s.housekeeping(lctx, natHost)
	s.closeAll()
	s.unpublishIndex()
	conn.Close()
	s.tun.Close()
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	// Stopping is the normal end of a server, whether cancelled or timed out.
	return nil
}

func (s *Server) setupTUN(env *engine.Env, pool *Pool) error {
	tun, err := env.Host.CreateTUN(s.tunName(), s.mtu())
	if err != nil {
		return fmt.Errorf("tunnel server: %w", err)
	}
	s.tun = tun
	gw := netip.PrefixFrom(pool.Gateway(), pool.Prefix().Bits())
	if err := env.AddAddress(tun.Name(), engine.Address{Prefix: gw}, "tunnel"); err != nil {
		return fmt.Errorf("tunnel server: address %s on %s: %w", gw, tun.Name(), err)
	}
	quietIPv6(env, tun.Name())
	if err := env.Host.SetLinkUp(tun.Name(), true); err != nil {
		return fmt.Errorf("tunnel server: bring %s up: %w", tun.Name(), err)
	}
	if err := env.Host.SetSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("tunnel server: enable forwarding: %w", err)
	}
	return nil
}

// setupNAT programs source NAT for the pool out of the egress interface
// and turns on conntrack accounting so the NAT table has counters.
func (s *Server) setupNAT(env *engine.Env, pool *Pool) (engine.NATHost, error) {
	nh, ok := env.Host.Host.(engine.NATHost)
	if !ok {
		if s.cfg.Egress != "" {
			return nil, errors.New("tunnel server: this host cannot program NAT (no nftables support in its driver); remove egress or run on Linux")
		}
		return nil, nil
	}
	if s.cfg.Egress != "" {
		remove, err := nh.AddMasquerade(engine.Masquerade{Name: "tunnel-" + s.tunName(), Source: pool.Prefix(), OutIface: s.cfg.Egress})
		if err != nil {
			return nil, fmt.Errorf("tunnel server: source NAT for %s out of %s: %w", pool.Prefix(), s.cfg.Egress, err)
		}
		env.Host.OnUndo("nft delete table ip fieldcon-tunnel-"+s.tunName(), remove)
	}
	// Counters in the NAT table need accounting; without it they stay 0.
	// Set after the rule, which loads conntrack and so creates the sysctl.
	if err := env.Host.SetSysctl("net/netfilter/nf_conntrack_acct", "1"); err != nil {
		env.Log.Warn("conntrack accounting unavailable; NAT table counters stay 0", "err", err)
	}
	return nh, nil
}

// loadAllowed reads the allowed client keys; files are read again when an
// unknown key shows up (a lab client writes its key after the server starts).
func (s *Server) loadAllowed() {
	allowed := map[PublicKey]string{}
	for _, c := range s.cfg.Clients {
		var k PublicKey
		var err error
		if c.PublicKey != "" {
			k, err = ParsePublicKey(c.PublicKey)
		} else {
			k, err = ReadPublicKeyFile(c.PublicKeyFile)
		}
		if err != nil {
			continue // an absent lab key file is normal until the client starts
		}
		allowed[k] = c.Name
	}
	s.mu.Lock()
	s.allowed = allowed
	s.mu.Unlock()
}

func (s *Server) clientName(k PublicKey) (string, bool) {
	s.mu.RLock()
	name, ok := s.allowed[k]
	s.mu.RUnlock()
	// Unknown keys re-read the key files, at most once a second: a flood
	// of requests from strangers must not become a flood of file reads.
	if now := time.Now(); !ok && now.Sub(s.reloaded) >= time.Second {
		s.reloaded = now
		s.loadAllowed()
		s.mu.RLock()
		name, ok = s.allowed[k]
		s.mu.RUnlock()
	}
	return name, ok
}

func (s *Server) restorePool() {
	if s.env.Store == nil {
		return
	}
	err := s.env.Store.ForEach(poolBucket, func(_ string, v []byte) error {
		var b Binding
		if err := json.Unmarshal(v, &b); err != nil {
			return err
		}
		// The stored Seen is when the client was last heard by the previous
		// run; counting from it would let the first age tick free every
		// binding older than the idle timeout before its client could
		// reconnect. A restored binding gets one idle period from now.
		b.Seen = time.Now()
		s.pool.Restore(b)
		return nil
	})
	if err != nil {
		s.env.Log.Warn("tunnel pool not restored", "err", err)
	}
}

// restoreTimestamps reads the newest request timestamp of every client key
// the previous runs accepted: without them, a request captured before the
// restart would be accepted again.
func (s *Server) restoreTimestamps() {
	if s.env.Store == nil {
		return
	}
	err := s.env.Store.ForEach(handshakeBucket, func(k string, v []byte) error {
		// A damaged row loses the guard of one key, not of the others.
		key, err := ParsePublicKey(k)
		var ts uint64
		if err == nil {
			err = json.Unmarshal(v, &ts)
		}
		if err != nil {
			s.env.Log.Warn("tunnel handshake timestamp not restored; requests of this key captured before the restart may be accepted", "bucket", handshakeBucket, "key", k, "err", err)
			return nil
		}
		s.mu.Lock()
		s.lastTS[key] = max(s.lastTS[key], ts)
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		s.env.Log.Warn("tunnel handshake timestamps not restored", "err", err)
	}
}

// persistHandshake stores an accepted request's timestamp, and the binding
// of a new tunnel (nil on a rekey), in one transaction: one commit, whose
// fsync bbolt does before it returns, per accepted handshake.
func (s *Server) persistHandshake(key PublicKey, ts uint64, b *Binding) error {
	if s.env.Store == nil {
		return nil
	}
	return s.env.Store.Batch(func(tx *store.Tx) error {
		if b != nil {
			if err := tx.Put(poolBucket, b.Address.String(), b); err != nil {
				return err
			}
		}
		return tx.Put(handshakeBucket, key.String(), ts)
	})
}

func (s *Server) unpersist(a netip.Addr) {
	if s.env.Store != nil {
		if err := s.env.Store.Delete(poolBucket, a.String()); err != nil {
			s.env.Log.Warn("tunnel pool entry not deleted", "address", a, "err", err)
		}
	}
}

func (s *Server) udpLoop(ctx context.Context, resp *Responder) error {
	r, tw := newUDPReader(s.conn), newTUNWriter(s.tun)
	for {
		n, err := r.read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("tunnel server: read: %w", err)
		}
		now := time.Now()
		for i := range n {
			b, from := r.datagram(i)
			s.handle(b, from, now, resp, tw)
		}
		tw.flush()
		if tw.err != nil {
			s.env.Log.Debug("tun write failed", "tun", s.tunName(), "err", tw.err)
			tw.err = nil
		}
	}
}

// handle processes one datagram. Data for the TUN is queued on tw (nil:
// dropped, for tests that drive handle without a TUN).
func (s *Server) handle(b []byte, from netip.AddrPort, now time.Time, resp *Responder, tw *tunWriter) {
	typ, err := MessageType(b)
	if err != nil {
		s.drops.countError(err)
		return
	}
	switch typ {
	case TypeRequest:
		s.handleRequest(b, from, now, resp)
	case TypeData, TypeHeartbeat, TypeClose:
		s.handleTransport(b, from, now, tw)
	default:
		s.drops.inc(DropMalformed) // responses and cookies go to clients
	}
}

func (s *Server) handleRequest(b []byte, from netip.AddrPort, now time.Time, resp *Responder) {
	acc, cookie, err := resp.Accept(b, from, now)
	if cookie != nil {
		s.drops.inc(CookieSent)
		s.conn.WriteToUDPAddrPort(cookie, from)
		return
	}
	if errors.Is(err, ErrRateLimited) {
		s.handshakeDropped(DropRateLimited, from, "", now)
		return
	}
	if err != nil {
		s.drops.countError(err)
		return
	}
	name, ok := s.clientName(acc.ClientKey)
	if !ok {
		s.drops.inc(DropUnknownKey)
		return
	}
	ts := acc.Payload.Timestamp
	s.mu.Lock()
	if ts <= s.lastTS[acc.ClientKey] {
		s.mu.Unlock()
		s.handshakeDropped(DropReplayed, from, name, now)
		return
	}
	s.lastTS[acc.ClientKey] = ts
	if old := s.byKey[acc.ClientKey]; old != nil {
		s.mu.Unlock()
		// The timestamp is stored before the response goes out, so that
		// this request, captured, is refused after a restart too.
		if err := s.persistHandshake(acc.ClientKey, ts, nil); err != nil {
			s.env.Error(fmt.Errorf("tunnel server: client %s: store its handshake: %w", name, err))
			return
		}
		s.rekey(old, acc, from, now)
		return
	}
	binding, err := s.pool.Allocate(acc.ClientKey, name, now)
	if err != nil {
		s.mu.Unlock()
		s.env.Error(fmt.Errorf("tunnel server: client %s: %w; widen the pool or wait for aging", name, err))
		return
	}
	index := s.newIndexLocked()
	binding.Index = index
	s.mu.Unlock()
	// The address is promised by the response: store it first (DESIGN.md),
	// with the timestamp.
	if err := s.persistHandshake(acc.ClientKey, ts, binding); err != nil {
		s.env.Error(fmt.Errorf("tunnel server: client %s: persist %s: %w", name, binding.Address, err))
		return
	}
	asg := s.assignment(binding.Address)
	msg, sess, err := acc.Respond(index, asg)
	if err != nil {
		s.env.Error(err)
		return
	}
	t := &tunnelEntry{index: index, key: acc.ClientKey, name: name, addr: binding.Address, endpoint: from, lastRecv: now}
	t.sess.Store(sess)
	s.mu.Lock()
	s.byIndex[index], s.byAddr[t.addr], s.byKey[t.key] = t, t, t
	s.mu.Unlock()
	s.conn.WriteToUDPAddrPort(msg, from)
	s.env.Emit.Emit(engine.KindTunnelUp, engine.Fields{"index": index, "client": name, "endpoint": from.String(), "virtual": asg.Address.String()})
}

// handshakeDropped counts an establishment request refused after its mac1
// verified (reason: a drop counter) and reports it in a
// tunnel.handshake.dropped event, at most maxDropEvents a second: a flood
// must not become a flood of events. client is the key's name once the
// handshake authenticated it.
func (s *Server) handshakeDropped(reason string, from netip.AddrPort, client string, now time.Time) {
	s.drops.inc(reason)
	if d := now.Sub(s.dropWindow); d >= time.Second || d < 0 {
		s.dropWindow, s.dropEvents = now, 0
	}
	if s.dropEvents >= maxDropEvents {
		s.dropSuppressed++
		return
	}
	s.dropEvents++
	f := engine.Fields{"reason": reason, "source": from.String()}
	if client != "" {
		f["client"] = client
	}
	if s.dropSuppressed > 0 {
		f["suppressed"] = s.dropSuppressed
		s.dropSuppressed = 0
	}
	s.env.Emit.Emit(engine.KindTunnelHandshakeDropped, f)
}

func (s *Server) assignment(a netip.Addr) Assignment {
	return Assignment{
		Address: netip.PrefixFrom(a, s.pool.Prefix().Bits()), Gateway: s.pool.Gateway(),
		Heartbeat: uint16(s.cfg.Heartbeat.Seconds()), Idle: uint16(s.idle().Seconds()), MTU: uint16(s.mtu()),
	}
}

// rekey answers a new establishment request of a client that has a tunnel
// (its periodic rekey, or a restart): the tunnel keeps its index and
// address and takes the new keys; the previous session still opens what
// the client sent before it saw the response.
func (s *Server) rekey(t *tunnelEntry, acc *Accepted, from netip.AddrPort, now time.Time) {
	msg, sess, err := acc.Respond(t.index, s.assignment(t.addr))
	if err != nil {
		s.env.Error(err)
		return
	}
	t.mu.Lock()
	t.prev.Store(t.sess.Swap(sess))
	t.maxCtr, t.lastRecv = 0, now
	prev := t.endpoint
	t.endpoint = from
	t.mu.Unlock()
	t.rekeys.Add(1)
	s.conn.WriteToUDPAddrPort(msg, from)
	if prev != from {
		s.env.Emit.Emit(engine.KindTunnelRoamed, engine.Fields{"index": t.index, "client": t.name, "from": prev.String(), "to": from.String()})
	}
}

// closeAll tells every client the server is going away, so they reconnect
// without waiting for silence.
func (s *Server) closeAll() {
	s.mu.RLock()
	list := make([]*tunnelEntry, 0, len(s.byIndex))
	for _, t := range s.byIndex {
		list = append(list, t)
	}
	s.mu.RUnlock()
	for _, t := range list {
		s.send(t, TypeClose, nil)
	}
}

func (s *Server) idle() time.Duration { return s.cfg.IdleTimeout.Or(DefaultIdleTimeout) }

// newIndexLocked picks a random non-zero index no tunnel uses.
func (s *Server) newIndexLocked() uint32 {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		i := binary.BigEndian.Uint32(b[:])
		if _, used := s.byIndex[i]; i != 0 && !used {
			return i
		}
	}
}

func (s *Server) removeLocked(t *tunnelEntry) {
	delete(s.byIndex, t.index)
	if s.byAddr[t.addr] == t {
		delete(s.byAddr, t.addr)
	}
	if s.byKey[t.key] == t {
		delete(s.byKey, t.key)
	}
}

func (s *Server) handleTransport(b []byte, from netip.AddrPort, now time.Time, tw *tunWriter) {
	tr, err := ParseTransport(b)
	if err != nil {
		s.drops.countError(err)
		return
	}
	s.mu.RLock()
	t := s.byIndex[tr.Receiver]
	s.mu.RUnlock()
	if t == nil {
		s.drops.inc(DropUnknownIndex)
		return
	}
	// Open into the buffer the TUN write takes (not in place: a failed
	// Open wipes its output, and the previous session must still see the
	// ciphertext).
	var out []byte
	if tw != nil {
		out = tw.next()
	}
	pt, err := t.sess.Load().Open(out, tr)
	current := err == nil
	// Only a message the current keys cannot authenticate may be the
	// previous session's; any other failure (a replay above all) is this
	// session's verdict, which the previous keys' ErrBadAuth must not hide.
	if errors.Is(err, ErrBadAuth) {
		if p := t.prev.Load(); p != nil {
			pt, err = p.Open(out, tr)
		}
	}
	if err != nil {
		s.drops.countError(err)
		return
	}
	if current {
		s.authenticated(t, tr.Counter, from, now)
	}
	t.pktsIn.Add(1)
	t.bytesIn.Add(uint64(len(pt)))
	switch tr.Type {
	case TypeData:
		if src, ok := ipv4Src(pt); !ok || src != t.addr {
			// A client may only send from the address it was given; no
			// spoofing other tunnels' (or anybody's) addresses.
			s.drops.inc(DropSpoofed)
			return
		}
		if tw != nil {
			tw.push(pt)
		}
	case TypeHeartbeat:
		s.send(t, TypeHeartbeat, nil)
	case TypeClose:
		s.drop(t, engine.KindTunnelDown, "closed by client")
	}
}

// authenticated records a verified message: liveness, and roaming when it
// is the newest message and came from another endpoint.
func (s *Server) authenticated(t *tunnelEntry, ctr uint64, from netip.AddrPort, now time.Time) {
	t.mu.Lock()
	t.lastRecv = now
	roamed := false
	var prev netip.AddrPort
	if ctr >= t.maxCtr {
		t.maxCtr = ctr
		if from != t.endpoint {
			prev, t.endpoint, roamed = t.endpoint, from, true
		}
	}
	t.mu.Unlock()
	if roamed {
		s.env.Emit.Emit(engine.KindTunnelRoamed, engine.Fields{"index": t.index, "client": t.name, "from": prev.String(), "to": from.String()})
	}
}

func (s *Server) send(t *tunnelEntry, typ byte, pt []byte) {
	msg := t.sess.Load().Seal(make([]byte, 0, len(pt)+TransportOverhead), typ, pt)
	s.conn.WriteToUDPAddrPort(msg, t.peer())
	t.pktsOut.Add(1)
	t.bytesOut.Add(uint64(len(pt)))
}

// drop removes a tunnel and frees its address.
func (s *Server) drop(t *tunnelEntry, kind, reason string) {
	s.mu.Lock()
	if s.byIndex[t.index] != t {
		s.mu.Unlock()
		return
	}
	s.removeLocked(t)
	s.pool.Free(t.addr)
	s.mu.Unlock()
	s.unpersist(t.addr)
	s.env.Emit.Emit(kind, engine.Fields{"index": t.index, "client": t.name, "virtual": t.addr.String(), "endpoint": t.peer().String(), "reason": reason})
}

// tunLoop carries packets from the TUN into the tunnels of their
// destinations: each is sealed where the TUN read put it and sent with the
// others of its read.
func (s *Server) tunLoop(ctx context.Context) error {
	r, w := newTUNReader(s.tun), newUDPWriter(s.conn)
	for {
		n, err := r.read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("tunnel server: read %s: %w", s.tunName(), err)
		}
		for i := range n {
			pkt := r.packet(i)
			dst, ok := ipv4Dst(pkt[transportHeaderLen:])
			if !ok {
				s.drops.inc(DropNoTunnel)
				continue
			}
			s.mu.RLock()
			t := s.byAddr[dst]
			s.mu.RUnlock()
			if t == nil {
				s.drops.inc(DropNoTunnel)
				continue
			}
			w.send(t.sess.Load().SealInPlace(pkt, TypeData), t.peer())
			t.pktsOut.Add(1)
			t.bytesOut.Add(uint64(len(pkt) - transportHeaderLen))
		}
		w.flush()
		if w.err != nil {
			s.env.Log.Debug("tunnel send failed", "err", w.err)
			w.err = nil
		}
	}
}

// housekeeping ages silent tunnels and refreshes the NAT table until ctx ends.
func (s *Server) housekeeping(ctx context.Context, nh engine.NATHost) {
	age := time.NewTicker(time.Second)
	defer age.Stop()
	natEvery := s.cfg.NATInterval.Or(time.Second)
	nat := time.NewTicker(natEvery)
	defer nat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-age.C:
			s.age(now)
			s.publishIndex(now)
		case <-nat.C:
			if nh != nil {
				s.refreshNAT(nh)
			}
		}
	}
}

// age removes tunnels silent for longer than the idle timeout, and frees
// restored bindings whose client never came back.
func (s *Server) age(now time.Time) {
	idle := s.idle()
	s.mu.RLock()
	var dead []*tunnelEntry
	for _, t := range s.byIndex {
		t.mu.Lock()
		if now.Sub(t.lastRecv) > idle {
			dead = append(dead, t)
		}
		t.mu.Unlock()
	}
	var stale []netip.Addr
	for _, b := range s.pool.Bindings() {
		if _, live := s.byAddr[b.Address]; !live && now.Sub(b.Seen) > idle {
			stale = append(stale, b.Address)
		}
	}
	s.mu.RUnlock()
	for _, t := range dead {
		s.drop(t, engine.KindTunnelAged, fmt.Sprintf("no heartbeat for %s", idle))
	}
	for _, a := range stale {
		s.mu.Lock()
		s.pool.Free(a)
		s.mu.Unlock()
		s.unpersist(a)
	}
}

// Report implements engine.Reporter: the tunnel index table and the NAT table.
func (s *Server) Report(ns *engine.NodeSnapshot) {
	ns.Tunnels = append(ns.Tunnels, s.Tunnels()...)
	ns.Mappings = append(ns.Mappings, s.Mappings()...)
}

// Tunnels returns the tunnel index table, by index.
func (s *Server) Tunnels() []engine.TunnelRow {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rows := make([]engine.TunnelRow, 0, len(s.byIndex))
	for _, t := range s.byIndex {
		t.mu.Lock()
		rows = append(rows, engine.TunnelRow{
			Index: t.index, Endpoint: t.endpoint.String(), Virtual: t.addr.String(), LastHeartbeat: t.lastRecv,
			PacketsIn: t.pktsIn.Load(), PacketsOut: t.pktsOut.Load(), BytesIn: t.bytesIn.Load(), BytesOut: t.bytesOut.Load(),
		})
		t.mu.Unlock()
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Index < rows[j].Index })
	return rows
}

// listenRetry opens the server's socket, waiting up to 10 s for its address:
// roles start together, and the static role may not have added it yet.
func listenRetry(ctx context.Context, h engine.Host, laddr netip.AddrPort) (engine.UDPConn, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := h.ListenUDP(laddr, engine.UDPOptions{})
		if err == nil || time.Now().After(deadline) {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// socketBuffer is what a tunnel socket asks for in each direction: a burst
// of a fast TCP flow must not overflow the default ~200 KiB and turn into
// retransmissions (the kernel caps it at net.core.rmem_max/wmem_max).
const socketBuffer = 4 << 20

// growBuffers enlarges a socket's buffers when the driver's socket allows
// it (*net.UDPConn does); a fake socket simply does not.
func growBuffers(c engine.UDPConn) {
	if b, ok := c.(interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}); ok {
		b.SetReadBuffer(socketBuffer)
		b.SetWriteBuffer(socketBuffer)
	}
}

// quietIPv6 turns IPv6 off on a tunnel's TUN: the tunnel carries IPv4, and
// the kernel's router solicitations and MLD reports on the device would only
// be dropped and counted. Hosts without IPv6 have no such sysctl; fine.
func quietIPv6(env *engine.Env, tun string) {
	if err := env.Host.SetSysctl("net/ipv6/conf/"+tun+"/disable_ipv6", "1"); err != nil {
		env.Log.Debug("IPv6 left on", "tun", tun, "err", err)
	}
}
