package rhcp

import (
	"context"
	"net/netip"
	"time"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
)

// DHCPAcquirer is the FormalAcquirer of fieldcon's own DHCP client
// (engine/dhcp.Acquire): unicast to the named server, the device as its own
// relay (giaddr = temporary address), client-id option 61 = ESN.
type DHCPAcquirer struct {
	// Timeout bounds one acquisition (default 60s: a lossy link needs
	// several retransmissions, RFC 2131 §4.1).
	Timeout time.Duration
}

// AcquireFormal implements FormalAcquirer.
func (a DHCPAcquirer) AcquireFormal(ctx context.Context, env *engine.Env, req FormalRequest) (netip.Prefix, error) {
	lease, err := dhcp.Acquire(ctx, env, dhcp.AcquireConfig{
		Iface:    req.Iface,
		ClientID: dhcp.EncodeClientID(req.ClientID),
		Server:   req.Server,
		GIAddr:   req.Relay,
		Timeout:  a.Timeout,
	})
	if err != nil {
		return netip.Prefix{}, err
	}
	return lease.Address, nil
}
