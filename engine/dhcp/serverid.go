package dhcp

import (
	"net/netip"

	"github.com/fieldcon/fieldcon/profiles"
)

// ServerID is the server identifier (option 54) of a dhcp_server set up as
// p whose interfaces hold the IPv4 prefixes in ipv4: its server_id, else the
// first IPv4 address of the first of its interfaces that has one. It is not
// valid when there is neither. FORCERENEW (RFC 3203 §4) must carry the same
// identifier the running server gives its clients.
func ServerID(p profiles.DHCPServer, ipv4 map[string][]netip.Prefix) netip.Addr {
	if p.ServerID != nil {
		return p.ServerID.Addr
	}
	for _, iface := range p.Ifaces {
		if ps := ipv4[iface]; len(ps) > 0 {
			return ps[0].Addr()
		}
	}
	return netip.Addr{}
}
