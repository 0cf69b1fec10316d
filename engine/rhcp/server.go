package rhcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// allocBucket is the store bucket of the allocation table.
const allocBucket = "rhcp.allocations"

// Server is the rhcp_server role: it keeps the allocation table ID →
// maintenance address, probes every unconfirmed client (spec CN102244689A
// [0040]: the server sends the probe IP packet periodically until it gets the
// stop indication) and reclaims temporary addresses of RHCP+DHCP clients.
type Server struct {
	cfg  profiles.RHCPServer
	key  KeySource
	port uint16
	seed uint64

	// wake tells the probe loop that the table changed outside it (Reprobe).
	wake chan struct{}

	mu     sync.Mutex
	prober *Prober
	store  *store.Store
}

// NewServer builds the role from its profile section.
func NewServer(cfg profiles.RHCPServer) *Server {
	return &Server{cfg: cfg, key: KeySource{File: cfg.KeyFile, Env: cfg.KeyEnv, Generate: cfg.GenerateKey},
		port: portOr(cfg.Port), seed: uint64(time.Now().UnixNano()), wake: make(chan struct{}, 1)}
}

func portOr(p int) uint16 {
	if p == 0 {
		return Port
	}
	return uint16(p)
}

// Kind implements engine.Role.
func (s *Server) Kind() string { return "rhcp_server" }

// Backoff is the probe schedule of the profile, with defaults.
func (s *Server) Backoff() Backoff {
	iv := s.cfg.Interval.Or(time.Second)
	return Backoff{Interval: iv, Max: s.cfg.MaxInterval.Or(30 * time.Second), Jitter: s.cfg.Jitter.Or(iv / 10)}
}

// Run implements engine.Role.
func (s *Server) Run(ctx context.Context, env *engine.Env) error {
	env.Progress.Plan("key loaded", "allocations stored", "listening", "probing")
	key, err := s.key.Load()
	if err != nil {
		return err
	}
	env.Progress.Done("key loaded")
	if env.Store == nil {
		return errors.New("rhcp_server: the node has no store; allocations must survive restarts (give fieldcon a state directory)")
	}
	allocs, err := s.loadTable(env, time.Now())
	if err != nil {
		return err
	}
	p := NewProber(s.Backoff(), s.seed)
	now := time.Now()
	for _, a := range allocs {
		p.Add(a, now)
	}
	s.mu.Lock()
	s.prober, s.store = p, env.Store
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.store = nil
		s.mu.Unlock()
	}()
	env.Progress.Done("allocations stored")

	// Bound to the wildcard address: the server's address may be configured
	// by another role of the node that starts at the same time.
	laddr := netip.AddrPortFrom(netip.IPv4Unspecified(), s.port)
	if s.cfg.Address.Is6() {
		laddr = netip.AddrPortFrom(netip.IPv6Unspecified(), s.port)
	}
	conn, err := env.Host.ListenUDP(laddr, engine.UDPOptions{})
	if err != nil {
		return fmt.Errorf("rhcp_server: listen on %s: %w", laddr, err)
	}
	defer conn.Close()
	env.Progress.Done("listening")
	in := make(chan datagramIn, 64)
	go readUDP(ctx, conn, in)
	return s.loop(ctx, env, conn, key, in)
}

type datagramIn struct {
	b    []byte
	from netip.AddrPort
}

// readUDP feeds datagrams to in until ctx ends or the socket closes.
func readUDP(ctx context.Context, c engine.UDPConn, in chan<- datagramIn) {
	defer close(in)
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		select {
		case in <- datagramIn{append([]byte(nil), buf[:n]...), from}:
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) loop(ctx context.Context, env *engine.Env, conn engine.UDPConn, key []byte, in <-chan datagramIn) error {
	var seq Sequencer
	timer := time.NewTimer(0)
	defer timer.Stop()
	// Consecutive send failures per client: the first ones are expected
	// while the node's routes are still being installed.
	sendErrs := map[string]int{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-in:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("rhcp_server: socket closed")
			}
			s.handle(env, conn, key, &seq, d)
		case <-s.wake:
		case now := <-timer.C:
			s.mu.Lock()
			due := s.prober.Due(now)
			s.mu.Unlock()
			for _, a := range due {
				err := s.sendProbe(env, conn, key, seq.Next(now), a, now)
				switch {
				case err == nil:
					sendErrs[a.ClientID] = 0
				case sendErrs[a.ClientID] == 2: // once per failure streak, not once per probe
					env.Error(err)
					fallthrough
				default:
					sendErrs[a.ClientID]++
				}
			}
			if len(due) > 0 {
				env.Progress.Done("probing")
			}
		}
		s.mu.Lock()
		next := s.prober.Next()
		s.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// Reprobe puts a client back to probing at once, with the back-off reset:
// the console's re-probe action, e.g. after a device was replaced. With
// clientID "" every confirmed client is re-probed (reclaimed addresses stay
// reclaimed: their devices have formal addresses).
func (s *Server) Reprobe(ctx context.Context, clientID string) error {
	s.mu.Lock()
	p, st := s.prober, s.store
	if p == nil || st == nil {
		s.mu.Unlock()
		return errors.New("rhcp_server is not running")
	}
	var ids []string
	if clientID != "" {
		if _, ok := p.Allocation(clientID); !ok {
			s.mu.Unlock()
			return fmt.Errorf("rhcp_server: no client %q in the allocation table", clientID)
		}
		ids = []string{clientID}
	} else {
		for _, r := range p.Rows() {
			if r.State == StateConfirmed {
				ids = append(ids, r.ClientID)
			}
		}
	}
	now := time.Now()
	var changed []Allocation
	for _, id := range ids {
		a, _ := p.Allocation(id)
		a.State, a.Changed = StateProbing, now
		p.Add(a, now)
		changed = append(changed, a)
	}
	s.mu.Unlock()
	for _, a := range changed {
		if err := st.Put(allocBucket, a.ClientID, a); err != nil {
			return fmt.Errorf("rhcp_server: store allocation of %s: %w", a.ClientID, err)
		}
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// ProbeFor builds the probe for one allocation.
func (s *Server) ProbeFor(a Allocation, seq uint64, now time.Time) *Message {
	m := &Message{
		Type: TypeProbe, ClientID: a.ClientID, Address: a.Address, Server: s.cfg.Address.Addr,
		Sequence: seq, Issued: now, Lifetime: s.cfg.Lifetime.Or(5 * time.Minute),
	}
	if s.cfg.Gateway != nil {
		m.Gateway = s.cfg.Gateway.Addr
	}
	if s.cfg.DHCPServer != nil {
		m.DHCPServer = s.cfg.DHCPServer.Addr
	}
	for _, c := range s.cfg.Clients {
		if c.ID != a.ClientID {
			continue
		}
		if c.Gateway != nil {
			m.Gateway = c.Gateway.Addr
		}
		if c.DHCPServer != nil {
			m.DHCPServer = c.DHCPServer.Addr
		}
	}
	for _, r := range s.cfg.Routes {
		rt := Route{Dst: r.Dst.Prefix}
		if r.Via != nil {
			rt.Via = r.Via.Addr
		}
		m.Routes = append(m.Routes, rt)
	}
	return m
}

func (s *Server) sendProbe(env *engine.Env, conn engine.UDPConn, key []byte, seq uint64, a Allocation, now time.Time) error {
	b, err := s.ProbeFor(a, seq, now).Marshal(key)
	if err != nil {
		return fmt.Errorf("rhcp_server: probe for %s: %w", a.ClientID, err)
	}
	dst := netip.AddrPortFrom(a.Address.Addr(), s.port)
	if _, err := conn.WriteToUDPAddrPort(b, dst); err != nil {
		return fmt.Errorf("rhcp_server: send probe for %s to %s (is there a route to it via the access router?): %w", a.ClientID, dst, err)
	}
	env.Emit.Emit(engine.KindRHCPProbeSent, engine.Fields{"client_id": a.ClientID, "address": a.Address.String(), "seq": seq})
	return nil
}

// handle applies a stop or release from a client.
func (s *Server) handle(env *engine.Env, conn engine.UDPConn, key []byte, seq *Sequencer, d datagramIn) {
	m, err := Parse(d.b, key)
	if err != nil {
		env.Log.Debug("rhcp: dropped datagram", "from", d.from, "reason", Reason(err))
		return
	}
	now := time.Now()
	s.mu.Lock()
	var changed bool
	var ignored string
	switch m.Type {
	case TypeStop:
		changed, ignored = s.prober.Stop(m, now)
	case TypeRelease:
		changed, ignored = s.prober.Release(m, now)
	default:
		ignored = "not a stop or release"
	}
	a, _ := s.prober.Allocation(m.ClientID)
	s.mu.Unlock()
	if ignored != "" {
		env.Log.Debug("rhcp: ignored message", "type", m.Type, "client_id", m.ClientID, "from", d.from, "why", ignored)
		return
	}
	if changed {
		// Stored before we acknowledge: a restarted server must not probe a
		// confirmed client again nor hand out a reclaimed address twice.
		if err := env.Store.Put(allocBucket, a.ClientID, a); err != nil {
			env.Error(fmt.Errorf("rhcp_server: store allocation of %s: %w", a.ClientID, err))
			return
		}
	}
	f := engine.Fields{"client_id": m.ClientID, "address": m.Address.String(), "from": d.from.String(), "seq": m.Sequence}
	if m.Type == TypeStop {
		env.Emit.Emit(engine.KindRHCPStopReceived, f)
		return
	}
	f["type"], f["formal"], f["reclaimed"] = "release", m.Formal.String(), m.Address.String()
	env.Emit.Emit(engine.KindRHCPStopReceived, f)
	ack, err := (&Message{Type: TypeAck, ClientID: m.ClientID, Sequence: seq.Next(now), AckSeq: m.Sequence}).Marshal(key)
	if err == nil {
		_, err = conn.WriteToUDPAddrPort(ack, d.from)
	}
	if err != nil {
		env.Log.Warn("rhcp: ack not sent", "client_id", m.ClientID, "err", err)
	}
}

// loadTable merges the stored allocations with the profile's table and
// stores the result in one transaction before any probe announces it.
func (s *Server) loadTable(env *engine.Env, now time.Time) ([]Allocation, error) {
	stored := map[string]Allocation{}
	err := env.Store.ForEach(allocBucket, func(k string, v []byte) error {
		var a Allocation
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("rhcp_server: stored allocation %q: %w", k, err)
		}
		stored[k] = a
		return nil
	})
	if err != nil {
		return nil, err
	}
	out, err := mergeTable(s.cfg, stored, now)
	if err != nil {
		return nil, err
	}
	err = env.Store.Batch(func(tx *store.Tx) error {
		for _, a := range out {
			if err := tx.Put(allocBucket, a.ClientID, a); err != nil {
				return err
			}
		}
		for id := range stored {
			if !inProfile(s.cfg, id) {
				if err := tx.Delete(allocBucket, id); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rhcp_server: store allocations: %w", err)
	}
	return out, nil
}

// mergeTable keeps what was stored for clients still in the profile (their
// state survives a restart) and allocates addresses for new clients from the
// pool, skipping addresses in use. A reclaimed address is free again, and
// so is the address of a client no longer in the profile.
func mergeTable(cfg profiles.RHCPServer, stored map[string]Allocation, now time.Time) ([]Allocation, error) {
	used := map[netip.Addr]bool{}
	for _, c := range cfg.Clients {
		if c.Address != nil {
			used[c.Address.Addr()] = true
		}
	}
	for id, a := range stored {
		if a.State != StateReclaimed && inProfile(cfg, id) {
			used[a.Address.Addr()] = true
		}
	}
	var out []Allocation
	for _, c := range cfg.Clients {
		a, ok := stored[c.ID]
		switch {
		case ok && (c.Address == nil || c.Address.Prefix == a.Address):
			// keep: same address, state survives
		case c.Address != nil:
			a = Allocation{ClientID: c.ID, Address: c.Address.Prefix, State: StateProbing, Changed: now}
		default:
			addr, err := allocate(cfg.Pool.Prefix, used)
			if err != nil {
				return nil, fmt.Errorf("rhcp_server: client %s: %w", c.ID, err)
			}
			used[addr.Addr()] = true
			a = Allocation{ClientID: c.ID, Address: addr, State: StateProbing, Changed: now}
		}
		out = append(out, a)
	}
	return out, nil
}

// inProfile reports whether the profile lists the client id.
func inProfile(cfg profiles.RHCPServer, id string) bool {
	for _, c := range cfg.Clients {
		if c.ID == id {
			return true
		}
	}
	return false
}

// allocate returns the first free host address of pool, skipping the
// network and broadcast addresses of IPv4 pools shorter than /31.
func allocate(pool netip.Prefix, used map[netip.Addr]bool) (netip.Prefix, error) {
	pool = pool.Masked()
	a := pool.Addr()
	if pool.Addr().Is4() && pool.Bits() < 31 {
		a = a.Next()
	}
	for ; a.IsValid() && pool.Contains(a); a = a.Next() {
		if !used[a] && !(a.Is4() && pool.Bits() < 31 && !pool.Contains(a.Next())) {
			return netip.PrefixFrom(a, pool.Bits()), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("pool %s is exhausted", pool)
}

// Report implements engine.Reporter: the allocation table.
func (s *Server) Report(ns *engine.NodeSnapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prober == nil {
		return
	}
	for _, r := range s.prober.Rows() {
		ns.Probes = append(ns.Probes, engine.ProbeRow{ClientID: r.ClientID, Address: r.Address.String(), State: r.State, Sent: r.Sent, LastSent: r.LastSent})
	}
}
