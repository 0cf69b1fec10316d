// Package arbitrate runs a device's address mechanisms side by side (static
// from the profile, RHCP, RHCP+DHCP, plain DHCP; spec CN102244689A and
// DESIGN.md §1 "Arbitration"): every mechanism the device supports starts,
// the first formal address wins, the others stop and undo what they did. If
// the device already has a formal address where the mechanisms would put
// one (Scope: their interfaces and address families), none starts.
package arbitrate

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/fieldcon/fieldcon/engine"
)

// mechanisms names the mechanisms a role kind can provide.
func mechanisms(kind string) []string {
	switch kind {
	case "static":
		return []string{"static"}
	case "rhcp_client":
		return []string{"rhcp", "rhcp+dhcp"}
	case "dhcp_client":
		return []string{"dhcp"}
	}
	return nil
}

// Temporarier is implemented by roles whose addresses may be temporary (the
// RHCP address of RHCP+DHCP): those do not win arbitration.
type Temporarier interface {
	Temporary(address string) bool
}

// Scope is what the mechanisms configure: the formal-address check looks
// only there. A device's other interfaces (a management port, an uplink) and
// the other address family (an IPv6 SLAAC address next to IPv4 RHCP) do not
// mean the device already has the address the mechanisms would give it.
type Scope struct {
	// Ifaces the mechanisms configure; empty means every interface.
	Ifaces []string
	// IPv4 and IPv6 say which families they configure; neither means both.
	IPv4, IPv6 bool
}

// covers reports whether an address on iface is in the scope.
func (s Scope) covers(a engine.Address) bool {
	if !s.IPv4 && !s.IPv6 {
		return true
	}
	ip := a.Prefix.Addr()
	return ip.Is4() && s.IPv4 || !ip.Is4() && s.IPv6
}

// Wrap replaces the roles that provide one of the listed mechanisms with one
// Arbiter running them. With no mechanisms listed the roles run as they are.
func Wrap(listed []string, roles []engine.Role) []engine.Role {
	return WrapScoped(listed, Scope{}, roles)
}

// WrapScoped is Wrap with the formal-address check limited to scope.
func WrapScoped(listed []string, scope Scope, roles []engine.Role) []engine.Role {
	if len(listed) == 0 {
		return roles
	}
	var out, mechs []engine.Role
	at := -1
	for _, r := range roles {
		if provides(listed, r.Kind()) {
			if at < 0 {
				at = len(out)
				out = append(out, nil)
			}
			mechs = append(mechs, r)
			continue
		}
		out = append(out, r)
	}
	if at < 0 {
		return roles
	}
	a := New(mechs)
	a.scope = scope
	out[at] = a
	return out
}

func provides(listed []string, kind string) bool {
	for _, m := range mechanisms(kind) {
		for _, l := range listed {
			if l == m {
				return true
			}
		}
	}
	return false
}

// Arbiter is the role that runs the mechanisms.
type Arbiter struct {
	mechs []engine.Role
	scope Scope

	mu       sync.Mutex
	winner   string
	children []*child
}

type child struct {
	role     engine.Role
	host     *engine.Tracked
	progress *engine.Progress
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
}

// New returns an arbiter over the mechanism roles.
func New(mechs []engine.Role) *Arbiter { return &Arbiter{mechs: mechs} }

// Roles implements engine.Container: the mechanisms the arbiter runs.
func (a *Arbiter) Roles() []engine.Role { return append([]engine.Role(nil), a.mechs...) }

// Kind implements engine.Role.
func (a *Arbiter) Kind() string { return "arbiter" }

// Winner is the mechanism that gave the formal address, or "".
func (a *Arbiter) Winner() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.winner
}

// Persistent implements engine.Persister: the winner's say.
func (a *Arbiter) Persistent() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.children {
		if c.role.Kind() == a.winnerKindLocked() {
			if p, ok := c.role.(engine.Persister); ok {
				return p.Persistent()
			}
		}
	}
	return false
}

func (a *Arbiter) winnerKindLocked() string {
	for _, c := range a.children {
		for _, m := range mechanisms(c.role.Kind()) {
			if m == a.winner {
				return c.role.Kind()
			}
		}
	}
	return ""
}

// FormalAddress reports whether addrs holds a formal address: a global
// unicast address that is not a point-to-point link address (the PPP/IPCP
// address a device has before any mechanism ran is not formal).
func FormalAddress(addrs []engine.Address) (netip.Prefix, bool) {
	for _, a := range addrs {
		ip := a.Prefix.Addr()
		if a.Peer.IsValid() || !ip.IsGlobalUnicast() || ip.IsLoopback() {
			continue
		}
		return a.Prefix, true
	}
	return netip.Prefix{}, false
}

type winEvent struct {
	mechanism, address, kind string
}

// Run implements engine.Role.
func (a *Arbiter) Run(ctx context.Context, env *engine.Env) error {
	names := make([]string, len(a.mechs))
	for i, m := range a.mechs {
		names[i] = m.Kind()
	}
	env.Progress.Plan("formal address check", "mechanisms started", "won")
	// A restarted arbiter starts afresh: no winner, no children of the last run.
	a.mu.Lock()
	a.winner, a.children = "", nil
	a.mu.Unlock()
	addrs, err := a.scopedAddresses(env.Host)
	if err != nil {
		return err
	}
	if p, ok := FormalAddress(addrs); ok {
		env.Progress.Done("formal address check")
		for _, n := range names {
			env.Emit.Emit(engine.KindMechanismStopped, engine.Fields{"mechanism": n, "reason": "formal address " + p.String() + " already present; not started"})
		}
		<-ctx.Done()
		return nil
	}
	env.Progress.Done("formal address check")
	won := make(chan winEvent, len(a.mechs))
	var once sync.Once
	for _, r := range a.mechs {
		a.start(ctx, env, r, func(w winEvent) { once.Do(func() { won <- w }) })
	}
	env.Progress.Done("mechanisms started")
	select {
	case <-ctx.Done():
		a.stopAll(env, "", "stopped")
		return nil
	case w := <-won:
		a.mu.Lock()
		a.winner = w.mechanism
		a.mu.Unlock()
		env.Emit.Emit(engine.KindMechanismWon, engine.Fields{"mechanism": w.mechanism, "address": w.address, "role": w.kind})
		env.Progress.Done("won")
		a.stopAll(env, w.kind, "lost to "+w.mechanism)
	}
	<-ctx.Done()
	a.stopAll(env, "", "stopped")
	return nil
}

// scopedAddresses lists the host's addresses the formal-address check
// considers (Scope).
func (a *Arbiter) scopedAddresses(h engine.Host) ([]engine.Address, error) {
	ifaces := a.scope.Ifaces
	if len(ifaces) == 0 {
		ifaces = []string{""}
	}
	var out []engine.Address
	for _, iface := range ifaces {
		addrs, err := h.Addresses(iface)
		if errors.Is(err, engine.ErrNotExist) {
			continue // not there yet (a PPP link comes up later): no address
		}
		if err != nil {
			return nil, fmt.Errorf("arbiter: addresses of %s: %w", ifaceName(iface), err)
		}
		for _, ad := range addrs {
			if a.scope.covers(ad) {
				out = append(out, ad)
			}
		}
	}
	return out, nil
}

func ifaceName(iface string) string {
	if iface == "" {
		return "every interface"
	}
	return iface
}

// start runs one mechanism with its own undo record, watching its events
// for the first formal address.
func (a *Arbiter) start(ctx context.Context, env *engine.Env, r engine.Role, win func(winEvent)) {
	cctx, cancel := context.WithCancel(ctx)
	c := &child{role: r, progress: engine.NewProgress(r.Kind()), cancel: cancel, done: make(chan struct{})}
	em := &watch{Emitter: env.Emit, c: c, host: env.Host, win: win}
	// Nested on the arbiter's own record: what a mechanism does is undone by
	// the arbiter when it loses, and by the engine when the arbiter stops.
	c.host = engine.NewTracked(env.Host, em)
	cenv := &engine.Env{Node: env.Node, Host: c.host, Emit: em, Store: env.Store, Progress: c.progress, Log: env.Log.With("mechanism", r.Kind())}
	a.mu.Lock()
	a.children = append(a.children, c)
	a.mu.Unlock()
	go func() {
		defer close(c.done)
		c.progress.SetStatus(engine.StatusRunning)
		c.err = r.Run(cctx, cenv)
		if c.err != nil && cctx.Err() == nil {
			c.progress.SetStatus(engine.StatusFailed)
			c.progress.SetError(c.err.Error())
			env.Emit.Emit(engine.KindError, engine.Fields{"role": r.Kind(), "message": c.err.Error()})
		}
	}()
}

// stopAll stops every mechanism but keep, undoing its changes.
func (a *Arbiter) stopAll(env *engine.Env, keep, reason string) {
	a.mu.Lock()
	children := append([]*child(nil), a.children...)
	a.mu.Unlock()
	for _, c := range children {
		if c.role.Kind() == keep {
			continue
		}
		select {
		case <-c.done:
			if reason == "stopped" {
				continue // already reported
			}
		default:
		}
		c.cancel()
		<-c.done
		if keep != "" {
			if err := c.host.Undo(); err != nil {
				env.Error(err)
			}
			c.progress.SetStatus(engine.StatusStopped)
			env.Emit.Emit(engine.KindMechanismStopped, engine.Fields{"mechanism": c.role.Kind(), "reason": reason})
		}
	}
}

// watch forwards a mechanism's events and spots its first formal address.
type watch struct {
	engine.Emitter
	c    *child
	host *engine.Tracked
	win  func(winEvent)
}

func (w *watch) Emit(kind string, f engine.Fields) {
	w.Emitter.Emit(kind, f)
	if kind != engine.KindAddressAdded {
		return
	}
	addr, _ := f["address"].(string)
	iface, _ := f["iface"].(string)
	source, _ := f["source"].(string)
	if source == "ipcp" || w.isPeer(iface, addr) {
		return
	}
	if t, ok := w.c.role.(Temporarier); ok && t.Temporary(addr) {
		return
	}
	mech := mechanisms(w.c.role.Kind())
	name := w.c.role.Kind()
	switch {
	case len(mech) == 1:
		name = mech[0]
	case w.c.role.Kind() == "rhcp_client" && source == "dhcp":
		name = "rhcp+dhcp"
	case w.c.role.Kind() == "rhcp_client":
		name = "rhcp"
	}
	w.win(winEvent{mechanism: name, address: addr, kind: w.c.role.Kind()})
}

// isPeer reports whether the address is a point-to-point link address (not
// a formal one).
func (w *watch) isPeer(iface, addr string) bool {
	list, err := w.host.Addresses(iface)
	if err != nil {
		return false
	}
	for _, a := range list {
		if a.Prefix.String() == addr && a.Peer.IsValid() {
			return true
		}
	}
	return false
}

// Report implements engine.Reporter: the winner, the mechanisms' own rows
// and progress, and which of their addresses are temporary. (Sources reach
// the arbiter's record through engine.Tracked itself.)
func (a *Arbiter) Report(ns *engine.NodeSnapshot) {
	a.mu.Lock()
	children := append([]*child(nil), a.children...)
	ns.Winner = a.winner
	a.mu.Unlock()
	for _, c := range children {
		ns.Roles = append(ns.Roles, c.progress.Snapshot())
		if t, ok := c.role.(Temporarier); ok {
			for _, row := range c.host.AddedAddresses() {
				for i := range ns.Addresses {
					if ns.Addresses[i].Iface == row.Iface && ns.Addresses[i].Address == row.Address {
						ns.Addresses[i].Temporary = t.Temporary(row.Address)
					}
				}
			}
		}
		if r, ok := c.role.(engine.Reporter); ok {
			r.Report(ns)
		}
	}
}
