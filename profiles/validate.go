package profiles

import (
	"fmt"
	"regexp"
	"strings"
)

// validator collects every problem of a profile, each with its position.
type validator struct {
	file     string
	idx      positions
	problems Problems
	p        *Profile
}

func (v *validator) errorf(path, format string, args ...any) {
	line, col := v.idx.lookup(path)
	v.problems = append(v.problems, Problem{File: v.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...), kind: format})
}

var nodeName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// Mechanism names a node can list in mechanisms, in the order of the spec.
var mechanismNames = []string{"static", "rhcp", "rhcp+dhcp", "dhcp"}

func (v *validator) profile(p *Profile) {
	v.p = p
	v.profileName(p)
	if len(p.Nodes) == 0 {
		v.errorf("", "the profile has no nodes; add at least one [[node]] table with a name")
	}
	seen := map[string]bool{}
	for i := range p.Nodes {
		n := &p.Nodes[i]
		path := fmt.Sprintf("node[%d]", i)
		switch {
		case !nodeName.MatchString(n.Name):
			v.errorf(path+".name", "node name %q is not valid; want lowercase letters, digits and '-', starting with a letter, at most 20 characters", n.Name)
		case seen[n.Name]:
			v.errorf(path+".name", "node name %q is used twice; node names must be unique", n.Name)
		}
		seen[n.Name] = true
		v.node(path, n)
	}
	if p.Lab != nil {
		v.lab(p.Lab)
		v.labIfaces(p)
	}
}

func (v *validator) node(path string, n *Node) {
	for i, m := range n.Mechanisms {
		if !contains(mechanismNames, m) {
			v.errorf(fmt.Sprintf("%s.mechanisms[%d]", path, i), "unknown mechanism %q; valid: %s", m, strings.Join(mechanismNames, ", "))
		}
	}
	if n.Static != nil {
		v.static(path+".static", n.Static)
	}
	v.rhcp(path, n)
	v.dhcp(path, n)
	v.tunnel(path, n)
	v.mechanisms(path, n)
}

// nodeRef checks that name refers to a node of the profile.
func (v *validator) nodeRef(path, name string) {
	if v.p.Node(name) == nil {
		v.errorf(path, "no node named %q in this profile; nodes: %s", name, strings.Join(v.p.NodeNames(), ", "))
	}
}

func (v *validator) iface(path, name string) {
	switch {
	case name == "":
		v.errorf(path, "interface name is missing; want e.g. \"eth0\"")
	case len(name) > 15 || strings.ContainsAny(name, "/ :"):
		v.errorf(path, "interface name %q is not valid; want at most 15 characters without '/', ':' or spaces", name)
	}
}

func (v *validator) static(path string, s *Static) {
	for i, a := range s.Addresses {
		p := fmt.Sprintf("%s.addresses[%d]", path, i)
		v.iface(p+".iface", a.Iface)
		if !a.Address.IsValid() {
			v.errorf(p+".address", "address is missing; want CIDR notation, e.g. \"192.0.2.10/24\"")
		}
		if a.Peer != nil && a.Peer.Addr().Is4() != a.Address.Addr().Is4() {
			v.errorf(p+".peer", "peer %s and address %s are of different IP families", a.Peer, a.Address)
		}
	}
	for i, r := range s.Routes {
		p := fmt.Sprintf("%s.routes[%d]", path, i)
		v.route(p, r.Dst, r.Via, r.Dev)
	}
}

// route checks one route's destination, gateway and device.
func (v *validator) route(path string, dst Prefix, via *Addr, dev string) {
	if !dst.IsValid() {
		v.errorf(path+".dst", "destination is missing; want CIDR notation, e.g. \"0.0.0.0/0\" or \"203.0.113.0/24\"")
		return
	}
	if dst.Masked() != dst.Prefix {
		v.errorf(path+".dst", "destination %s has host bits set; did you mean %s?", dst, dst.Masked())
	}
	if via == nil && dev == "" {
		v.errorf(path, "route to %s needs a gateway (via) or a device (dev)", dst)
	}
	if via != nil && via.Is4() != dst.Addr().Is4() {
		v.errorf(path+".via", "gateway %s and destination %s are of different IP families", via, dst)
	}
	if dev != "" {
		v.iface(path+".dev", dev)
	}
}

func (v *validator) lab(l *Lab) {
	ends := map[string]string{}
	for i, link := range l.Links {
		p := fmt.Sprintf("lab.link[%d]", i)
		for _, e := range []struct {
			key string
			end Endpoint
		}{{"a", link.A}, {"b", link.B}} {
			if e.end.Node == "" {
				v.errorf(p, "link end %s is missing; want \"node:interface\"", e.key)
				continue
			}
			v.nodeRef(p+"."+e.key, e.end.Node)
			if prev, ok := ends[e.end.String()]; ok {
				v.errorf(p+"."+e.key, "interface %s is already used by %s; each interface joins one link", e.end, prev)
			}
			ends[e.end.String()] = p
		}
		if link.A.Node != "" && link.A.Node == link.B.Node {
			v.errorf(p+".b", "both ends of the link are on node %q; a link joins two nodes", link.A.Node)
		}
		if link.MTU != 0 && (link.MTU < 68 || link.MTU > 65535) {
			v.errorf(p+".mtu", "MTU %d is out of range; want 68–65535 (default 1500)", link.MTU)
		}
		if link.Loss < 0 || link.Loss > 100 {
			v.errorf(p+".loss", "loss %.1f%% is out of range; want 0–100", link.Loss)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
