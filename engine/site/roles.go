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
	return arbitrate.WrapScoped(n.Mechanisms, mechanismScope(n), roles), nil
}

// mechanismScope is where a node's listed mechanisms put addresses: the
// RHCP and DHCP clients' interfaces (IPv4: both protocols are IPv4 today)
// and, when static is listed, the static addresses' interfaces and
// families. Only there does an address mean the device is already
// addressed.
func mechanismScope(n *profiles.Node) arbitrate.Scope {
	var s arbitrate.Scope
	add := func(iface string) {
		for _, i := range s.Ifaces {
			if i == iface {
				return
			}
		}
		s.Ifaces = append(s.Ifaces, iface)
	}
	for _, m := range n.Mechanisms {
		switch {
		case (m == "rhcp" || m == "rhcp+dhcp") && n.RHCPClient != nil:
			add(n.RHCPClient.Iface)
			s.IPv4 = true
		case m == "dhcp" && n.DHCPClient != nil:
			add(n.DHCPClient.Iface)
			s.IPv4 = true
		case m == "static" && n.Static != nil:
			for _, a := range n.Static.Addresses {
				add(a.Iface)
				if a.Address.Addr().Is4() {
					s.IPv4 = true
				} else {
					s.IPv6 = true
				}
			}
		}
	}
	return s
}
