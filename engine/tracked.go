package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// Tracked wraps a Host and records the inverse of every change made through
// it, so that Undo can remove exactly what a role added (DESIGN.md: everything
// the engine changes on a host it can undo). Reads pass through.
type Tracked struct {
	Host
	emit Emitter

	mu      sync.Mutex
	undo    []undoStep
	sources map[string]string // iface|prefix → source, for address.removed events
	added   []AddressRow      // addresses added through t and not removed since
	// pending holds the addresses and routes that already have an undo
	// step, so adding one again (a renewal, a link that came back) does not
	// stack another: the undo list stays as long as what was changed.
	pending map[string]bool
}

type undoStep struct {
	what string // iproute2-like description, for errors
	do   func() error
}

// routeSourceKey stands in for the interface when remembering the source of
// a route (routes are keyed by destination).
const routeSourceKey = "route"

// NewTracked wraps h. emit may be nil; Undo then emits nothing.
func NewTracked(h Host, emit Emitter) *Tracked {
	return &Tracked{Host: h, emit: emit, sources: map[string]string{}, pending: map[string]bool{}}
}

func (t *Tracked) push(what string, do func() error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.undo = append(t.undo, undoStep{what, do})
}

// pushOnce records an undo step for key unless one is pending already.
func (t *Tracked) pushOnce(key, what string, do func() error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending[key] {
		return
	}
	t.pending[key] = true
	t.undo = append(t.undo, undoStep{what, func() error {
		t.mu.Lock()
		delete(t.pending, key)
		t.mu.Unlock()
		return do()
	}})
}

func (t *Tracked) setSource(iface string, p netip.Prefix, source string) {
	t.mu.Lock()
	t.sources[iface+"|"+p.String()] = source
	t.mu.Unlock()
	// A mechanism under arbitration has its own Tracked over the arbiter's;
	// the one beneath undoes the winner's address at shutdown and reports it
	// in snapshots, so it must know the source too.
	if beneath, ok := t.Host.(*Tracked); ok {
		beneath.setSource(iface, p, source)
	}
}

func (t *Tracked) forgetAddress(iface string, p netip.Prefix) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, a := range t.added {
		if a.Iface == iface && a.Address == p.String() {
			t.added = append(t.added[:i], t.added[i+1:]...)
			return
		}
	}
}

// AddedAddresses returns the addresses added through t that are still there, with
// their sources, for snapshots.
func (t *Tracked) AddedAddresses() []AddressRow {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]AddressRow(nil), t.added...)
	for i := range out {
		out[i].Source = t.sources[out[i].Iface+"|"+out[i].Address]
	}
	return out
}

func (t *Tracked) source(iface string, p netip.Prefix) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sources[iface+"|"+p.String()]
}

// AddAddress adds an address and records its removal.
func (t *Tracked) AddAddress(iface string, a Address) error {
	if err := t.Host.AddAddress(iface, a); err != nil {
		return err
	}
	t.forgetAddress(iface, a.Prefix)
	t.mu.Lock()
	t.added = append(t.added, AddressRow{Iface: iface, Address: a.Prefix.String(), Preferred: a.Preferred, Valid: a.Valid})
	t.mu.Unlock()
	t.pushOnce("addr|"+iface+"|"+a.Prefix.String(), "ip addr del "+a.Prefix.String()+" dev "+iface, func() error {
		err := t.Host.DelAddress(iface, a)
		t.forgetAddress(iface, a.Prefix)
		if err == nil && t.emit != nil {
			t.emit.Emit(KindAddressRemoved, Fields{"iface": iface, "address": a.Prefix.String(), "source": t.source(iface, a.Prefix)})
		}
		return err
	})
	return nil
}

// DelAddress removes an address; a later Undo skips it.
func (t *Tracked) DelAddress(iface string, a Address) error {
	if err := t.Host.DelAddress(iface, a); err != nil {
		return err
	}
	t.forgetAddress(iface, a.Prefix)
	return nil
}

// AddRoute adds a route and records its removal.
func (t *Tracked) AddRoute(r Route) error {
	if err := t.Host.AddRoute(r); err != nil {
		return err
	}
	t.pushOnce("route|"+r.String(), "ip route del "+r.String(), func() error {
		err := t.Host.DelRoute(r)
		if err == nil && t.emit != nil {
			t.emit.Emit(KindRouteRemoved, routeFields(r, t.source(routeSourceKey, r.Dst)))
		}
		return err
	})
	return nil
}

// SetNeighbor sets a neighbour entry and records restoring the previous one
// (or removing it when there was none).
func (t *Tracked) SetNeighbor(n Neighbor) error {
	var prev *Neighbor
	if list, err := t.Host.Neighbors(n.Dev); err == nil {
		for _, o := range list {
			if o.IP == n.IP && o.Permanent {
				o := o
				prev = &o
			}
		}
	}
	if err := t.Host.SetNeighbor(n); err != nil {
		return err
	}
	t.push("ip neigh del "+n.IP.String()+" dev "+n.Dev, func() error {
		if prev != nil {
			return t.Host.SetNeighbor(*prev)
		}
		return t.Host.DelNeighbor(n)
	})
	return nil
}

// SetSysctl sets a sysctl and records restoring its old value.
func (t *Tracked) SetSysctl(key, value string) error {
	old, err := t.Host.Sysctl(key)
	if err != nil {
		return err
	}
	if err := t.Host.SetSysctl(key, value); err != nil {
		return err
	}
	if old != value {
		t.push("sysctl -w "+key+"="+old, func() error { return t.Host.SetSysctl(key, old) })
	}
	return nil
}

// SetLinkUp changes a link's state and records restoring the old one.
func (t *Tracked) SetLinkUp(name string, up bool) error {
	l, err := t.Host.LinkByName(name)
	if err != nil {
		return err
	}
	if err := t.Host.SetLinkUp(name, up); err != nil {
		return err
	}
	if l.Up != up {
		t.push(fmt.Sprintf("ip link set %s %s", name, map[bool]string{true: "up", false: "down"}[l.Up]), func() error {
			return t.Host.SetLinkUp(name, l.Up)
		})
	}
	return nil
}

// CreateTUN creates a TUN device and records closing (and so removing) it.
func (t *Tracked) CreateTUN(name string, mtu int) (TUN, error) {
	dev, err := t.Host.CreateTUN(name, mtu)
	if err != nil {
		return nil, err
	}
	o := &onceTUN{TUN: dev}
	t.push("ip link del "+dev.Name(), o.Close)
	return o, nil
}

// OnUndo registers an arbitrary undo step (nft rules, processes) that runs in
// reverse order with the others.
func (t *Tracked) OnUndo(what string, do func() error) { t.push(what, do) }

// Forget drops the undo steps recorded so far: their changes now persist.
func (t *Tracked) Forget() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.undo = nil
	clear(t.pending)
}

// Pending lists the undo steps not yet run, newest first.
func (t *Tracked) Pending() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.undo))
	for i := len(t.undo) - 1; i >= 0; i-- {
		out = append(out, t.undo[i].what)
	}
	return out
}

// Undo reverts every recorded change, newest first, and reports every step
// that failed. Changes already gone (an address the kernel removed with its
// link) are not errors.
func (t *Tracked) Undo() error {
	t.mu.Lock()
	steps := t.undo
	t.undo = nil
	t.mu.Unlock()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].do(); err != nil && !errors.Is(err, ErrNotExist) {
			errs = append(errs, fmt.Errorf("undo %q: %w", steps[i].what, err))
		}
	}
	return errors.Join(errs...)
}

// ErrNotExist is returned (wrapped) by drivers when the object to remove is
// not there.
var ErrNotExist = errors.New("does not exist")

// onceTUN makes Close idempotent, since both the role and Undo may close.
type onceTUN struct {
	TUN
	once sync.Once
	err  error
}

func (o *onceTUN) Close() error {
	o.once.Do(func() { o.err = o.TUN.Close() })
	return o.err
}
