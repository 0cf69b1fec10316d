package profiles

import (
	"fmt"
	"sort"
	"strings"
)

// labIfaces checks, in a lab profile, that every interface a node's roles
// name is one of that node's lab link ends: in the lab a node has no other
// interfaces, so a typo ("eht0") would only show at run time as a role
// that fails. Interfaces the roles create themselves (tunnel TUN devices)
// are not named here.
func (v *validator) labIfaces(p *Profile) {
	have := map[string]map[string]bool{}
	for _, l := range p.Lab.Links {
		for _, e := range []Endpoint{l.A, l.B} {
			if have[e.Node] == nil {
				have[e.Node] = map[string]bool{}
			}
			have[e.Node][e.Iface] = true
		}
	}
	for i := range p.Nodes {
		n := &p.Nodes[i]
		path := fmt.Sprintf("node[%d]", i)
		for _, u := range roleIfaces(path, n) {
			if u.name == "" || u.name == "lo" || have[n.Name][u.name] {
				continue
			}
			v.errorf(u.path, "node %s has no interface %q in the lab; its lab links give it: %s", n.Name, u.name, ifaceList(have[n.Name]))
		}
	}
}

type ifaceUse struct{ path, name string }

// roleIfaces lists the existing interfaces a node's sections name, with
// their key paths.
func roleIfaces(path string, n *Node) []ifaceUse {
	var out []ifaceUse
	add := func(p, name string) { out = append(out, ifaceUse{p, name}) }
	if s := n.Static; s != nil {
		for i, a := range s.Addresses {
			add(fmt.Sprintf("%s.static.addresses[%d].iface", path, i), a.Iface)
		}
		for i, r := range s.Routes {
			add(fmt.Sprintf("%s.static.routes[%d].dev", path, i), r.Dev)
		}
	}
	if r := n.AccessRouter; r != nil {
		add(path+".access_router.upstream", r.Upstream)
		for i, l := range r.Links {
			add(fmt.Sprintf("%s.access_router.links[%d].iface", path, i), l.Iface)
		}
	}
	if c := n.RHCPClient; c != nil {
		add(path+".rhcp_client.iface", c.Iface)
	}
	if d := n.Dnsmasq; d != nil {
		add(path+".dnsmasq.iface", d.Iface)
	}
	if c := n.DHCPClient; c != nil {
		add(path+".dhcp_client.iface", c.Iface)
	}
	if s := n.DHCPServer; s != nil {
		for i, name := range s.Ifaces {
			add(fmt.Sprintf("%s.dhcp_server.ifaces[%d]", path, i), name)
		}
	}
	if r := n.DHCPRelay; r != nil {
		add(path+".dhcp_relay.upstream", r.Upstream)
		for i, name := range r.Downstream {
			add(fmt.Sprintf("%s.dhcp_relay.downstream[%d]", path, i), name)
		}
	}
	if g := n.NATGateway; g != nil {
		add(path+".nat_gateway.inside", g.Inside)
		add(path+".nat_gateway.outside", g.Outside)
	}
	if s := n.TunnelServer; s != nil {
		add(path+".tunnel_server.egress", s.Egress)
	}
	return out
}

func ifaceList(set map[string]bool) string {
	if len(set) == 0 {
		return "none (add a [[lab.link]] for it)"
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
