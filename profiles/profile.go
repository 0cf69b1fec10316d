package profiles

import (
	"fmt"
	"strings"
)

// Profile describes one site.
type Profile struct {
	// Name names the site; it defaults to the file's base name.
	Name string `toml:"name"`
	// Description says what the site or lab is for.
	Description string `toml:"description"`
	// Nodes are the site's devices and servers.
	Nodes []Node `toml:"node"`
	// Lab, when present, describes how to build the site in network
	// namespaces (one per node) joined by veth pairs.
	Lab *Lab `toml:"lab"`

	// Source is where the profile came from (path or "embedded:NAME").
	Source string `toml:"-"`
}

// Node is one device or server and the roles it runs.
type Node struct {
	// Name identifies the node in the profile, events and the lab.
	Name string `toml:"name"`
	// Mechanisms lists the address-acquisition mechanisms the device
	// supports, for arbitration (first formal address wins).
	Mechanisms []string `toml:"mechanisms"`
	// Static configures addresses and routes from the profile.
	Static *Static `toml:"static"`
	// DHCPClient runs a DHCP client (profiles/dhcp.go).
	DHCPClient *DHCPClient `toml:"dhcp_client"`
	// DHCPServer runs a DHCP server.
	DHCPServer *DHCPServer `toml:"dhcp_server"`
	// DHCPRelay runs a DHCP relay agent.
	DHCPRelay *DHCPRelay `toml:"dhcp_relay"`
	// RHCPServer makes the node an RHCP server.
	RHCPServer *RHCPServer `toml:"rhcp_server"`
	// AccessRouter makes the node an RHCP access router.
	AccessRouter *AccessRouter `toml:"access_router"`
	// RHCPClient makes the node an RHCP client.
	RHCPClient *RHCPClient `toml:"rhcp_client"`
	// Dnsmasq runs dnsmasq as the node's DHCP server (a real peer).
	Dnsmasq *Dnsmasq `toml:"dnsmasq"`
	// TunnelClient runs a TN tunnel client (profiles/tunnel.go).
	TunnelClient *TunnelClient `toml:"tunnel_client"`
	// TunnelServer runs a TN tunnel server.
	TunnelServer *TunnelServer `toml:"tunnel_server"`
	// NATGateway makes the node a NAT/firewall for a private network.
	NATGateway *NATGateway `toml:"nat_gateway"`
}

// NodeNames lists the nodes' names in profile order.
func (p *Profile) NodeNames() []string {
	names := make([]string, len(p.Nodes))
	for i, n := range p.Nodes {
		names[i] = n.Name
	}
	return names
}

// CheckNodes reports the first of names that is not a node of the profile,
// with the nodes it has.
func (p *Profile) CheckNodes(names []string) error {
	for _, name := range names {
		if p.Node(name) == nil {
			return fmt.Errorf("profile %s has no node %q; nodes: %s", p.Name, name, strings.Join(p.NodeNames(), ", "))
		}
	}
	return nil
}

// Node returns the named node, or nil.
func (p *Profile) Node(name string) *Node {
	for i := range p.Nodes {
		if p.Nodes[i].Name == name {
			return &p.Nodes[i]
		}
	}
	return nil
}

// Static is the "local configuration" mechanism: addresses and routes taken
// from the profile.
type Static struct {
	// Persist keeps the addresses and routes when fieldcon stops.
	Persist bool `toml:"persist"`
	// Addresses to configure.
	Addresses []StaticAddress `toml:"addresses"`
	// Routes to install after the addresses.
	Routes []StaticRoute `toml:"routes"`
	// Forwarding enables IPv4 and IPv6 forwarding (a router).
	Forwarding bool `toml:"forwarding"`
}

// StaticAddress is one interface address.
type StaticAddress struct {
	// Iface is the interface name.
	Iface string `toml:"iface"`
	// Address in CIDR notation.
	Address Prefix `toml:"address"`
	// Peer is the remote end of a point-to-point link (CIDR).
	Peer *Prefix `toml:"peer"`
}

// StaticRoute is one route.
type StaticRoute struct {
	// Dst is the destination prefix ("0.0.0.0/0" for a default route).
	Dst Prefix `toml:"dst"`
	// Via is the gateway address.
	Via *Addr `toml:"via"`
	// Dev is the outgoing interface.
	Dev string `toml:"dev"`
	// Metric orders routes to the same destination.
	Metric int `toml:"metric"`
}

// Lab is a namespace topology: every node gets its own network namespace and
// links join them.
type Lab struct {
	// Links are veth pairs between node interfaces.
	Links []LabLink `toml:"link"`
}

// LabLink is one veth pair.
type LabLink struct {
	// A and B are the two ends, "node:iface".
	A Endpoint `toml:"a"`
	B Endpoint `toml:"b"`
	// MTU of both ends (default 1500).
	MTU int `toml:"mtu"`
	// Loss is the netem packet loss in percent on both ends (0–100).
	Loss float64 `toml:"loss"`
	// Delay is the netem one-way delay on each end.
	Delay Duration `toml:"delay"`
	// Down leaves the link down when the lab is built (a device that is not
	// plugged in yet).
	Down bool `toml:"down"`
}
