package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/profiles"
)

// RelayConfig configures the relay logic.
type RelayConfig struct {
	// Downstream maps each client-facing interface to its IPv4 address
	// (the giaddr this relay puts in requests from it).
	Downstream map[string]netip.Addr
	// Upstream is the interface toward the servers: the only one replies
	// are taken from.
	Upstream string
	// Servers are where requests go; replies are taken from them and from
	// ReplyFrom (the servers behind a chain of relays).
	Servers   []netip.Addr
	ReplyFrom []netip.Addr
	RemoteID  string
	MaxHops   uint8
}

// Reasons the relay drops a BOOTREPLY (dhcp.relay.reply.dropped "reason",
// docs/protocols/dhcp.md "Relay").
const (
	// RelayDropDownstream: the reply arrived on a client-facing port. Only
	// servers answer BOOTREQUESTs, and the servers are upstream; a reply
	// from a client port is a rogue (or misconfigured) server that would
	// otherwise reach the clients of every port.
	RelayDropDownstream = "downstream-port"
	// RelayDropNotServer: upstream, but from an address that is not one of
	// the configured servers.
	RelayDropNotServer = "not-a-server"
	// RelayDropNotOurs: giaddr is none of this relay's addresses.
	RelayDropNotOurs = "not-our-giaddr"
	// RelayDropCircuit: option 82 names a circuit this relay does not have.
	RelayDropCircuit = "unknown-circuit"
)

// Relay is the relay agent's logic (RFC 1542 §4, RFC 3046), without I/O.
type Relay struct {
	cfg     RelayConfig
	sources map[netip.Addr]bool // servers and reply_from
}

// NewRelay returns the relay logic.
func NewRelay(cfg RelayConfig) *Relay {
	if cfg.MaxHops == 0 {
		cfg.MaxHops = 16
	}
	r := &Relay{cfg: cfg, sources: map[netip.Addr]bool{}}
	for _, a := range append(append([]netip.Addr(nil), cfg.Servers...), cfg.ReplyFrom...) {
		r.sources[a.Unmap()] = true
	}
	return r
}

// Forward is one datagram the relay sends: Msg to To, out of Iface when
// set (downstream broadcasts need it).
type Forward struct {
	Msg   *dhcpv4.DHCPv4
	To    netip.AddrPort
	Iface string
}

// Request relays a BOOTREQUEST received on a downstream interface. The
// first relay sets giaddr and adds option 82 (circuit-id = receiving
// interface, remote-id = this device's ESN); a later relay in a chain only
// counts the hop (RFC 3046 §2.1: giaddr set means another relay already
// added its information).
func (r *Relay) Request(m *dhcpv4.DHCPv4, iface string) []Forward {
	if m.OpCode != dhcpv4.OpcodeBootRequest || m.HopCount >= r.cfg.MaxHops {
		return nil
	}
	gi := ipFrom(m.GatewayIPAddr)
	if !gi.IsValid() || gi.IsUnspecified() {
		own, ok := r.cfg.Downstream[iface]
		if !ok {
			return nil
		}
		if m.Options.Has(dhcpv4.OptionRelayAgentInformation) {
			// RFC 3046 §2.1: option 82 from a client (giaddr zero) on an
			// untrusted port is discarded.
			return nil
		}
		m.GatewayIPAddr = net.IP(own.AsSlice())
		sub := []dhcpv4.Option{dhcpv4.OptGeneric(dhcpv4.AgentCircuitIDSubOption, []byte(iface))}
		if r.cfg.RemoteID != "" {
			sub = append(sub, dhcpv4.OptGeneric(dhcpv4.AgentRemoteIDSubOption, []byte(r.cfg.RemoteID)))
		}
		m.UpdateOption(dhcpv4.OptRelayAgentInfo(sub...))
	}
	m.HopCount++
	out := make([]Forward, 0, len(r.cfg.Servers))
	for _, s := range r.cfg.Servers {
		out = append(out, Forward{Msg: m, To: netip.AddrPortFrom(s, ServerPort)})
	}
	return out
}

// Reply relays a BOOTREPLY that arrived on the interface in from the
// address from, back to the client's port: the one the circuit-id names,
// else the one that owns giaddr. Option 82 is removed (RFC 3046 §2.2).
//
// Only replies that arrive on the upstream interface from a configured
// server are relayed; the rest are dropped with the reason (one of
// RelayDrop*). RFC 1542 §4.1.2 only ever has a relay forward a BOOTREPLY
// from the server side to a client; a relay that took one from a client
// port would carry a rogue server on one port to the clients of all ports
// (the threat RFC 7610 answers for DHCPv6, and DHCP snooping for DHCPv4).
func (r *Relay) Reply(m *dhcpv4.DHCPv4, from netip.Addr, in string) ([]Forward, string) {
	if m.OpCode != dhcpv4.OpcodeBootReply {
		return nil, ""
	}
	if in != r.cfg.Upstream {
		return nil, RelayDropDownstream
	}
	if !r.sources[from.Unmap()] {
		return nil, RelayDropNotServer
	}
	gi := ipFrom(m.GatewayIPAddr)
	iface := ""
	for name, a := range r.cfg.Downstream {
		if a == gi {
			iface = name
		}
	}
	if iface == "" {
		return nil, RelayDropNotOurs
	}
	if rai := m.RelayAgentInfo(); rai != nil {
		if c := string(rai.Get(dhcpv4.AgentCircuitIDSubOption)); c != "" {
			if _, ok := r.cfg.Downstream[c]; !ok {
				return nil, RelayDropCircuit
			}
			iface = c
		}
		m.DeleteOption(dhcpv4.OptionRelayAgentInformation)
	}
	// RFC 2131 §4.1: to ciaddr when set; otherwise broadcast on the port
	// (the relay does not own an ARP entry for yiaddr).
	to := netip.AddrPortFrom(bcast4, ClientPort)
	if ci := ipFrom(m.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() && m.MessageType() != dhcpv4.MessageTypeNak {
		to = netip.AddrPortFrom(ci, ClientPort)
	}
	return []Forward{{Msg: m, To: to, Iface: iface}}, ""
}

// RelayRole is the dhcp_relay role.
type RelayRole struct {
	cfg profiles.DHCPRelay

	mu    sync.Mutex
	stats RelayStats
	// Drop events are rate-limited (as rhcp.probe.rejected is): a rogue
	// flooding a port must not flood the event bus.
	dropWindow time.Time
	dropEvents int
	suppressed int
}

// RelayStats counts what the relay did with the BOOTREPLYs it read.
type RelayStats struct {
	// Replies are BOOTREPLYs relayed to a client port.
	Replies int64
	// Dropped are BOOTREPLYs not relayed, by reason (RelayDrop*).
	Dropped map[string]int64
}

// maxDropEvents is how many dhcp.relay.reply.dropped events the relay emits
// per second; the rest are counted and reported with the next one.
const maxDropEvents = 20

// NewRelayRole builds the role from its profile section.
func NewRelayRole(cfg profiles.DHCPRelay) *RelayRole { return &RelayRole{cfg: cfg} }

// Kind implements engine.Role.
func (r *RelayRole) Kind() string { return "dhcp_relay" }

// Stats returns the relay's reply counters.
func (r *RelayRole) Stats() RelayStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Dropped = make(map[string]int64, len(r.stats.Dropped))
	for k, v := range r.stats.Dropped {
		s.Dropped[k] = v
	}
	return s
}

// Run implements engine.Role.
func (r *RelayRole) Run(ctx context.Context, env *engine.Env) error {
	env.Progress.Plan("listening")
	rc := RelayConfig{Downstream: map[string]netip.Addr{}, Upstream: r.cfg.Upstream, RemoteID: r.cfg.RemoteID, MaxHops: uint8(r.cfg.MaxHops)}
	for _, s := range r.cfg.Servers {
		rc.Servers = append(rc.Servers, s.Addr)
	}
	for _, s := range r.cfg.ReplyFrom {
		rc.ReplyFrom = append(rc.ReplyFrom, s.Addr)
	}
	for _, iface := range r.cfg.Downstream {
		ps, err := WaitIPv4(ctx, env, iface, 5*time.Second)
		if err != nil {
			return fmt.Errorf("dhcp relay: %w", err)
		}
		if len(ps) == 0 {
			return fmt.Errorf("dhcp relay: %s has no IPv4 address to use as giaddr; configure it first (static role)", iface)
		}
		rc.Downstream[iface] = ps[0].Addr()
	}
	relay := NewRelay(rc)
	conns := map[string]engine.UDPConn{}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, iface := range append(append([]string(nil), r.cfg.Downstream...), r.cfg.Upstream) {
		// SO_BINDTODEVICE: each socket reads only what arrived on its
		// interface, so the socket a reply was read from tells its port.
		c, err := env.Host.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), ServerPort),
			engine.UDPOptions{Device: iface, Broadcast: true, ReuseAddr: true})
		if err != nil {
			return fmt.Errorf("dhcp relay: listen on %s port 67: %w", iface, err)
		}
		conns[iface] = c
	}
	env.Progress.Done("listening")
	var wg sync.WaitGroup
	for iface, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.serve(ctx, env, relay, iface, c, conns)
		}()
	}
	<-ctx.Done()
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	return nil
}

func (r *RelayRole) serve(ctx context.Context, env *engine.Env, relay *Relay, iface string, c engine.UDPConn, conns map[string]engine.UDPConn) {
	buf := make([]byte, 65536)
	downstream := iface != r.cfg.Upstream
	for ctx.Err() == nil {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			continue
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		var fwd []Forward
		switch {
		case m.OpCode == dhcpv4.OpcodeBootRequest && downstream:
			fwd = relay.Request(m, iface)
		case m.OpCode == dhcpv4.OpcodeBootReply:
			var drop string
			fwd, drop = relay.Reply(m, from.Addr(), iface)
			r.countReply(env, m, from, iface, drop)
		}
		for _, f := range fwd {
			// Requests leave through the upstream socket (a socket bound to
			// the downstream port could not route to the server); replies
			// through the socket of the client's port.
			out := conns[r.cfg.Upstream]
			if f.Iface != "" {
				out = conns[f.Iface]
			}
			if _, err := out.WriteToUDPAddrPort(f.Msg.ToBytes(), f.To); err != nil {
				env.Log.Warn("dhcp relay: send failed", "to", f.To, "err", err)
			}
		}
	}
}

// countReply counts a BOOTREPLY relayed (drop "") or dropped, and reports a
// drop as dhcp.relay.reply.dropped, at most maxDropEvents a second.
func (r *RelayRole) countReply(env *engine.Env, m *dhcpv4.DHCPv4, from netip.AddrPort, iface, drop string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if drop == "" {
		r.stats.Replies++
		return
	}
	if r.stats.Dropped == nil {
		r.stats.Dropped = map[string]int64{}
	}
	r.stats.Dropped[drop]++
	now := time.Now()
	if now.Sub(r.dropWindow) >= time.Second {
		r.dropWindow, r.dropEvents = now, 0
	}
	if r.dropEvents >= maxDropEvents {
		r.suppressed++
		return
	}
	r.dropEvents++
	f := engine.Fields{"reason": drop, "from": from.String(), "iface": iface,
		"type": m.MessageType().String(), "xid": m.TransactionID.String(), "giaddr": ipFrom(m.GatewayIPAddr).String()}
	if r.suppressed > 0 {
		f["suppressed"] = r.suppressed
		r.suppressed = 0
	}
	env.Emit.Emit(engine.KindRelayReplyDropped, f)
}
