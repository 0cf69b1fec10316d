package engine

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/fieldcon/fieldcon/engine/store"
)

// Role is one job a node does (static addressing, an RHCP client, a DHCP
// server, ...). A role is a value built from its profile section; Run works
// until ctx ends or the job is finished and returns. Whatever it changed on
// the host through env.Host is undone after Run returns, unless the role is a
// Persister that says its result is meant to persist.
type Role interface {
	// Kind is the role's profile name, e.g. "static" or "rhcp_client".
	Kind() string
	Run(ctx context.Context, env *Env) error
}

// Persister is implemented by roles whose host changes outlive them (a
// commissioned address usually is meant to stay).
type Persister interface {
	Persistent() bool
}

// Reporter is implemented by roles that contribute rows to snapshots (leases,
// NAT mappings, tunnels). Report must be quick and safe to call concurrently
// with Run.
type Reporter interface {
	Report(s *NodeSnapshot)
}

// Env is what a running role is given.
type Env struct {
	Node string
	// Host records every change so it can be undone (see Tracked).
	Host *Tracked
	Emit Emitter
	// Store is the node's embedded store (may be nil when the node has none).
	Store *store.Store
	// Progress is the role's step list shown in the overview.
	Progress *Progress
	Log      *slog.Logger
}

// AddAddress adds an address and emits address.added with its source
// (static, rhcp, dhcp, ipcp, tunnel, hop).
func (e *Env) AddAddress(iface string, a Address, source string) error {
	if err := e.Host.AddAddress(iface, a); err != nil {
		return err
	}
	e.Host.setSource(iface, a.Prefix, source)
	e.Emit.Emit(KindAddressAdded, Fields{"iface": iface, "address": a.Prefix.String(), "source": source})
	return nil
}

// DelAddress removes an address and emits address.removed.
func (e *Env) DelAddress(iface string, a Address, source string) error {
	if err := e.Host.DelAddress(iface, a); err != nil {
		return err
	}
	e.Emit.Emit(KindAddressRemoved, Fields{"iface": iface, "address": a.Prefix.String(), "source": source})
	return nil
}

// AddRoute adds a route and emits route.added.
func (e *Env) AddRoute(r Route, source string) error {
	if err := e.Host.AddRoute(r); err != nil {
		return err
	}
	e.Host.setSource(routeSourceKey, r.Dst, source)
	e.Emit.Emit(KindRouteAdded, routeFields(r, source))
	return nil
}

// DelRoute removes a route and emits route.removed.
func (e *Env) DelRoute(r Route, source string) error {
	if err := e.Host.DelRoute(r); err != nil {
		return err
	}
	e.Emit.Emit(KindRouteRemoved, routeFields(r, source))
	return nil
}

// Error emits an error event with a message a person can act on.
func (e *Env) Error(err error) {
	e.Emit.Emit(KindError, Fields{"message": err.Error()})
}

func routeFields(r Route, source string) Fields {
	f := Fields{"dst": r.Dst.String(), "source": source}
	if r.Gateway.IsValid() {
		f["via"] = r.Gateway.String()
	}
	if r.Dev != "" {
		f["dev"] = r.Dev
	}
	return f
}

// StaticPrefix is a helper for roles: the host prefix /32 or /128 of an address.
func StaticPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}
