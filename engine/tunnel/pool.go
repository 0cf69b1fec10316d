package tunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Pool hands out virtual NIC addresses from a prefix. The first address is
// the server's (the gateway clients are given); a client gets back the
// address it had before while it is still reserved for it (a client that
// reconnects, or a server that restarts, keeps addresses stable). Not safe
// for concurrent use; the server serialises access.
type Pool struct {
	prefix  netip.Prefix
	gateway netip.Addr
	byAddr  map[netip.Addr]*Binding
	byKey   map[PublicKey]*Binding
}

// Binding is one address given to one client key. It is what the server
// persists (bucket "tunnel.pool", key: the address).
type Binding struct {
	Address netip.Addr `json:"address"`
	Client  PublicKey  `json:"client"`
	Name    string     `json:"name"`
	Index   uint32     `json:"index"`
	// Seen is the last time the client was heard; bindings without a live
	// tunnel are freed when it is older than the idle timeout.
	Seen time.Time `json:"seen"`
}

// ErrPoolExhausted means every address of the pool is bound.
var ErrPoolExhausted = errors.New("tunnel: address pool exhausted")

// NewPool returns an empty pool for prefix (masked).
func NewPool(prefix netip.Prefix) (*Pool, error) {
	prefix = prefix.Masked()
	if !prefix.Addr().Is4() || prefix.Bits() > 30 {
		return nil, fmt.Errorf("tunnel: pool %s must be IPv4 and at most /30", prefix)
	}
	return &Pool{prefix: prefix, gateway: gatewayOf(prefix), byAddr: map[netip.Addr]*Binding{}, byKey: map[PublicKey]*Binding{}}, nil
}

// gatewayOf is the server's address in a pool of prefix: its first.
func gatewayOf(prefix netip.Prefix) netip.Addr { return prefix.Masked().Addr().Next() }

// Gateway is the server's address in the pool.
func (p *Pool) Gateway() netip.Addr { return p.gateway }

// Prefix is the pool's prefix.
func (p *Pool) Prefix() netip.Prefix { return p.prefix }

// Restore adds a binding loaded from the store.
func (p *Pool) Restore(b Binding) {
	if !p.prefix.Contains(b.Address) || b.Address == p.gateway {
		return
	}
	bb := b
	p.byAddr[b.Address], p.byKey[b.Client] = &bb, &bb
}

// Allocate binds an address to key: its previous one when it has one.
func (p *Pool) Allocate(key PublicKey, name string, now time.Time) (*Binding, error) {
	if b, ok := p.byKey[key]; ok {
		b.Seen, b.Name = now, name
		return b, nil
	}
	last := lastAddr(p.prefix)
	for a := p.gateway.Next(); a.IsValid() && a.Less(last); a = a.Next() {
		if _, used := p.byAddr[a]; !used {
			b := &Binding{Address: a, Client: key, Name: name, Seen: now}
			p.byAddr[a], p.byKey[key] = b, b
			return b, nil
		}
	}
	return nil, ErrPoolExhausted
}

// Free releases an address.
func (p *Pool) Free(a netip.Addr) {
	if b, ok := p.byAddr[a]; ok {
		delete(p.byAddr, a)
		delete(p.byKey, b.Client)
	}
}

// Lookup returns the binding of an address.
func (p *Pool) Lookup(a netip.Addr) (*Binding, bool) {
	b, ok := p.byAddr[a]
	return b, ok
}

// Bindings lists the bindings, in no particular order.
func (p *Pool) Bindings() []Binding {
	out := make([]Binding, 0, len(p.byAddr))
	for _, b := range p.byAddr {
		out = append(out, *b)
	}
	return out
}

// lastAddr is the prefix's broadcast address, which is never handed out.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
