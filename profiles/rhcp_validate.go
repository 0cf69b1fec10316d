package profiles

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/fieldcon/fieldcon/engine/rhcp/assignment"
)

// rhcp validates the RHCP sections of a node (docs/profiles.md, RHCP roles).
func (v *validator) rhcp(path string, n *Node) {
	if s := n.RHCPServer; s != nil {
		v.rhcpServer(path+".rhcp_server", s)
	}
	if r := n.AccessRouter; r != nil {
		v.accessRouter(path+".access_router", r)
	}
	if c := n.RHCPClient; c != nil {
		v.rhcpClient(path+".rhcp_client", c)
		if v.p.Lab != nil {
			v.rhcpSameKey(path+".rhcp_client", c)
		}
	}
	if d := n.Dnsmasq; d != nil {
		v.dnsmasq(path+".dnsmasq", d)
	}
	for i, m := range n.Mechanisms {
		if (m == "rhcp" || m == "rhcp+dhcp") && n.RHCPClient == nil {
			v.errorf(fmt.Sprintf("%s.mechanisms[%d]", path, i), "mechanism %q needs a [node.rhcp_client] section", m)
		}
	}
}

func (v *validator) rhcpPort(path string, port int) {
	if port < 0 || port > 65535 {
		v.errorf(path, "port %d is out of range; want 1–65535 (default 6655)", port)
	}
}

func (v *validator) rhcpKey(path, file, env string, generate bool) {
	switch {
	case file == "" && env == "":
		v.errorf(path, "no key: set key_file (a file holding the per-site key) or key_env (an environment variable holding it)")
	case file != "" && env != "":
		v.errorf(path+".key_env", "set key_file or key_env, not both")
	case generate && file == "":
		v.errorf(path+".generate_key", "generate_key needs key_file (where to write the key)")
	}
}

func (v *validator) rhcpServer(path string, s *RHCPServer) {
	if !s.Address.IsValid() {
		v.errorf(path+".address", "the server's address is missing; want e.g. \"198.51.100.1\"")
	}
	v.rhcpPort(path+".port", s.Port)
	v.rhcpKey(path, s.KeyFile, s.KeyEnv, s.GenerateKey)
	if s.MaxInterval.Duration != 0 && s.MaxInterval.Duration < s.Interval.Or(time1s) {
		v.errorf(path+".max_interval", "max_interval %s is below interval %s", s.MaxInterval.Duration, s.Interval.Or(time1s))
	}
	// A jitter as large as the interval would make probes bunch up at the
	// floor the prober clamps to (half the interval) instead of spreading.
	if s.Jitter.Duration != 0 && s.Jitter.Duration >= s.Interval.Or(time1s) {
		v.errorf(path+".jitter", "jitter %s is not below interval %s; want a fraction of it (default a tenth)", s.Jitter.Duration, s.Interval.Or(time1s))
	}
	if s.Lifetime.Duration != 0 && s.Lifetime.Duration < time1s {
		v.errorf(path+".lifetime", "lifetime %s is below 1s (the wire format counts seconds)", s.Lifetime.Duration)
	}
	for i, r := range s.Routes {
		p := fmt.Sprintf("%s.routes[%d]", path, i)
		if !r.Dst.IsValid() {
			v.errorf(p+".dst", "destination is missing; want CIDR notation, e.g. \"198.51.100.0/24\"")
			continue
		}
		if r.Via == nil && s.Gateway == nil {
			v.errorf(p, "route to %s needs via, or a gateway in the section", r.Dst)
		}
	}
	if len(s.Routes) > 16 {
		v.errorf(path+".routes", "%d routes; a probe carries at most 16", len(s.Routes))
	}
	seenID, seenAddr := map[string]bool{}, map[netip.Addr]string{}
	for i, c := range s.Clients {
		p := fmt.Sprintf("%s.clients[%d]", path, i)
		switch {
		case c.ID == "" || len(c.ID) > 64 || !printableASCII(c.ID):
			v.errorf(p+".id", "client id %q is not valid; want 1–64 printable ASCII characters without spaces (the ESN)", c.ID)
		case seenID[c.ID]:
			v.errorf(p+".id", "client id %q is listed twice", c.ID)
		}
		seenID[c.ID] = true
		if c.Address == nil {
			if s.Pool == nil {
				v.errorf(p, "client %q has no address and the section has no pool to allocate from", c.ID)
			}
			continue
		}
		if prev, ok := seenAddr[c.Address.Addr()]; ok {
			v.errorf(p+".address", "address %s is already allocated to %q", c.Address.Addr(), prev)
		}
		seenAddr[c.Address.Addr()] = c.ID
	}
	if len(s.Clients) == 0 {
		v.errorf(path+".clients", "the allocation table is empty; add [[node.rhcp_server.clients]] with an id")
	}
	v.rhcpAssignments(path, s)
}

// rhcpAssignments refuses in the allocation table what a device refuses in
// a probe: the rules of engine/rhcp/assignment, applied to what the server
// would send each client, reported at the value that breaks them. Section
// values that every client gets are reported once.
func (v *validator) rhcpAssignments(path string, s *RHCPServer) {
	if s.Pool != nil && s.Pool.IsValid() {
		if err := assignment.Destination(s.Pool.Prefix); err != nil {
			v.errorf(path+".pool", "%v", err)
		}
	}
	reported := map[string]bool{}
	report := func(at string, err error) {
		if key := at + "|" + err.Error(); !reported[key] {
			reported[key] = true
			v.errorf(at, "%v", err)
		}
	}
	for i, c := range s.Clients {
		cp := fmt.Sprintf("%s.clients[%d]", path, i)
		a := assignment.Assignment{Server: s.Address.Addr}
		at := map[string]string{assignment.FieldAddress: cp + ".address", assignment.FieldServer: path + ".address",
			assignment.FieldGateway: path + ".gateway", assignment.FieldDHCPServer: path + ".dhcp_server"}
		if c.Address != nil {
			a.Address = c.Address.Prefix
		}
		if gw := firstAddr(c.Gateway, s.Gateway); gw != nil {
			a.Gateway = gw.Addr
			if c.Gateway != nil {
				at[assignment.FieldGateway] = cp + ".gateway"
			}
		}
		if d := firstAddr(c.DHCPServer, s.DHCPServer); d != nil {
			a.DHCPServer = d.Addr
			if c.DHCPServer != nil {
				at[assignment.FieldDHCPServer] = cp + ".dhcp_server"
			}
		}
		for _, r := range s.Routes {
			if !r.Dst.IsValid() {
				continue // reported above
			}
			rt := assignment.Route{Dst: r.Dst.Prefix}
			if r.Via != nil {
				rt.Via = r.Via.Addr
			}
			a.Routes = append(a.Routes, rt)
		}
		for _, p := range a.Check() {
			where := at[p.Field]
			switch p.Field {
			case assignment.FieldRouteDst:
				where = fmt.Sprintf("%s.routes[%d].dst", path, p.Route)
			case assignment.FieldRouteVia:
				where = fmt.Sprintf("%s.routes[%d].via", path, p.Route)
			}
			report(where, p.Err)
		}
	}
}

// firstAddr is the client's value when set, else the section's.
func firstAddr(client, section *Addr) *Addr {
	if client != nil {
		return client
	}
	return section
}

func (v *validator) accessRouter(path string, r *AccessRouter) {
	v.rhcpPort(path+".port", r.Port)
	if r.Cache && r.Upstream == "" {
		v.errorf(path+".upstream", "cache needs upstream: the interface probes arrive on, e.g. \"eth0\"")
	}
	if r.Upstream != "" {
		v.iface(path+".upstream", r.Upstream)
	}
	if len(r.Links) == 0 {
		v.errorf(path+".links", "no links; add links = [{ iface = \"eth1\", address = \"192.0.2.1/32\", peer = \"192.0.2.2/32\", routes = [\"203.0.113.10/32\"] }]")
	}
	for i, l := range r.Links {
		p := fmt.Sprintf("%s.links[%d]", path, i)
		v.iface(p+".iface", l.Iface)
		if !l.Address.IsValid() || !l.Peer.IsValid() {
			v.errorf(p, "link %q needs address and peer (the device's link address), e.g. \"192.0.2.1/32\" and \"192.0.2.2/32\"", l.Iface)
			continue
		}
		if l.Address.Addr().Is4() != l.Peer.Addr().Is4() {
			v.errorf(p+".peer", "peer %s and address %s are of different IP families", l.Peer, l.Address)
		}
		for j, d := range l.Routes {
			if d.Masked() != d.Prefix {
				v.errorf(fmt.Sprintf("%s.routes[%d]", p, j), "route %s has host bits set; did you mean %s?", d, d.Masked())
			}
		}
	}
}

func (v *validator) rhcpClient(path string, c *RHCPClient) {
	v.iface(path+".iface", c.Iface)
	if c.ClientID == "" || len(c.ClientID) > 64 || !printableASCII(c.ClientID) {
		v.errorf(path+".client_id", "client_id %q is not valid; want 1–64 printable ASCII characters without spaces (the ESN)", c.ClientID)
	}
	v.rhcpPort(path+".port", c.Port)
	v.rhcpKey(path, c.KeyFile, c.KeyEnv, c.GenerateKey)
	if l := c.Link; l != nil && (!l.Address.IsValid() || !l.Peer.IsValid()) {
		v.errorf(path+".link", "link needs address and peer, e.g. { address = \"192.0.2.2/32\", peer = \"192.0.2.1/32\" }")
	}
}

func (v *validator) dnsmasq(path string, d *Dnsmasq) {
	v.iface(path+".iface", d.Iface)
	if !d.PoolStart.Is4() || !d.PoolEnd.Is4() {
		v.errorf(path, "pool_start and pool_end must be IPv4 addresses, e.g. \"203.0.113.100\" and \"203.0.113.199\"")
		return
	}
	if d.PoolEnd.Less(d.PoolStart.Addr) {
		v.errorf(path+".pool_end", "pool_end %s is below pool_start %s", d.PoolEnd, d.PoolStart)
	}
	if d.PrefixLen != 0 && (d.PrefixLen < 8 || d.PrefixLen > 30) {
		v.errorf(path+".prefix_len", "prefix_len %d is out of range; want 8–30 (default 24)", d.PrefixLen)
	}
	for i, r := range d.Reservations {
		p := fmt.Sprintf("%s.reservations[%d]", path, i)
		if r.ClientID == "" || !printableASCII(r.ClientID) {
			v.errorf(p+".client_id", "client_id %q is not valid; want printable ASCII without spaces", r.ClientID)
		}
		if !r.Address.Is4() {
			v.errorf(p+".address", "address must be IPv4")
		}
	}
}

const time1s = time.Second

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
