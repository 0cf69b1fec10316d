package dhcp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fieldcon/fieldcon/engine"
)

// ErrLeaseLost is wrapped by Keep's error when the lease ended: the server
// NAKed a renewal or the lease expired unrenewed (RFC 2131 §4.4.5).
var ErrLeaseLost = errors.New("dhcp: lease lost")

// Keep holds a lease from Acquire, already configured on cfg.Iface, for the
// rest of its life: the client state machine of the dhcp_client role, started
// in BOUND, renews at T1 (RENEWING, unicast to the server), rebinds at T2
// (REBINDING) and gives the address up at expiry (RFC 2131 §4.4.5). cfg says
// how the server is reached now: a device that acquired as its own relay
// (RHCP+DHCP) keeps being one from the leased address (GIAddr), so renewals
// and rebinds go unicast to cfg.Server and the replies come back to
// GIAddr:67, where the device owns the address and a socket; a broadcast
// REBINDING on a point-to-point link would reach no server.
//
// Each renewal sets the address's valid and preferred lifetimes on the host
// from the new lease and is reported as dhcp.lease.renewed, as the
// dhcp_client role reports it. Keep returns nil when ctx ends, leaving the
// address to the caller (and the engine's undo). When the lease is lost it
// removes the address (address.removed) and returns an error wrapping
// ErrLeaseLost with the reason. It does not return for anything else: a
// socket that fails is opened again while the lease lasts.
func Keep(ctx context.Context, env *engine.Env, cfg AcquireConfig, l *Lease) error {
	if l == nil {
		return errors.New("dhcp: keep: no lease")
	}
	l.Iface = cfg.Iface
	for {
		err := keepOnce(ctx, env, &cfg, &l)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrLeaseLost) {
			return err
		}
		if err != nil {
			if !time.Now().Before(l.Expiry()) {
				return dropLease(env, l, "lease expired: "+err.Error())
			}
			env.Log.Warn("dhcp: keeping lease; trying again in a second", "iface", cfg.Iface, "address", l.Address, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
}

// keepOnce runs the client on one set of sockets until ctx ends, the lease
// is lost, the server moves the address (nil: run again from it) or the
// sockets fail.
func keepOnce(ctx context.Context, env *engine.Env, cfg *AcquireConfig, l **Lease) error {
	cio, err := openClientIO(ctx, env, cfg.Iface, cfg.GIAddr, cfg.Server)
	if err != nil {
		return err
	}
	defer cio.close()
	c := NewClient(cfg.client(cio.mac))
	c.SetLease(*l)
	var lost error
	// A lease already past T1 (the caller was busy) renews at once.
	err = loop(ctx, env, cio, c, ProbeConfig{}, c.Tick(time.Now()), func(a Action) (bool, error) {
		switch a.Kind {
		case ActEmit:
			env.Emit.Emit(a.Event, a.Fields)
		case ActBind:
			old := a.Old
			nl := a.Lease
			nl.Iface = cfg.Iface
			if err := renewLease(env, nl, old, a.Fields); err != nil {
				env.Error(err)
			}
			*l = nl
			if old != nil && old.Address != nl.Address {
				// The server moved the address (IP sync): a relay address
				// that was the old one follows it.
				if cfg.GIAddr == old.Address.Addr() {
					cfg.GIAddr = nl.Address.Addr()
				}
				return true, nil
			}
		case ActUnbind:
			reason, _ := a.Fields["reason"].(string)
			lost = dropLease(env, a.Lease, reason)
			return true, nil
		}
		return false, nil
	})
	if lost != nil {
		return lost
	}
	return err
}

// renewLease applies a renewed lease: the address with the new lifetimes (a
// moved address is added and the old one removed), then dhcp.lease.renewed
// with what changed, as ClientRole.bind reports it.
func renewLease(env *engine.Env, l, old *Lease, extra engine.Fields) error {
	if err := applyAddress(env, l, old); err != nil {
		return fmt.Errorf("dhcp: renew %s on %s: %w", l.Address, l.Iface, err)
	}
	if old != nil && old.Address != l.Address {
		if err := env.DelAddress(l.Iface, engine.Address{Prefix: old.Address}, "dhcp"); err != nil && !errors.Is(err, engine.ErrNotExist) {
			env.Error(fmt.Errorf("dhcp: remove old address %s: %w", old.Address, err))
		}
	}
	f := engine.Fields{"iface": l.Iface, "address": l.Address.String(), "server": l.Server.String(),
		"lease_time": l.LeaseTime.String(), "changed": l.Diff(old)}
	if l.CloudServer.IsValid() {
		f["cloud_server"] = l.CloudServer.String()
	}
	for k, v := range extra {
		f[k] = v
	}
	env.Emit.Emit(engine.KindDHCPRenewed, f)
	return nil
}

// dropLease removes a lost lease's address and returns the ErrLeaseLost
// error. The kernel may have removed the address first (its valid lifetime
// is the lease's): address.removed is reported either way.
func dropLease(env *engine.Env, l *Lease, reason string) error {
	err := env.DelAddress(l.Iface, engine.Address{Prefix: l.Address}, "dhcp")
	switch {
	case errors.Is(err, engine.ErrNotExist):
		env.Emit.Emit(engine.KindAddressRemoved, engine.Fields{"iface": l.Iface, "address": l.Address.String(), "source": "dhcp"})
	case err != nil:
		env.Error(fmt.Errorf("dhcp: remove %s after losing its lease: %w", l.Address, err))
	}
	return fmt.Errorf("%w: %s on %s from %s: %s", ErrLeaseLost, l.Address, l.Iface, l.Server, reason)
}
