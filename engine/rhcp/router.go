package rhcp

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/profiles"
)

// maxCached bounds the probe cache: one probe per maintenance address, at
// most this many addresses.
const maxCached = 4096

// AccessRouter is the access_router role (spec CN102244689A claim 6): it
// assigns each device link its point-to-point address, keeps the route
// table "maintenance address → the device's link address", lets the kernel
// forward probes, and optionally caches the latest probe for a link that is
// down and delivers it when the link comes up.
type AccessRouter struct {
	cfg  profiles.AccessRouter
	port uint16

	mu    sync.Mutex
	cache ProbeCache
}

// NewAccessRouter builds the role from its profile section.
func NewAccessRouter(cfg profiles.AccessRouter) *AccessRouter {
	return &AccessRouter{cfg: cfg, port: portOr(cfg.Port)}
}

// Kind implements engine.Role.
func (r *AccessRouter) Kind() string { return "access_router" }

// Run implements engine.Role.
func (r *AccessRouter) Run(ctx context.Context, env *engine.Env) error {
	env.Progress.Plan("forwarding", "link addresses", "maintenance routes")
	if err := env.Host.SetSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("access_router: enable forwarding: %w", err)
	}
	env.Progress.Done("forwarding")
	for _, l := range r.cfg.Links {
		if li, err := env.Host.LinkByName(l.Iface); err != nil {
			return fmt.Errorf("access_router: interface %s: %w", l.Iface, err)
		} else if !li.Up {
			if err := env.Host.SetLinkUp(l.Iface, true); err != nil {
				return fmt.Errorf("access_router: bring %s up: %w", l.Iface, err)
			}
		}
		// The IPCP step: our end and the device's end of the link.
		a := engine.Address{Prefix: l.Address.Prefix, Peer: l.Peer.Prefix}
		if err := env.AddAddress(l.Iface, a, "ipcp"); err != nil {
			return fmt.Errorf("access_router: link address %s on %s: %w", l.Address, l.Iface, err)
		}
	}
	env.Progress.Done("link addresses")
	for _, l := range r.cfg.Links {
		if err := r.installRoutes(env, l); err != nil {
			return err
		}
	}
	env.Progress.Done("maintenance routes")
	if !r.cfg.Cache {
		<-ctx.Done()
		return nil
	}
	return r.runCache(ctx, env)
}

// installRoutes routes the link's maintenance addresses via the device's
// link address, not "dev LINK": on Ethernet stand-ins the router would ARP
// for the maintenance address, which the device does not own yet
// (DESIGN.md "Notes from the field").
func (r *AccessRouter) installRoutes(env *engine.Env, l profiles.AccessLink) error {
	for _, dst := range l.Routes {
		rt := engine.Route{Dst: dst.Prefix.Masked(), Gateway: l.Peer.Addr(), Dev: l.Iface, OnLink: true}
		if err := env.AddRoute(rt, "rhcp"); err != nil {
			return fmt.Errorf("access_router: route %s via %s dev %s: %w", rt.Dst, rt.Gateway, l.Iface, err)
		}
	}
	return nil
}

// runCache watches the device links and the upstream interface: probes for
// a link without carrier are kept; when the link comes up its routes are
// put back (the kernel drops them with the link) and the kept probes sent.
func (r *AccessRouter) runCache(ctx context.Context, env *engine.Env) error {
	links, err := env.Host.WatchLinks(ctx)
	if err != nil {
		return fmt.Errorf("access_router: watch links: %w", err)
	}
	pc, err := env.Host.OpenPacket(r.cfg.Upstream, probeSocket(r.port))
	if err != nil {
		return fmt.Errorf("access_router: packet socket on %s: %w", r.cfg.Upstream, err)
	}
	out, err := env.Host.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 0), engine.UDPOptions{})
	if err != nil {
		pc.Close()
		return fmt.Errorf("access_router: socket for cached probes: %w", err)
	}
	defer out.Close()
	down := map[string]bool{}
	for _, l := range r.cfg.Links {
		if li, err := env.Host.LinkByName(l.Iface); err == nil && !(li.Up && li.Running) {
			down[l.Iface] = true
		}
	}
	probes := make(chan Datagram, 64)
	go readProbes(ctx, env, r.cfg.Upstream, pc, r.port, probes)
	for {
		select {
		case <-ctx.Done():
			return nil
		case li, ok := <-links:
			if !ok {
				return nil
			}
			l, mine := r.link(li.Name)
			if !mine {
				continue
			}
			up := li.Up && li.Running
			was := !down[li.Name]
			down[li.Name] = !up
			if up && !was {
				r.deliver(env, out, l)
			}
		case d, ok := <-probes:
			if !ok {
				return nil
			}
			if l, ok := r.linkFor(d.Dst.Addr()); ok && down[l.Iface] {
				r.mu.Lock()
				r.cache.Put(d, time.Now())
				r.mu.Unlock()
				env.Emit.Emit(engine.KindRHCPProbeReceived, engine.Fields{"dst": d.Dst.Addr().String(), "link": l.Iface, "cached": true})
			}
		}
	}
}

func (r *AccessRouter) deliver(env *engine.Env, out engine.UDPConn, l profiles.AccessLink) {
	if err := r.installRoutes(env, l); err != nil {
		env.Error(err)
	}
	r.mu.Lock()
	held := r.cache.Take(func(a netip.Addr) bool { lf, ok := r.linkFor(a); return ok && lf.Iface == l.Iface })
	r.mu.Unlock()
	for _, d := range held {
		// Sent afresh from our own socket: the probe's HMAC covers the RHCP
		// message, not the IP header, so the device accepts it as it is.
		if _, err := out.WriteToUDPAddrPort(d.Payload, d.Dst); err != nil {
			env.Error(fmt.Errorf("access_router: deliver cached probe to %s: %w", d.Dst, err))
			continue
		}
		env.Emit.Emit(engine.KindRHCPProbeSent, engine.Fields{"dst": d.Dst.Addr().String(), "link": l.Iface, "cached": true})
	}
}

func (r *AccessRouter) link(iface string) (profiles.AccessLink, bool) {
	for _, l := range r.cfg.Links {
		if l.Iface == iface {
			return l, true
		}
	}
	return profiles.AccessLink{}, false
}

// linkFor finds the link whose maintenance routes cover a, longest match.
func (r *AccessRouter) linkFor(a netip.Addr) (profiles.AccessLink, bool) {
	best, bits := profiles.AccessLink{}, -1
	for _, l := range r.cfg.Links {
		for _, p := range l.Routes {
			if p.Masked().Contains(a) && p.Bits() > bits {
				best, bits = l, p.Bits()
			}
		}
	}
	return best, bits >= 0
}

// Report implements engine.Reporter: cached probes show as probe rows.
func (r *AccessRouter) Report(ns *engine.NodeSnapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.cache.entries {
		ns.Probes = append(ns.Probes, engine.ProbeRow{Address: c.d.Dst.Addr().String(), State: "cached", LastSent: c.at})
	}
}

// ProbeCache keeps the latest probe per destination address, bounded.
type ProbeCache struct {
	entries map[netip.Addr]cached
}

type cached struct {
	d  Datagram
	at time.Time
}

// Put keeps d, replacing an older probe to the same address. When full, the
// oldest entry goes.
func (c *ProbeCache) Put(d Datagram, now time.Time) {
	if c.entries == nil {
		c.entries = map[netip.Addr]cached{}
	}
	if _, ok := c.entries[d.Dst.Addr()]; !ok && len(c.entries) >= maxCached {
		var oldest netip.Addr
		var at time.Time
		for a, e := range c.entries {
			if at.IsZero() || e.at.Before(at) {
				oldest, at = a, e.at
			}
		}
		delete(c.entries, oldest)
	}
	c.entries[d.Dst.Addr()] = cached{d, now}
}

// Take removes and returns the probes whose destination matches.
func (c *ProbeCache) Take(match func(netip.Addr) bool) []Datagram {
	var out []Datagram
	for a, e := range c.entries {
		if match(a) {
			out = append(out, e.d)
			delete(c.entries, a)
		}
	}
	return out
}
