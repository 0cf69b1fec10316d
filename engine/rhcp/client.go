package rhcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/engine/ratelimit"
	"github.com/fieldcon/fieldcon/engine/rhcp/assignment"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// FormalAcquirer obtains the formal address of RHCP+DHCP: unicast DHCP to
// the server the probe named, client-id = ESN, the device acting as its own
// relay from its temporary address (DESIGN.md "Notes from the field"). It
// returns the leased address with its prefix length, lifetime and how to
// keep it, and does not configure it.
type FormalAcquirer interface {
	AcquireFormal(ctx context.Context, env *engine.Env, req FormalRequest) (FormalLease, error)
}

// FormalRequest is what a FormalAcquirer needs.
type FormalRequest struct {
	Iface    string
	ClientID string
	// Server is the DHCP server named in the probe.
	Server netip.Addr
	// Relay is the temporary address: the giaddr of the requests and where
	// the replies come back.
	Relay netip.Addr
}

// Client is the rhcp_client role: a device on a point-to-point link waiting
// for its maintenance address (spec CN102244689A claims 1–3, 5).
type Client struct {
	cfg      profiles.RHCPClient
	key      KeySource
	port     uint16
	acquirer FormalAcquirer

	mu        sync.Mutex
	temporary map[string]bool // address (CIDR) → temporary
	now       func() time.Time
}

// NewClient builds the role from its profile section. acquirer is used for
// RHCP+DHCP; nil leaves the device with the probed address only.
func NewClient(cfg profiles.RHCPClient, acquirer FormalAcquirer) *Client {
	return &Client{cfg: cfg, key: KeySource{File: cfg.KeyFile, Env: cfg.KeyEnv, Generate: cfg.GenerateKey},
		port: portOr(cfg.Port), acquirer: acquirer, temporary: map[string]bool{}, now: time.Now}
}

// Kind implements engine.Role.
func (c *Client) Kind() string { return "rhcp_client" }

// Persistent implements engine.Persister: a commissioned address usually stays.
func (c *Client) Persistent() bool { return c.cfg.Persist }

// Report implements engine.Reporter: marks the temporary RHCP address in
// the node's address rows.
func (c *Client) Report(ns *engine.NodeSnapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range ns.Addresses {
		if c.temporary[ns.Addresses[i].Address] {
			ns.Addresses[i].Temporary = true
		}
	}
}

// Temporary reports whether an address the role added (CIDR) is an RHCP
// temporary address that DHCP will replace; arbitration does not count it as
// formal.
func (c *Client) Temporary(address string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.temporary[address]
}

func (c *Client) dhcpEnabled() bool {
	return c.acquirer != nil && (c.cfg.DHCP == nil || *c.cfg.DHCP)
}

// clientRun is the state of one Run.
type clientRun struct {
	*Client
	env   *engine.Env
	key   []byte
	check ProbeCheck
	seq   Sequencer

	// rejections are rate-limited: a flood of garbage on the link must not
	// flood the event bus.
	rejects ratelimit.Window

	addr   netip.Prefix   // the RHCP address configured, if any
	routes []engine.Route // the routes configured with it
	formal netip.Prefix   // the DHCP formal address, if any
	conn   engine.UDPConn
	acks   chan *Message

	// lost reports the end of the formal lease kept in the background
	// (keepFormal); stopKeep stops that and waits for it.
	lost     chan error
	stopKeep func()
}

// clientSteps are the steps of an RHCP client run; formalSteps follow them
// when the probe names a DHCP server (RHCP+DHCP).
var (
	clientSteps = []string{"link address", "listening", "probe received", "address configured", "routes configured", "stop sent"}
	formalSteps = []string{"dhcp formal address", "temporary released", "server reclaimed"}
)

// Run implements engine.Role.
func (c *Client) Run(ctx context.Context, env *engine.Env) error {
	env.Progress.Plan(clientSteps...)
	key, err := c.key.Load()
	if err != nil {
		return err
	}
	r := &clientRun{Client: c, env: env, key: key, check: ProbeCheck{ClientID: c.cfg.ClientID},
		rejects: ratelimit.Window{Max: maxRejectEvents, Per: time.Second}, lost: make(chan error, 1)}
	defer r.closeConn()
	defer r.stopKeeping()
	r.loadSeen()
	if l := c.cfg.Link; l != nil {
		// The IPCP step (RFC 1332) on a veth stand-in: the link address the
		// access router's side assigns.
		if err := env.AddAddress(c.cfg.Iface, engine.Address{Prefix: l.Address.Prefix, Peer: l.Peer.Prefix}, "ipcp"); err != nil {
			return fmt.Errorf("rhcp_client: link address %s on %s: %w", l.Address, c.cfg.Iface, err)
		}
	}
	if l, err := env.Host.LinkByName(c.cfg.Iface); err != nil {
		return fmt.Errorf("rhcp_client: interface %s: %w", c.cfg.Iface, err)
	} else if !l.Up {
		if err := env.Host.SetLinkUp(c.cfg.Iface, true); err != nil {
			return fmt.Errorf("rhcp_client: bring %s up: %w", c.cfg.Iface, err)
		}
	}
	env.Progress.Done("link address")
	pc, err := env.Host.OpenPacket(c.cfg.Iface, probeSocket(c.port))
	if err != nil {
		return fmt.Errorf("rhcp_client: packet socket on %s: %w", c.cfg.Iface, err)
	}
	env.Progress.Done("listening")
	probes := make(chan Datagram, 64)
	go readProbes(ctx, env, c.cfg.Iface, pc, c.port, probes)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-r.lost:
			r.formalLost(err)
		case d, ok := <-probes:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("rhcp_client: packet socket on %s closed", c.cfg.Iface)
			}
			if err := r.onProbe(ctx, d); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				env.Error(err)
			}
		}
	}
}

// probeSocket is the client's packet socket: cooked IPv4, filtered in the
// kernel to UDP datagrams to the RHCP port, so other traffic on the link
// never wakes the reader.
func probeSocket(port uint16) engine.PacketOptions {
	return engine.PacketOptions{Protocol: engine.EthIPv4, Cooked: true, Filter: dhcp.UDPDstPortFilter(port, true)}
}

// readProbes lifts UDP datagrams to port from a packet socket on iface: the
// kernel drops a probe for an address the device does not own yet, but the
// AF_PACKET socket has seen it (DESIGN.md "Notes from the field"). A link
// that goes down makes the socket fail (ENETDOWN); it is opened again, so a
// cable pulled and plugged back does not end the role.
func readProbes(ctx context.Context, env *engine.Env, iface string, pc engine.PacketConn, port uint16, out chan<- Datagram) {
	defer close(out)
	buf := make([]byte, 65536)
	for ctx.Err() == nil {
		if pc == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			var err error
			if pc, err = env.Host.OpenPacket(iface, probeSocket(port)); err != nil {
				pc = nil
				continue
			}
		}
		// A deadline, so the loop sees ctx end even when nothing arrives.
		_ = pc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, info, err := pc.ReadPacket(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			pc.Close()
			pc = nil
			env.Log.Debug("rhcp: packet socket failed; reopening", "iface", iface, "err", err)
			continue
		}
		if info.Direction == engine.DirOut {
			continue
		}
		d, err := ParseFrame(buf[:n], pc.LinkType() == 1)
		if err != nil || d.Dst.Port() != port {
			continue
		}
		d.Payload = append([]byte(nil), d.Payload...)
		select {
		case out <- d:
		case <-ctx.Done():
		}
	}
	if pc != nil {
		pc.Close()
	}
}

// maxRejectEvents is how many rhcp.probe.rejected events a device emits
// per second; the rest are counted and reported with the next one.
const maxRejectEvents = 20

func (r *clientRun) reject(d Datagram, reason string, m *Message, problem ...string) {
	ok, suppressed := r.rejects.Allow(r.now())
	if !ok {
		return
	}
	f := engine.Fields{"reason": reason, "from": d.Src.String(), "dst": d.Dst.Addr().String()}
	if suppressed > 0 {
		f["suppressed"] = suppressed
	}
	if m != nil {
		f["client_id"], f["seq"] = m.ClientID, m.Sequence
	}
	if len(problem) > 0 {
		f["problem"] = problem[0]
	}
	r.env.Emit.Emit(engine.KindRHCPProbeRejected, f)
}

func (r *clientRun) onProbe(ctx context.Context, d Datagram) error {
	m, err := Parse(d.Payload, r.key)
	if err != nil {
		r.reject(d, Reason(err), nil)
		return nil
	}
	if m.Type != TypeProbe {
		return nil // our own acks and stops pass the link too; they are not probes
	}
	if reason := r.check.Check(m, r.now()); reason != "" {
		r.reject(d, reason, m)
		return nil
	}
	// Authentic is not harmless: a probe signed with the site key is
	// checked value by value before anything touches the host. Its sequence
	// still raises the replay floor.
	if err := r.validate(m); err != nil {
		r.reject(d, ReasonRefusedValue, m, err.Error())
		r.storeSeen()
		return nil
	}
	r.env.Emit.Emit(engine.KindRHCPProbeReceived, engine.Fields{"client_id": m.ClientID, "address": m.Address.String(),
		"server": m.Server.String(), "seq": m.Sequence, "dst": d.Dst.Addr().String()})
	r.env.Progress.Done("probe received")
	switch {
	case r.formal.IsValid():
		// RHCP+DHCP finished: the temporary address is gone; a late probe
		// for it (the server had not stored the release yet) changes nothing.
		// Its sequence is stored all the same: every accepted probe raises
		// the replay floor, so a capture of it stays a replay after a restart.
		r.storeSeen()
		return nil
	case r.addr == m.Address:
		// The server did not get our stop: send it again. A DHCP exchange
		// that failed before is tried again too.
		r.stopOrReport(m)
		r.storeSeen()
		if r.needDHCP(m) {
			return r.formalDHCP(ctx, m)
		}
		return nil
	case r.addr.IsValid():
		// Re-addressed by the server: the old address and the routes that
		// came with it go first. Should the new probe not apply, the old
		// values are put back, so the device stays reachable as it was.
		prev, prevRoutes := r.addr, r.routes
		if err := r.unconfigure(); err != nil {
			return err
		}
		r.closeConn()
		if err := r.configure(m); err != nil {
			if rerr := r.apply(prev, prevRoutes); rerr != nil {
				err = errors.Join(err, fmt.Errorf("rhcp_client: restore %s: %w", prev, rerr))
			}
			r.storeSeen()
			return err
		}
		r.stopOrReport(m)
		r.storeSeen()
		if r.needDHCP(m) {
			return r.formalDHCP(ctx, m)
		}
		return nil
	}
	if err := r.configure(m); err != nil {
		r.storeSeen()
		return err
	}
	r.stopOrReport(m)
	r.storeSeen()
	if r.needDHCP(m) {
		return r.formalDHCP(ctx, m)
	}
	return nil
}

// seenBucket keeps the last accepted probe sequence per server on the
// device, so a probe captured before a restart is still a replay after it.
const seenBucket = "rhcp.client.seen"

func (r *clientRun) loadSeen() {
	if r.env.Store == nil {
		return
	}
	_ = r.env.Store.ForEach(seenBucket, func(k string, v []byte) error {
		a, err := netip.ParseAddr(k)
		var seq uint64
		if err == nil && json.Unmarshal(v, &seq) == nil {
			r.check.Restore(a, seq)
		}
		return nil
	})
}

// storeSeen runs after the stop went out: the store's fsync stays off the
// probe-to-stop path.
func (r *clientRun) storeSeen() {
	if r.env.Store == nil {
		return
	}
	err := r.env.Store.Batch(func(tx *store.Tx) error {
		for a, seq := range r.check.Last() {
			if err := tx.Put(seenBucket, a.String(), seq); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		r.env.Log.Warn("rhcp: last probe sequence not stored", "err", err)
	}
}

// stopOrReport sends the stop; a failed send is reported and not fatal:
// the server probes again and the next probe gets another stop.
func (r *clientRun) stopOrReport(m *Message) {
	if err := r.sendStop(m); err != nil {
		r.env.Error(err)
	}
}

func (r *clientRun) needDHCP(m *Message) bool {
	return m.DHCPServer.IsValid() && r.dhcpEnabled() && !r.formal.IsValid()
}

// validate applies the rules of package assignment to the probe's values,
// and checks that every next hop is on the link as the host has it now
// (reads only: nothing is changed on the host).
func (r *clientRun) validate(m *Message) error {
	a := assignment.Assignment{Address: m.Address, Gateway: m.Gateway, Server: m.Server, DHCPServer: m.DHCPServer}
	for _, rt := range m.Routes {
		a.Routes = append(a.Routes, assignment.Route{Dst: rt.Dst, Via: rt.Via})
	}
	var errs []error
	for _, p := range a.Check() {
		errs = append(errs, p)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	link, err := r.linkPrefixes()
	if err != nil {
		return err
	}
	hops := []netip.Addr{m.Gateway}
	for _, rt := range m.Routes {
		hops = append(hops, rt.Via)
	}
	for _, h := range hops {
		if h.IsValid() && !(h.Is6() && h.IsLinkLocalUnicast()) {
			if err := assignment.OnLink(h, m.Address, link); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// linkPrefixes are what the device reaches directly on its interface
// before the probe: its addresses' subnets and peers (the IPCP link) and
// device routes out of it.
func (r *clientRun) linkPrefixes() ([]netip.Prefix, error) {
	addrs, err := r.env.Host.Addresses(r.cfg.Iface)
	if err != nil {
		return nil, fmt.Errorf("rhcp_client: addresses of %s: %w", r.cfg.Iface, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if a.Prefix == r.addr {
			continue // the previous probe's address goes on re-address
		}
		out = append(out, a.Prefix.Masked())
		if a.Peer.IsValid() {
			out = append(out, a.Peer.Masked())
		}
	}
	routes, err := r.env.Host.Routes()
	if err != nil {
		return nil, fmt.Errorf("rhcp_client: routes: %w", err)
	}
	for _, rt := range routes {
		if rt.Dev == r.cfg.Iface && !rt.Gateway.IsValid() && rt.Dst.Bits() > 0 && !slices.Contains(r.routes, rt) {
			out = append(out, rt.Dst)
		}
	}
	return out, nil
}

// configure applies the probe: address, then routes (spec claim 2), all
// or nothing.
func (r *clientRun) configure(m *Message) error {
	iface := r.cfg.Iface
	temporary := m.DHCPServer.IsValid() && r.dhcpEnabled()
	promote := "net/ipv4/conf/" + iface + "/promote_secondaries"
	old, _ := r.env.Host.Sysctl(promote)
	if temporary && old != "1" {
		// The formal address will be a secondary of the same subnet; without
		// promote_secondaries, removing the temporary (primary) address
		// would take it down too.
		if err := r.env.Host.SetSysctl(promote, "1"); err != nil {
			return fmt.Errorf("rhcp_client: promote_secondaries on %s: %w", iface, err)
		}
	}
	// Marked before the address is added: arbitration reads it when
	// address.added arrives.
	r.mu.Lock()
	r.temporary[m.Address.String()] = temporary
	r.mu.Unlock()
	if err := r.apply(m.Address, probeRoutes(m, iface)); err != nil {
		r.mu.Lock()
		delete(r.temporary, m.Address.String())
		r.mu.Unlock()
		if temporary && old != "1" && old != "" {
			if rerr := r.env.Host.SetSysctl(promote, old); rerr != nil {
				err = errors.Join(err, fmt.Errorf("rhcp_client: restore promote_secondaries: %w", rerr))
			}
		}
		return err
	}
	r.env.Progress.Done("address configured")
	r.env.Progress.Done("routes configured")
	return nil
}

// apply adds addr and routes on the interface. When a step fails, the
// steps already done are undone, newest first, so the device is never left
// half-configured; on success r.addr and r.routes are what was applied.
func (r *clientRun) apply(addr netip.Prefix, routes []engine.Route) error {
	iface := r.cfg.Iface
	var undo []func() error
	fail := func(err error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil && !errors.Is(uerr, engine.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("rhcp_client: undo: %w", uerr))
			}
		}
		return err
	}
	if err := r.env.AddAddress(iface, engine.Address{Prefix: addr}, "rhcp"); err != nil {
		return fmt.Errorf("rhcp_client: add %s on %s: %w", addr, iface, err)
	}
	undo = append(undo, func() error { return r.env.DelAddress(iface, engine.Address{Prefix: addr}, "rhcp") })
	for _, rt := range routes {
		if err := r.env.AddRoute(rt, "rhcp"); err != nil {
			return fail(fmt.Errorf("rhcp_client: route %s: %w", rt.Dst, err))
		}
		undo = append(undo, func() error { return r.env.DelRoute(rt, "rhcp") })
	}
	r.addr, r.routes = addr, routes
	return nil
}

// unconfigure removes the previous probe's routes, then its address.
func (r *clientRun) unconfigure() error {
	for i := len(r.routes) - 1; i >= 0; i-- {
		if err := r.env.DelRoute(r.routes[i], "rhcp"); err != nil && !errors.Is(err, engine.ErrNotExist) {
			return fmt.Errorf("rhcp_client: remove route %s: %w", r.routes[i].Dst, err)
		}
	}
	r.routes = nil
	if err := r.env.DelAddress(r.cfg.Iface, engine.Address{Prefix: r.addr}, "rhcp"); err != nil && !errors.Is(err, engine.ErrNotExist) {
		return fmt.Errorf("rhcp_client: remove %s: %w", r.addr, err)
	}
	r.addr = netip.Prefix{}
	return nil
}

// probeRoutes turns the probe's routes into kernel routes on iface, adding a
// host route to the servers the device must reach when no route covers them.
func probeRoutes(m *Message, iface string) []engine.Route {
	var out []engine.Route
	covered := func(a netip.Addr) bool {
		if !a.IsValid() || m.Address.Contains(a) {
			return true
		}
		for _, r := range m.Routes {
			if r.Dst.Contains(a) {
				return true
			}
		}
		return false
	}
	add := func(dst netip.Prefix, via netip.Addr) {
		if !via.IsValid() {
			via = m.Gateway
		}
		rt := engine.Route{Dst: dst.Masked(), Dev: iface}
		if via.IsValid() {
			rt.Gateway, rt.OnLink = via, true
		}
		out = append(out, rt)
	}
	for _, r := range m.Routes {
		add(r.Dst, r.Via)
	}
	for _, a := range []netip.Addr{m.Server, m.DHCPServer} {
		if !covered(a) {
			add(engine.StaticPrefix(a), netip.Addr{})
		}
	}
	return out
}

// openConn binds the UDP socket stops and releases go out of: the address
// just configured, so the server sees the device's new address.
func (r *clientRun) openConn(a netip.Addr) error {
	r.closeConn()
	conn, err := r.env.Host.ListenUDP(netip.AddrPortFrom(a, r.port), engine.UDPOptions{Device: r.cfg.Iface, ReuseAddr: true})
	if err != nil {
		return fmt.Errorf("rhcp_client: bind %s:%d: %w", a, r.port, err)
	}
	r.conn = conn
	r.acks = make(chan *Message, 8)
	go func(conn engine.UDPConn, acks chan<- *Message) {
		buf := make([]byte, 2048)
		for {
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			// Probes reach this socket too once the address is ours; they
			// are handled from the packet socket.
			if m, err := Parse(buf[:n], r.key); err == nil && m.Type == TypeAck && m.ClientID == r.cfg.ClientID {
				select {
				case acks <- m:
				default:
				}
			}
		}
	}(conn, r.acks)
	return nil
}

func (r *clientRun) closeConn() {
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
}

func (r *clientRun) sendStop(probe *Message) error {
	if r.conn == nil {
		if err := r.openConn(r.addr.Addr()); err != nil {
			return err
		}
	}
	seq := r.seq.Next(r.now())
	b, err := (&Message{Type: TypeStop, ClientID: r.cfg.ClientID, Address: r.addr, Sequence: seq, AckSeq: probe.Sequence}).Marshal(r.key)
	if err != nil {
		return err
	}
	to := netip.AddrPortFrom(probe.Server, r.port)
	if _, err := r.conn.WriteToUDPAddrPort(b, to); err != nil {
		return fmt.Errorf("rhcp_client: send stop to %s: %w", to, err)
	}
	r.env.Emit.Emit(engine.KindRHCPStopSent, engine.Fields{"client_id": r.cfg.ClientID, "address": r.addr.String(), "server": to.String(), "seq": seq})
	r.env.Progress.Done("stop sent")
	return nil
}

// formalDHCP is the RHCP+DHCP tail (spec claim 3): formal address by unicast
// DHCP, then the temporary one goes and the server is told to reclaim it.
func (r *clientRun) formalDHCP(ctx context.Context, probe *Message) error {
	r.env.Progress.Plan(slices.Concat(clientSteps, formalSteps)...)
	for _, s := range clientSteps {
		r.env.Progress.Done(s)
	}
	lease, err := r.acquirer.AcquireFormal(ctx, r.env, FormalRequest{Iface: r.cfg.Iface, ClientID: r.cfg.ClientID,
		Server: probe.DHCPServer, Relay: r.addr.Addr()})
	if err != nil {
		return fmt.Errorf("rhcp_client: unicast DHCP to %s: %w", probe.DHCPServer, err)
	}
	// The kernel's lifetimes are the lease's: an address whose lease is not
	// renewed goes away instead of being used after the server gave it to
	// another device.
	a := engine.Address{Prefix: lease.Address, Valid: lease.Lifetime, Preferred: lease.Lifetime}
	if err := r.env.AddAddress(r.cfg.Iface, a, "dhcp"); err != nil {
		return fmt.Errorf("rhcp_client: add formal %s: %w", lease.Address, err)
	}
	formal := lease.Address
	r.formal = formal
	if lease.Server.IsValid() {
		r.env.Emit.Emit(engine.KindDHCPBound, engine.Fields{"iface": r.cfg.Iface, "address": formal.String(),
			"server": lease.Server.String(), "lease_time": lease.Lifetime.Round(time.Second).String()})
	}
	r.env.Progress.Done("dhcp formal address")
	r.closeConn()
	temp := r.addr
	if err := r.env.DelAddress(r.cfg.Iface, engine.Address{Prefix: temp}, "rhcp"); err != nil && !errors.Is(err, engine.ErrNotExist) {
		return fmt.Errorf("rhcp_client: remove temporary %s: %w", temp, err)
	}
	r.env.Progress.Done("temporary released")
	// Renewals start now, not after the release: a lossy release takes
	// seconds, a short lease's T1 may come first.
	r.keepFormal(ctx, lease)
	if err := r.openConn(formal.Addr()); err != nil {
		return err
	}
	return r.release(ctx, probe.Server, temp, formal)
}

// keepFormal keeps the formal lease in the background for its whole life
// (RFC 2131 §4.4.5 renewing and rebinding); its end arrives on r.lost.
func (r *clientRun) keepFormal(ctx context.Context, lease FormalLease) {
	if lease.Keep == nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	r.stopKeep = func() { cancel(); <-done }
	go func() {
		defer close(done)
		if err := lease.Keep(ctx, r.env); err != nil && ctx.Err() == nil {
			r.lost <- err
		}
	}()
}

func (r *clientRun) stopKeeping() {
	if r.stopKeep != nil {
		r.stopKeep()
		r.stopKeep = nil
	}
}

// formalLost handles the end of the formal lease (a NAK, or expiry without
// a renewal): the address is gone already. The device is back where it was
// before the first probe: its temporary address was released, so it waits
// for the RHCP server to probe it again (docs/protocols/rhcp.md).
func (r *clientRun) formalLost(err error) {
	r.stopKeeping()
	r.closeConn()
	r.env.Error(fmt.Errorf("rhcp_client: formal address %s lost (%w); %s has no maintenance address until the RHCP server probes it again (re-probe %s there)",
		r.formal, err, r.cfg.Iface, r.cfg.ClientID))
	r.formal, r.addr = netip.Prefix{}, netip.Prefix{}
}

// releases are the sequences of the releases one run sent.
type releases []uint64

// acked reports whether a acknowledges one of the releases: an ack for an
// earlier run's release, or one with ACK_SEQUENCE 0, does not.
func (s releases) acked(a *Message) bool {
	return a.AckSeq != 0 && slices.Contains(s, a.AckSeq)
}

// release tells the server the temporary address is free, repeating until it
// acknowledges (the datagram may be lost).
func (r *clientRun) release(ctx context.Context, server netip.Addr, temp, formal netip.Prefix) error {
	to := netip.AddrPortFrom(server, r.port)
	var sent releases
	for try := 0; try < 10; try++ {
		seq := r.seq.Next(r.now())
		sent = append(sent, seq)
		b, err := (&Message{Type: TypeRelease, ClientID: r.cfg.ClientID, Address: temp, Formal: formal, Sequence: seq}).Marshal(r.key)
		if err != nil {
			return err
		}
		if _, err := r.conn.WriteToUDPAddrPort(b, to); err != nil {
			// Transient (a filter, a route not back yet): the next try may pass.
			r.env.Log.Warn("rhcp: release not sent", "to", to, "err", err)
		} else {
			r.env.Emit.Emit(engine.KindRHCPStopSent, engine.Fields{"client_id": r.cfg.ClientID, "type": "release",
				"address": temp.String(), "formal": formal.String(), "server": to.String(), "seq": seq})
		}
		timeout := time.NewTimer(time.Duration(500+250*try) * time.Millisecond)
		select {
		case <-ctx.Done():
			timeout.Stop()
			return ctx.Err()
		case a := <-r.acks:
			timeout.Stop()
			if sent.acked(a) {
				r.env.Progress.Done("server reclaimed")
				return nil
			}
		case <-timeout.C:
		}
	}
	return fmt.Errorf("rhcp_client: server %s did not acknowledge the release of %s after 10 tries; it keeps the address allocated", server, temp)
}
