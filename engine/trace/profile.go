package trace

import (
	"github.com/fieldcon/fieldcon/engine/rhcp"
	"github.com/fieldcon/fieldcon/profiles"
)

// OptionsFromProfile returns the decoder options for a site: the RHCP ports
// its roles use besides the default, and the tunnel servers' ports, so a
// trace decodes fieldcon's protocols wherever the profile put them.
func OptionsFromProfile(p *profiles.Profile) DecoderOptions {
	var opt DecoderOptions
	addRHCP := func(port int) {
		if port > 0 && port < 1<<16 && port != rhcp.Port {
			opt.RHCPPorts = appendPort(opt.RHCPPorts, uint16(port))
		}
	}
	for _, n := range p.Nodes {
		if n.RHCPServer != nil {
			addRHCP(n.RHCPServer.Port)
		}
		if n.AccessRouter != nil {
			addRHCP(n.AccessRouter.Port)
		}
		if n.RHCPClient != nil {
			addRHCP(n.RHCPClient.Port)
		}
		if n.TunnelServer != nil && n.TunnelServer.Listen.Port() != 0 {
			opt.TunnelPorts = appendPort(opt.TunnelPorts, n.TunnelServer.Listen.Port())
		}
		if n.TunnelClient != nil && n.TunnelClient.Server.Port() != 0 {
			opt.TunnelPorts = appendPort(opt.TunnelPorts, n.TunnelClient.Server.Port())
		}
	}
	return opt
}

func appendPort(ports []uint16, p uint16) []uint16 {
	for _, o := range ports {
		if o == p {
			return ports
		}
	}
	return append(ports, p)
}
