// Package static is the "local configuration" mechanism: it configures the
// addresses and routes a profile gives a node, and with forwarding makes the
// node a router. In RHCP arbitration it is the mechanism that needs no
// network at all, so it usually wins when a profile lists it.
package static

import (
	"context"
	"fmt"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/profiles"
)

// Role is the static role.
type Role struct {
	cfg profiles.Static
}

// New builds the role from its profile section.
func New(cfg profiles.Static) *Role { return &Role{cfg: cfg} }

// Kind implements engine.Role.
func (r *Role) Kind() string { return "static" }

// Persistent implements engine.Persister: a commissioned address may be meant
// to stay after fieldcon exits.
func (r *Role) Persistent() bool { return r.cfg.Persist }

// Run configures forwarding, links, addresses and routes, in that order, then
// waits for ctx: the role holds its configuration until it is stopped.
func (r *Role) Run(ctx context.Context, env *engine.Env) error {
	env.Progress.Plan("links up", "addresses configured", "routes installed")
	if err := r.configure(env); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func (r *Role) configure(env *engine.Env) error {
	if r.cfg.Forwarding {
		for _, key := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
			if err := env.Host.SetSysctl(key, "1"); err != nil {
				return fmt.Errorf("static: enable forwarding (%s): %w", key, err)
			}
		}
	}
	up := map[string]bool{}
	for _, a := range r.cfg.Addresses {
		if up[a.Iface] {
			continue
		}
		if err := env.Host.SetLinkUp(a.Iface, true); err != nil {
			return fmt.Errorf("static: bring %s up (does the interface exist? `ip link` lists them): %w", a.Iface, err)
		}
		up[a.Iface] = true
	}
	env.Progress.Done("links up")
	for _, a := range r.cfg.Addresses {
		addr := engine.Address{Prefix: a.Address.Prefix}
		if a.Peer != nil {
			addr.Peer = a.Peer.Prefix
		}
		if err := env.AddAddress(a.Iface, addr, "static"); err != nil {
			return fmt.Errorf("static: add %s to %s: %w", a.Address, a.Iface, err)
		}
	}
	env.Progress.Done("addresses configured")
	for _, rt := range r.cfg.Routes {
		route := engine.Route{Dst: rt.Dst.Prefix, Dev: rt.Dev, Metric: rt.Metric}
		if rt.Via != nil {
			route.Gateway = rt.Via.Addr
		}
		if err := env.AddRoute(route, "static"); err != nil {
			return fmt.Errorf("static: add route %s: %w", rt.Dst, err)
		}
	}
	env.Progress.Done("routes installed")
	return nil
}
