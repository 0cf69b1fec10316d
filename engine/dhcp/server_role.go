package dhcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// LeaseBucket is the store bucket of a server's leases (key: ClientKey).
const LeaseBucket = "dhcp.leases"

// replayBlock is how many replay detection values a server reserves in its
// counter file at a time: one fsync per this many ACKs and FORCERENEWs.
const replayBlock = 4096

// ServerRole is the dhcp_server role.
type ServerRole struct {
	cfg profiles.DHCPServer
	// watch is the profile file and node whose section the role reloads
	// when the file changes (IP sync on profile reload).
	watchPath, watchNode string

	mu    sync.Mutex
	srv   *Server
	env   *engine.Env
	conns map[string]engine.UDPConn
	links map[string][]netip.Prefix
	// pending carries replies that promise a lease to the committer, which
	// syncs a batch of them to disk and only then sends them.
	pending chan pendingReply
	stats   serverCounters
	// started is when Run began (the counters count from it); stored the
	// counters last written to the store.
	started time.Time
	stored  ServerStats
}

type pendingReply struct {
	conn  engine.UDPConn
	reply Reply
	rx    time.Time // when the request was read
}

// Lease returns the running server's lease of one client (by ClientKey).
func (r *ServerRole) Lease(key string) (ServerLease, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv == nil {
		return ServerLease{}, false
	}
	return r.srv.Lease(key)
}

// Stats returns the server's counters since the role started.
func (r *ServerRole) Stats() ServerStats { return r.stats.snapshot() }

// NewServerRole builds the role from its profile section.
func NewServerRole(cfg profiles.DHCPServer) *ServerRole { return &ServerRole{cfg: cfg} }

// WatchProfile makes the role reload its section from the profile file at
// path (node's [node.dhcp_server]) whenever the file changes, pushing
// FORCERENEW to the clients the change concerns. Embedded profiles
// ("embedded:…") cannot change and are not watched.
func (r *ServerRole) WatchProfile(path, node string) *ServerRole {
	if !strings.HasPrefix(path, "embedded:") {
		r.watchPath, r.watchNode = path, node
	}
	return r
}

// Kind implements engine.Role.
func (r *ServerRole) Kind() string { return "dhcp_server" }

// ServerConfigFrom converts a profile section; serverID is used when the
// profile names none.
func ServerConfigFrom(p profiles.DHCPServer, serverID netip.Addr) ServerConfig {
	c := ServerConfig{ServerID: serverID, RapidCommit: p.RapidCommit, ForceRenewNonce: p.ForceRenew}
	if p.ServerID != nil {
		c.ServerID = p.ServerID.Addr
	}
	addrs := func(as []profiles.Addr) []netip.Addr {
		var out []netip.Addr
		for _, a := range as {
			out = append(out, a.Addr)
		}
		return out
	}
	for _, pp := range p.Pools {
		pool := Pool{Subnet: pp.Subnet.Prefix, Start: pp.Start.Addr, End: pp.End.Addr, Routers: addrs(pp.Routers),
			DNS: addrs(pp.DNS), Domain: pp.Domain, LeaseTime: pp.LeaseTime.Or(p.LeaseTime.Or(time.Hour))}
		if pp.CloudServer != nil {
			pool.CloudServer = pp.CloudServer.Addr
		}
		c.Pools = append(c.Pools, pool)
	}
	for _, rr := range p.Reservations {
		res := Reservation{ClientID: EncodeClientID(rr.ClientID), Address: rr.Address.Addr}
		if rr.MAC != "" {
			res.MAC, _ = net.ParseMAC(rr.MAC)
		}
		if rr.CloudServer != nil {
			res.CloudServer = rr.CloudServer.Addr
		}
		c.Reservations = append(c.Reservations, res)
	}
	return c
}

// LoadLeases reads a server's leases from a store.
func LoadLeases(st *store.Store) ([]ServerLease, error) {
	var out []ServerLease
	err := st.ForEach(LeaseBucket, func(key string, v []byte) error {
		var l ServerLease
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("lease %s: %w", key, err)
		}
		out = append(out, l)
		return nil
	})
	return out, err
}

// Run implements engine.Role.
func (r *ServerRole) Run(ctx context.Context, env *engine.Env) error {
	if env.Store == nil {
		return errors.New("dhcp server: no store for leases (run with a state directory); leases must survive a restart")
	}
	env.Progress.Plan("leases loaded", "listening")
	r.started = time.Now()
	r.links = map[string][]netip.Prefix{}
	for _, iface := range r.cfg.Ifaces {
		ps, err := WaitIPv4(ctx, env, iface, 5*time.Second)
		if err != nil {
			return fmt.Errorf("dhcp server: %w", err)
		}
		r.links[iface] = ps
	}
	cfg := ServerConfigFrom(r.cfg, ServerID(r.cfg, r.links))
	if !cfg.ServerID.IsValid() {
		return fmt.Errorf("dhcp server: no IPv4 address on %v for the server identifier; set server_id or configure the interface first", r.cfg.Ifaces)
	}
	srv := NewServer(cfg)
	leases, err := LoadLeases(env.Store)
	if err != nil {
		return fmt.Errorf("dhcp server: load leases from %s: %w", env.Store.Path(), err)
	}
	rc, err := OpenReplayCounter(ReplayCounterPath(env.Store.Path()), replayBlock)
	if err != nil {
		return fmt.Errorf("dhcp server: %w", err)
	}
	defer rc.Close()
	for _, l := range leases {
		srv.Restore(l)
		rc.AtLeast(l.Replay + 1)
	}
	srv.UseReplayCounter(func() (uint64, error) {
		v, err := rc.Next()
		if err != nil {
			env.Error(fmt.Errorf("dhcp server: no replay detection value for an ACK or FORCERENEW: %w", err))
		}
		return v, err
	})
	env.Progress.Done("leases loaded")
	r.mu.Lock()
	r.srv, r.env, r.conns = srv, env, map[string]engine.UDPConn{}
	r.pending = make(chan pendingReply, 1024)
	r.mu.Unlock()
	for _, iface := range r.cfg.Ifaces {
		c, err := env.Host.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), ServerPort),
			engine.UDPOptions{Device: iface, Broadcast: true, ReuseAddr: true})
		if err != nil {
			r.closeConns()
			return fmt.Errorf("dhcp server: listen on %s port 67 (another DHCP server running?): %w", iface, err)
		}
		r.mu.Lock()
		r.conns[iface] = c
		r.mu.Unlock()
	}
	defer r.closeConns()
	env.Progress.Done("listening")
	env.Log.Info("dhcp server listening", "ifaces", r.cfg.Ifaces, "server_id", cfg.ServerID, "leases", len(leases))

	var wg sync.WaitGroup
	for iface, c := range r.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.serve(ctx, iface, c)
		}()
	}
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		r.committer(ctx)
	}()
	sweep := time.NewTicker(r.cfg.SweepInterval.Or(10 * time.Second))
	defer sweep.Stop()
	watch := time.NewTicker(time.Second)
	defer watch.Stop()
	lastMod := r.profileModTime()
	for {
		select {
		case <-ctx.Done():
			r.closeConns()
			wg.Wait()
			<-committerDone
			r.storeStats(time.Now())
			return nil
		case now := <-sweep.C:
			r.sweep(now)
			r.storeStats(now)
		case <-watch.C:
			if m := r.profileModTime(); !m.Equal(lastMod) {
				lastMod = m
				r.reloadProfile(env)
			}
		}
	}
}

func (r *ServerRole) profileModTime() time.Time {
	if r.watchPath == "" {
		return time.Time{}
	}
	fi, err := os.Stat(r.watchPath)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// reloadProfile applies the changed profile file; a profile that does not
// validate changes nothing (DESIGN.md: nothing is applied from a profile
// that does not validate).
func (r *ServerRole) reloadProfile(env *engine.Env) {
	p, err := profiles.Load(r.watchPath)
	if err != nil {
		env.Error(fmt.Errorf("dhcp server: profile changed but does not validate; keeping the running configuration: %w", err))
		return
	}
	n := p.Node(r.watchNode)
	if n == nil || n.DHCPServer == nil {
		env.Error(fmt.Errorf("dhcp server: reloaded profile %s has no [node.dhcp_server] for node %s; keeping the running configuration", r.watchPath, r.watchNode))
		return
	}
	pushed, err := r.Reload(*n.DHCPServer)
	env.Log.Info("dhcp server: profile reloaded", "path", r.watchPath, "forcerenew", pushed)
	if err != nil {
		env.Error(fmt.Errorf("dhcp server: after reload: %w", err))
	}
}

func (r *ServerRole) closeConns() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}

func (r *ServerRole) serve(ctx context.Context, iface string, c engine.UDPConn) {
	buf := make([]byte, 65536)
	for ctx.Err() == nil {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			continue
		}
		rx := time.Now()
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			r.stats.update(func(s *ServerStats) { s.Received++; s.Undecodable++ })
			r.env.Log.Debug("dhcp server: undecodable message", "from", from, "err", err)
			continue
		}
		r.mu.Lock()
		// The source address tells the holder's own unicast (RELEASE,
		// RENEWING) from a forgery sent from elsewhere (Server.fromHolder).
		reply := r.srv.HandleFrom(req, r.links[iface], from.Addr().Unmap(), rx)
		r.mu.Unlock()
		r.stats.received(req, reply)
		switch {
		case reply.Commit != nil:
			select {
			case r.pending <- pendingReply{conn: c, reply: reply, rx: rx}:
			case <-ctx.Done():
				return
			}
		case reply.Msg != nil:
			r.send(c, reply, rx)
		}
	}
}

// committer syncs leases to disk in batches (one fsync for every reply
// waiting) and sends each reply only after its lease is on disk: a client
// that received an ACK finds its lease after a crash.
func (r *ServerRole) committer(ctx context.Context) {
	batch := make([]pendingReply, 0, 256)
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-r.pending:
			batch = append(batch[:0], p)
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case p := <-r.pending:
				batch = append(batch, p)
			default:
				break more
			}
		}
		start := time.Now()
		err := r.env.Store.Batch(func(tx *store.Tx) error {
			for _, p := range batch {
				if err := tx.Put(LeaseBucket, p.reply.Commit.Key, p.reply.Commit); err != nil {
					return err
				}
				for _, k := range p.reply.Forget {
					if err := tx.Delete(LeaseBucket, k); err != nil {
						return err
					}
				}
			}
			return nil
		})
		r.stats.committed(len(batch), time.Since(start), err)
		if err != nil {
			// Without the lease on disk the promise cannot be made.
			r.env.Error(fmt.Errorf("dhcp server: store %d leases in %s (replies not sent): %w", len(batch), r.env.Store.Path(), err))
			continue
		}
		for _, p := range batch {
			if p.reply.Msg != nil {
				r.send(p.conn, p.reply, p.rx)
			}
			if p.reply.Msg != nil && p.reply.Msg.MessageType() == dhcpv4.MessageTypeAck {
				l := p.reply.Commit
				f := engine.Fields{"address": l.Address.String(), "client": l.Key, "mac": l.MAC, "role": "server"}
				if l.CircuitID != "" {
					f["circuit_id"], f["remote_id"] = l.CircuitID, l.RemoteID
				}
				r.env.Emit.Emit(engine.KindDHCPBound, f)
			}
		}
	}
}

func (r *ServerRole) send(c engine.UDPConn, reply Reply, rx time.Time) {
	_, err := c.WriteToUDPAddrPort(reply.Msg.ToBytes(), reply.To)
	r.stats.sent(reply.Msg, rx, err)
	if err != nil {
		r.env.Log.Warn("dhcp server: send failed", "to", reply.To, "err", err)
	}
}

func (r *ServerRole) sweep(now time.Time) {
	r.mu.Lock()
	expired := r.srv.Sweep(now)
	forgotten := r.srv.Forget(now, r.cfg.ForgetAfter.Or(24*time.Hour))
	r.mu.Unlock()
	if len(expired) == 0 && len(forgotten) == 0 {
		return
	}
	err := r.env.Store.Batch(func(tx *store.Tx) error {
		for _, l := range expired {
			if err := tx.Put(LeaseBucket, l.Key, l); err != nil {
				return err
			}
		}
		for _, k := range forgotten {
			if err := tx.Delete(LeaseBucket, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		r.env.Error(fmt.Errorf("dhcp server: store expired leases and delete %d departed clients' rows: %w", len(forgotten), err))
	}
}

// storeStats writes the counters to the store when they changed since the
// last write, for `fieldcon leases --stats` (the running server holds the
// store; the command reads a copy).
func (r *ServerRole) storeStats(now time.Time) {
	s := r.stats.snapshot()
	if reflect.DeepEqual(s, r.stored) {
		return
	}
	if err := r.env.Store.Put(StatsBucket, StatsKey, StoredStats{Since: r.started, Updated: now, Stats: s}); err != nil {
		r.env.Log.Warn("dhcp server: store counters", "err", err)
		return
	}
	r.stored = s
}

// ForceRenew sends an authenticated FORCERENEW to one bound client (by its
// ClientKey), after storing the advanced replay counter.
func (r *ServerRole) ForceRenew(key string) error {
	r.mu.Lock()
	if r.srv == nil {
		r.mu.Unlock()
		return errors.New("dhcp server is not running")
	}
	raw, to, l, err := r.srv.ForceRenew(key)
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("forcerenew: %w", err)
	}
	if err := r.env.Store.Put(LeaseBucket, l.Key, l); err != nil {
		return fmt.Errorf("forcerenew: store replay counter: %w", err)
	}
	c := r.connFor(l.Address)
	if c == nil {
		return errors.New("forcerenew: no socket")
	}
	if _, err := c.WriteToUDPAddrPort(raw, to); err != nil {
		return fmt.Errorf("forcerenew to %s: %w", to, err)
	}
	r.env.Emit.Emit(engine.KindForceRenewSent, engine.Fields{"client": key, "address": l.Address.String(), "to": to.String()})
	return nil
}

// connFor picks the socket whose interface reaches addr: on its subnet, or
// the device of the route to it.
func (r *ServerRole) connFor(addr netip.Addr) engine.UDPConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	for iface, ps := range r.links {
		for _, p := range ps {
			if p.Masked().Contains(addr) && r.conns[iface] != nil {
				return r.conns[iface]
			}
		}
	}
	if routes, err := r.env.Host.Routes(); err == nil {
		best := -1
		var dev string
		for _, rt := range routes {
			if rt.Dst.Contains(addr) && rt.Dst.Bits() > best && r.conns[rt.Dev] != nil {
				best, dev = rt.Dst.Bits(), rt.Dev
			}
		}
		if dev != "" {
			return r.conns[dev]
		}
	}
	for _, iface := range r.cfg.Ifaces {
		if c := r.conns[iface]; c != nil {
			return c
		}
	}
	return nil
}

// Reload applies a changed profile section (IP sync, DESIGN.md §4): every
// bound client whose reserved address or cloud server changes is sent a
// FORCERENEW, so it renews and picks the change up. It returns the clients
// it pushed to.
func (r *ServerRole) Reload(cfg profiles.DHCPServer) ([]string, error) {
	r.mu.Lock()
	if r.srv == nil {
		r.mu.Unlock()
		return nil, errors.New("dhcp server is not running")
	}
	old := r.srv.Config()
	next := ServerConfigFrom(cfg, old.ServerID)
	before := map[string]ServerLease{}
	for _, l := range r.srv.Leases() {
		if l.State == LeaseBound {
			before[l.Key] = l
		}
	}
	r.srv.SetConfig(next)
	r.cfg = cfg
	var push []string
	for key, l := range before {
		addr, cloud := r.srv.Entitled(l)
		if addr != l.Address || cloud != l.CloudServer {
			push = append(push, key)
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, key := range push {
		if err := r.ForceRenew(key); err != nil {
			errs = append(errs, err)
		}
	}
	return push, errors.Join(errs...)
}

// Report implements engine.Reporter.
func (r *ServerRole) Report(s *engine.NodeSnapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv == nil {
		return
	}
	for _, l := range r.srv.Leases() {
		s.Leases = append(s.Leases, LeaseRowOf(l))
	}
}

// LeaseRowOf is a server lease as a snapshot row.
func LeaseRowOf(l ServerLease) engine.LeaseRow {
	return engine.LeaseRow{Role: "server", Address: l.Address.String(), ClientID: l.ClientID, MAC: l.MAC,
		State: l.State, Expiry: l.Expiry}
}
