package dhcp

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/profiles"
)

// ClientRole is the dhcp_client role: it keeps an address on one interface
// for as long as it runs, and applies what the server pushes (IP sync).
type ClientRole struct {
	cfg profiles.DHCPClient

	mu     sync.Mutex
	lease  *Lease
	state  State
	mac    string
	pinned string
}

// NewClientRole builds the role from its profile section.
func NewClientRole(cfg profiles.DHCPClient) *ClientRole { return &ClientRole{cfg: cfg} }

// Kind implements engine.Role.
func (r *ClientRole) Kind() string { return "dhcp_client" }

// Persistent implements engine.Persister.
func (r *ClientRole) Persistent() bool { return r.cfg.Persist }

// EncodeClientID turns a profile client_id into option 61 bytes: "hex:..."
// is taken as is; anything else is an ESN string, sent with type 0 (RFC 2132
// §9.14: "not a hardware address").
func EncodeClientID(s string) []byte {
	if s == "" {
		return nil
	}
	if h, ok := strings.CutPrefix(s, "hex:"); ok {
		b, err := hex.DecodeString(h)
		if err == nil {
			return b
		}
	}
	return append([]byte{0}, s...)
}

const clientBucket = "dhcp.client"

func (r *ClientRole) clientConfig() ClientConfig {
	c := r.cfg
	cc := ClientConfig{
		ClientID: EncodeClientID(c.ClientID), VendorClass: c.VendorClass, Hostname: c.Hostname,
		Backoff:     Backoff{Initial: c.RetransmitInitial.Duration, Max: c.RetransmitMax.Duration},
		RapidCommit: c.RapidCommit, Probe: c.ArpProbe, DeclineWait: c.DeclineWait.Duration,
		NonceCapable: c.ForceRenew == nil || *c.ForceRenew,
	}
	if c.Server != nil {
		cc.Server = c.Server.Addr
	}
	return cc
}

// Run implements engine.Role.
func (r *ClientRole) Run(ctx context.Context, env *engine.Env) error {
	env.Progress.Plan("offer received", "lease bound")
	cio, err := openClientIO(ctx, env, r.cfg.Iface, netip.Addr{}, r.serverAddr())
	if err != nil {
		return err
	}
	defer cio.close()
	cc := r.clientConfig()
	cc.MAC = cio.mac
	r.mu.Lock()
	r.mac = cio.mac.String()
	r.mu.Unlock()
	// INIT-REBOOT (RFC 2131 §3.2) with the address of a lease that has not
	// expired yet.
	var prev Lease
	if env.Store != nil && env.Store.Get(clientBucket, r.cfg.Iface, &prev) == nil && time.Now().Before(prev.Expiry()) {
		cc.Previous = prev.Address.Addr()
	}
	c := NewClient(cc)
	pc := ProbeConfig{Count: r.cfg.ProbeCount, Interval: r.cfg.ProbeInterval.Duration, Wait: r.cfg.ProbeWait.Duration}
	err = loop(ctx, env, cio, c, pc, c.Start(time.Now()), func(a Action) (bool, error) {
		r.mu.Lock()
		r.state = c.State()
		r.mu.Unlock()
		return false, r.handle(env, c, a)
	})
	if r.cfg.ReleaseOnStop && c.Lease() != nil {
		for _, a := range c.Release(time.Now()) {
			if a.Kind == ActSend {
				if err := cio.send(a); err != nil {
					env.Error(fmt.Errorf("dhcp client: release: %w", err))
				}
			} else {
				r.handle(env, c, a)
			}
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

func (r *ClientRole) serverAddr() netip.Addr {
	if r.cfg.Server != nil {
		return r.cfg.Server.Addr
	}
	return netip.Addr{}
}

func (r *ClientRole) handle(env *engine.Env, c *Client, a Action) error {
	switch a.Kind {
	case ActEmit:
		env.Emit.Emit(a.Event, a.Fields)
	case ActBind:
		return r.bind(env, a)
	case ActUnbind:
		r.unbind(env, a)
	}
	return nil
}

// bind applies a lease: for a renewal only what changed (IP sync: the
// address, the cloud server), then pins the server's neighbour entry.
func (r *ClientRole) bind(env *engine.Env, a Action) error {
	l, old := a.Lease, a.Old
	l.Iface = r.cfg.Iface
	if err := applyAddress(env, l, old); err != nil {
		return fmt.Errorf("dhcp client: configure %s on %s: %w", l.Address, l.Iface, err)
	}
	if old != nil && old.Address != l.Address {
		if err := env.DelAddress(l.Iface, engine.Address{Prefix: old.Address}, "dhcp"); err != nil && !errors.Is(err, engine.ErrNotExist) {
			env.Error(fmt.Errorf("dhcp client: remove old address %s: %w", old.Address, err))
		}
	}
	if r.cfg.Routes {
		if err := applyRoute(env, l, old); err != nil {
			env.Error(fmt.Errorf("dhcp client: default route via %s: %w", l.Routers[0], err))
		}
	}
	if r.cfg.PinServer {
		r.pin(env, l)
	}
	if env.Store != nil {
		if err := env.Store.Put(clientBucket, l.Iface, l); err != nil {
			env.Error(fmt.Errorf("dhcp client: store lease: %w", err))
		}
	}
	r.mu.Lock()
	r.lease, r.state = l, StateBound
	r.mu.Unlock()
	f := engine.Fields{"iface": l.Iface, "address": l.Address.String(), "server": l.Server.String(),
		"lease_time": l.LeaseTime.String()}
	if l.CloudServer.IsValid() {
		f["cloud_server"] = l.CloudServer.String()
	}
	if l.RapidCommit {
		f["rapid_commit"] = true
	}
	for k, v := range a.Fields {
		f[k] = v
	}
	env.Progress.Done("offer received")
	env.Progress.Done("lease bound")
	if old == nil {
		env.Emit.Emit(engine.KindDHCPBound, f)
		return nil
	}
	f["changed"] = l.Diff(old)
	env.Emit.Emit(engine.KindDHCPRenewed, f)
	return nil
}

// pin makes the server's (or relay's) IP-MAC pair a permanent neighbour
// entry, so a forged ARP reply cannot redirect the client's traffic to it
// (the kernel never lets ARP override a PERMANENT entry).
func (r *ClientRole) pin(env *engine.Env, l *Lease) {
	if len(l.ServerMAC) != 6 || !l.ServerIP.IsValid() || !l.Address.Contains(l.ServerIP) {
		return
	}
	key := l.ServerIP.String() + "|" + l.ServerMAC.String()
	if r.pinned == key {
		return
	}
	n := engine.Neighbor{Dev: l.Iface, IP: l.ServerIP, MAC: l.ServerMAC, Permanent: true}
	if err := env.Host.SetNeighbor(n); err != nil {
		env.Error(fmt.Errorf("dhcp client: pin neighbour %s: %w", l.ServerIP, err))
		return
	}
	r.pinned = key
	env.Emit.Emit(engine.KindNeighborPinned, engine.Fields{"iface": l.Iface, "ip": l.ServerIP.String(), "mac": l.ServerMAC.String()})
}

func (r *ClientRole) unbind(env *engine.Env, a Action) {
	l := a.Lease
	reason, _ := a.Fields["reason"].(string)
	if reason == "released" {
		env.Emit.Emit(engine.KindDHCPReleased, engine.Fields{"iface": r.cfg.Iface, "address": l.Address.String(), "server": l.Server.String()})
	}
	if !(reason == "released" && r.cfg.Persist) {
		if err := env.DelAddress(r.cfg.Iface, engine.Address{Prefix: l.Address}, "dhcp"); err != nil && !errors.Is(err, engine.ErrNotExist) {
			env.Error(fmt.Errorf("dhcp client: remove %s (%s): %w", l.Address, reason, err))
		}
	}
	if env.Store != nil {
		env.Store.Delete(clientBucket, r.cfg.Iface)
	}
	// The kernel drops the pinned neighbour entry with the last address of
	// its subnet (a NAK's rediscovery, IP sync): pin it again on the next
	// binding.
	r.pinned = ""
	r.mu.Lock()
	r.lease = nil
	r.mu.Unlock()
}

// Report implements engine.Reporter.
func (r *ClientRole) Report(s *engine.NodeSnapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease == nil {
		s.Leases = append(s.Leases, engine.LeaseRow{Role: "client", State: r.state.String(), ClientID: r.cfg.ClientID, MAC: r.mac})
		return
	}
	l := r.lease
	s.Leases = append(s.Leases, engine.LeaseRow{Role: "client", Address: l.Address.String(), ClientID: r.cfg.ClientID,
		MAC: r.mac, Server: l.Server.String(), State: r.state.String(),
		T1: l.Acquired.Add(l.T1), T2: l.Acquired.Add(l.T2), Expiry: l.Expiry()})
}
