package profiles

import (
	"encoding/hex"
	"fmt"
	"net"
	"strings"
)

func (v *validator) dhcp(path string, n *Node) {
	if c := n.DHCPClient; c != nil {
		v.dhcpClient(path+".dhcp_client", c)
	}
	if s := n.DHCPServer; s != nil {
		v.dhcpServer(path+".dhcp_server", s)
	}
	if r := n.DHCPRelay; r != nil {
		v.dhcpRelay(path+".dhcp_relay", r)
	}
	for i, m := range n.Mechanisms {
		if m == "dhcp" && n.DHCPClient == nil {
			v.errorf(fmt.Sprintf("%s.mechanisms[%d]", path, i), "mechanism \"dhcp\" needs a [node.dhcp_client] section")
		}
	}
}

func (v *validator) clientID(path, id string) {
	if h, ok := strings.CutPrefix(id, "hex:"); ok {
		if _, err := hex.DecodeString(h); err != nil || h == "" {
			v.errorf(path, "client_id %q is not valid hex after \"hex:\"; want e.g. \"hex:01020304\"", id)
		}
	}
	if len(id) > 254 {
		v.errorf(path, "client_id is %d bytes; a DHCP option holds at most 254", len(id))
	}
}

func (v *validator) v4(path string, a *Addr) {
	if a != nil && !a.Is4() {
		v.errorf(path, "%s is not an IPv4 address; DHCP here is DHCPv4", a)
	}
}

func (v *validator) dhcpClient(path string, c *DHCPClient) {
	v.iface(path+".iface", c.Iface)
	v.clientID(path+".client_id", c.ClientID)
	v.v4(path+".server", c.Server)
	if c.ProbeCount < 0 || c.ProbeCount > 10 {
		v.errorf(path+".probe_count", "probe_count %d is out of range; want 1–10 (default 2)", c.ProbeCount)
	}
	if c.RetransmitMax.Duration != 0 && c.RetransmitMax.Duration < c.RetransmitInitial.Duration {
		v.errorf(path+".retransmit_max", "retransmit_max %s is below retransmit_initial %s", c.RetransmitMax.Duration, c.RetransmitInitial.Duration)
	}
}

func (v *validator) dhcpServer(path string, s *DHCPServer) {
	if len(s.Ifaces) == 0 {
		v.errorf(path+".ifaces", "no interfaces to serve on; want e.g. ifaces = [\"eth0\"]")
	}
	for i, name := range s.Ifaces {
		v.iface(fmt.Sprintf("%s.ifaces[%d]", path, i), name)
	}
	v.v4(path+".server_id", s.ServerID)
	if len(s.Pools) == 0 {
		v.errorf(path+".pools", "no pools; add at least one [[node.dhcp_server.pools]] with subnet, start and end")
	}
	for i, p := range s.Pools {
		pp := fmt.Sprintf("%s.pools[%d]", path, i)
		switch {
		case !p.Subnet.IsValid() || !p.Subnet.Addr().Is4():
			v.errorf(pp+".subnet", "subnet is missing or not IPv4; want e.g. \"192.0.2.0/24\"")
			continue
		case p.Subnet.Masked() != p.Subnet.Prefix:
			v.errorf(pp+".subnet", "subnet %s has host bits set; did you mean %s?", p.Subnet, p.Subnet.Masked())
		}
		for _, e := range []struct {
			key string
			a   Addr
		}{{"start", p.Start}, {"end", p.End}} {
			if !e.a.IsValid() || !p.Subnet.Contains(e.a.Addr) {
				v.errorf(pp+"."+e.key, "%s %s is not in subnet %s", e.key, e.a, p.Subnet)
			}
		}
		if p.Start.IsValid() && p.End.IsValid() && p.End.Less(p.Start.Addr) {
			v.errorf(pp+".end", "end %s comes before start %s", p.End, p.Start)
		}
		v.v4(pp+".cloud_server", p.CloudServer)
	}
	seen := map[string]string{}
	for i, r := range s.Reservations {
		rp := fmt.Sprintf("%s.reservations[%d]", path, i)
		if r.ClientID == "" && r.MAC == "" {
			v.errorf(rp, "a reservation needs client_id or mac")
		}
		v.clientID(rp+".client_id", r.ClientID)
		if r.MAC != "" {
			if _, err := net.ParseMAC(r.MAC); err != nil {
				v.errorf(rp+".mac", "mac %q is not a hardware address; want e.g. \"02:00:00:00:00:01\"", r.MAC)
			}
		}
		in := false
		for _, p := range s.Pools {
			in = in || p.Subnet.Contains(r.Address.Addr)
		}
		if !r.Address.IsValid() || !in {
			v.errorf(rp+".address", "reserved address %s is not in any pool's subnet", r.Address)
		}
		if prev, ok := seen[r.Address.String()]; ok && r.Address.IsValid() {
			v.errorf(rp+".address", "address %s is already reserved by %s", r.Address, prev)
		}
		seen[r.Address.String()] = rp
		v.v4(rp+".cloud_server", r.CloudServer)
	}
}

func (v *validator) dhcpRelay(path string, r *DHCPRelay) {
	if len(r.Downstream) == 0 {
		v.errorf(path+".downstream", "no downstream interfaces; want e.g. downstream = [\"eth1\"]")
	}
	for i, name := range r.Downstream {
		v.iface(fmt.Sprintf("%s.downstream[%d]", path, i), name)
		if name == r.Upstream {
			v.errorf(fmt.Sprintf("%s.downstream[%d]", path, i), "interface %s is both downstream and upstream", name)
		}
	}
	v.iface(path+".upstream", r.Upstream)
	if len(r.Servers) == 0 {
		v.errorf(path+".servers", "no servers to relay to; want e.g. servers = [\"198.51.100.1\"]")
	}
	for i := range r.Servers {
		v.v4(fmt.Sprintf("%s.servers[%d]", path, i), &r.Servers[i])
	}
	for i := range r.ReplyFrom {
		v.v4(fmt.Sprintf("%s.reply_from[%d]", path, i), &r.ReplyFrom[i])
	}
	if r.MaxHops < 0 || r.MaxHops > 16 {
		v.errorf(path+".max_hops", "max_hops %d is out of range; want 1–16 (default 16)", r.MaxHops)
	}
}
