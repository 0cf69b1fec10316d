package site

import (
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/arbitrate"
	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/engine/rhcp"
	"github.com/fieldcon/fieldcon/engine/static"
	"github.com/fieldcon/fieldcon/engine/tunnel"
	"github.com/fieldcon/fieldcon/profiles"
)

// Roles builds the roles a node's profile sections ask for, in a fixed
// order: configuration first, then servers, then clients.
func Roles(p *profiles.Profile, n *profiles.Node) ([]engine.Role, error) {
	var roles []engine.Role
	// Configuration: the node's own addresses, routes and NAT.
	if n.Static != nil {
		roles = append(roles, static.New(*n.Static))
	}
	if n.AccessRouter != nil {
		roles = append(roles, rhcp.NewAccessRouter(*n.AccessRouter))
	}
	if n.NATGateway != nil {
		roles = append(roles, tunnel.NewNATGateway(*n.NATGateway))
	}
	// Servers and relays, so they listen before clients ask.
	if n.Dnsmasq != nil {
		roles = append(roles, rhcp.NewDnsmasq(*n.Dnsmasq))
	}
	if n.RHCPServer != nil {
		roles = append(roles, rhcp.NewServer(*n.RHCPServer))
	}
	if n.DHCPServer != nil {
		roles = append(roles, dhcp.NewServerRole(*n.DHCPServer).WatchProfile(p.Source, n.Name))
	}
	if n.DHCPRelay != nil {
		roles = append(roles, dhcp.NewRelayRole(*n.DHCPRelay))
	}
	if n.TunnelServer != nil {
		roles = append(roles, tunnel.NewServer(*n.TunnelServer))
	}
	// Clients.
	if n.RHCPClient != nil {
		roles = append(roles, rhcp.NewClient(*n.RHCPClient, rhcp.DHCPAcquirer{}))
	}
	if n.DHCPClient != nil {
		roles = append(roles, dhcp.NewClientRole(*n.DHCPClient))
	}
	if n.TunnelClient != nil {
		roles = append(roles, tunnel.NewClient(*n.TunnelClient))
	}
	return arbitrate.Wrap(n.Mechanisms, roles), nil
}
