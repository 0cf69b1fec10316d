package tunnel

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/profiles"
)

// NATGateway is the nat_gateway role: the NAT/firewall a tunnel client sits
// behind (kernel masquerade, and a forward filter that allows only UDP to
// chosen ports). Its rules are removed when it stops.
type NATGateway struct {
	cfg profiles.NATGateway
}

// NewNATGateway builds the role from its profile section.
func NewNATGateway(cfg profiles.NATGateway) *NATGateway { return &NATGateway{cfg: cfg} }

// Kind implements engine.Role.
func (g *NATGateway) Kind() string { return "nat_gateway" }

// Run implements engine.Role.
func (g *NATGateway) Run(ctx context.Context, env *engine.Env) error {
	env.Progress.Plan("forwarding", "masquerade", "filter", "udp timeout")
	nh, ok := env.Host.Host.(engine.NATHost)
	if !ok {
		return errors.New("nat gateway: this host cannot program NAT (its driver has no nftables support)")
	}
	if err := env.Host.SetSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("nat gateway: enable forwarding: %w", err)
	}
	env.Progress.Done("forwarding")
	remove, err := nh.AddMasquerade(engine.Masquerade{Name: "natgw", Source: g.cfg.Source.Masked(), OutIface: g.cfg.Outside})
	if err != nil {
		return fmt.Errorf("nat gateway: masquerade %s out of %s: %w", g.cfg.Source.Masked(), g.cfg.Outside, err)
	}
	env.Host.OnUndo("nft delete table ip fieldcon-natgw", remove)
	env.Progress.Done("masquerade")
	if len(g.cfg.AllowUDP) > 0 {
		ports := make([]uint16, len(g.cfg.AllowUDP))
		for i, p := range g.cfg.AllowUDP {
			ports[i] = uint16(p)
		}
		remove, err := nh.AddForwardFilter(engine.ForwardFilter{Name: "natgw-filter", InIface: g.cfg.Inside, OutIface: g.cfg.Outside, AllowUDP: ports})
		if err != nil {
			return fmt.Errorf("nat gateway: forward filter: %w", err)
		}
		env.Host.OnUndo("nft delete table ip fieldcon-natgw-filter", remove)
	}
	env.Progress.Done("filter")
	if t := g.cfg.UDPTimeout.Duration; t > 0 {
		secs := strconv.Itoa(int(t.Seconds()))
		// Set after the rules: they load conntrack, whose sysctls do not
		// exist before. A UDP flow that saw replies is "assured" and uses the stream
		// timeout; both must be short for a lab to show what heartbeats do.
		for _, k := range []string{"net/netfilter/nf_conntrack_udp_timeout", "net/netfilter/nf_conntrack_udp_timeout_stream"} {
			if err := env.Host.SetSysctl(k, secs); err != nil {
				return fmt.Errorf("nat gateway: set %s: %w", k, err)
			}
		}
	}
	env.Progress.Done("udp timeout")
	<-ctx.Done()
	return nil // stopped: the engine undoes the rules
}
