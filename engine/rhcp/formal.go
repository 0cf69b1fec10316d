package rhcp

import (
	"context"
	"net/netip"
	"time"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
)

// DHCPAcquirer is the FormalAcquirer of fieldcon's own DHCP client
// (engine/dhcp.Acquire, then dhcp.Keep): unicast to the named server, the
// device as its own relay (giaddr = temporary address, later the formal
// one), client-id option 61 = ESN.
type DHCPAcquirer struct {
	// Timeout bounds one acquisition (default 60s: a lossy link needs
	// several retransmissions, RFC 2131 §4.1).
	Timeout time.Duration
}

// AcquireFormal implements FormalAcquirer. The lease it returns is kept by
// dhcp.Keep: renewed at T1 and rebound at T2 as the device's own relay from
// the formal address, unicast to the same server (the temporary address the
// acquisition relayed from is gone by then).
func (a DHCPAcquirer) AcquireFormal(ctx context.Context, env *engine.Env, req FormalRequest) (FormalLease, error) {
	cfg := dhcp.AcquireConfig{
		Iface:    req.Iface,
		ClientID: dhcp.EncodeClientID(req.ClientID),
		Server:   req.Server,
		GIAddr:   req.Relay,
		Timeout:  a.Timeout,
	}
	lease, err := dhcp.Acquire(ctx, env, cfg)
	if err != nil {
		return FormalLease{}, err
	}
	return FormalLease{
		Address: lease.Address,
		// At least a second: zero would mean forever.
		Lifetime: max(time.Until(lease.Expiry()), time.Second),
		Server:   lease.Server,
		Keep: func(ctx context.Context, env *engine.Env) error {
			keep := cfg
			keep.GIAddr = lease.Address.Addr()
			return dhcp.Keep(ctx, env, keep, lease)
		},
	}, nil
}

// FormalLease is a formal address a FormalAcquirer obtained.
type FormalLease struct {
	Address netip.Prefix
	// Lifetime is how long the address is valid from now (what is left of
	// the DHCP lease): the kernel address's valid and preferred lifetime.
	// Zero means forever.
	Lifetime time.Duration
	// Server is the DHCP server that leased it (for events).
	Server netip.Addr
	// Keep, when set, holds the lease for the rest of its life once the
	// temporary address is gone, refreshing the address's lifetimes on each
	// renewal. It returns nil when ctx ends, and an error wrapping
	// dhcp.ErrLeaseLost once the lease is lost and the address removed.
	Keep func(ctx context.Context, env *engine.Env) error
}
