package profiles

import "fmt"

// tunnel checks a node's tunnel_client, tunnel_server and nat_gateway sections.
func (v *validator) tunnel(path string, n *Node) {
	if c := n.TunnelClient; c != nil {
		p := path + ".tunnel_client"
		if !c.Server.IsValid() || c.Server.Port() == 0 {
			v.errorf(p+".server", "server is missing; want the tunnel server's address and UDP port, e.g. \"203.0.113.1:51820\"")
		}
		if (c.ServerPublicKey == "") == (c.ServerPublicKeyFile == "") {
			v.errorf(p, "set exactly one of server_public_key and server_public_key_file")
		} else if c.ServerPublicKey != "" {
			v.publicKey(p+".server_public_key", c.ServerPublicKey)
		}
		v.keySource(p, c.PrivateKeyFile, c.PrivateKeyEnv, c.GenerateKey)
		v.tunName(p+".tun", c.TUN)
		v.tunMTU(p+".mtu", c.MTU)
		for i, r := range c.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", p, i)
			if !r.IsValid() || r.Masked() != r.Prefix {
				v.errorf(rp, "route %s is not a prefix without host bits; want e.g. \"198.51.100.0/24\"", r)
			}
		}
	}
	if s := n.TunnelServer; s != nil {
		p := path + ".tunnel_server"
		if !s.Listen.IsValid() || s.Listen.Port() == 0 {
			v.errorf(p+".listen", "listen is missing; want an address and UDP port, e.g. \"0.0.0.0:51820\"")
		}
		v.keySource(p, s.PrivateKeyFile, s.PrivateKeyEnv, s.GenerateKey)
		switch {
		case !s.Pool.IsValid():
			v.errorf(p+".pool", "pool is missing; want the virtual NIC prefix, e.g. \"198.19.0.0/24\"")
		case !s.Pool.Addr().Is4() || s.Pool.Bits() > 30 || s.Pool.Bits() < 16:
			v.errorf(p+".pool", "pool %s must be an IPv4 prefix from /16 to /30", s.Pool)
		case s.Pool.Masked() != s.Pool.Prefix:
			v.errorf(p+".pool", "pool %s has host bits set; did you mean %s?", s.Pool, s.Pool.Masked())
		}
		v.tunName(p+".tun", s.TUN)
		v.tunMTU(p+".mtu", s.MTU)
		if s.Egress != "" {
			v.iface(p+".egress", s.Egress)
		}
		if s.HandshakeRate < 0 {
			v.errorf(p+".handshake_rate", "handshake_rate %d is negative; want 0 or more (default 100)", s.HandshakeRate)
		}
		if s.SourceHandshakeRate < 0 {
			v.errorf(p+".source_handshake_rate", "source_handshake_rate %d is negative; want 0 or more (default 20)", s.SourceHandshakeRate)
		}
		if s.Heartbeat.Duration > 0 && s.IdleTimeout.Duration > 0 && s.IdleTimeout.Duration <= 2*s.Heartbeat.Duration {
			v.errorf(p+".idle_timeout", "idle_timeout %s must be more than twice heartbeat %s, or live tunnels age out", s.IdleTimeout, s.Heartbeat)
		}
		if len(s.Clients) == 0 {
			v.errorf(p+".clients", "no clients are allowed; add [[node.tunnel_server.clients]] with a name and public_key or public_key_file")
		}
		for i, c := range s.Clients {
			cp := fmt.Sprintf("%s.clients[%d]", p, i)
			if c.Name == "" {
				v.errorf(cp+".name", "client name is missing")
			}
			if (c.PublicKey == "") == (c.PublicKeyFile == "") {
				v.errorf(cp, "set exactly one of public_key and public_key_file")
			} else if c.PublicKey != "" {
				v.publicKey(cp+".public_key", c.PublicKey)
			}
		}
	}
	if g := n.NATGateway; g != nil {
		p := path + ".nat_gateway"
		v.iface(p+".inside", g.Inside)
		v.iface(p+".outside", g.Outside)
		if !g.Source.IsValid() || !g.Source.Addr().Is4() {
			v.errorf(p+".source", "source is missing; want the private IPv4 prefix to masquerade, e.g. \"198.18.0.0/24\"")
		}
		for i, port := range g.AllowUDP {
			if port < 1 || port > 65535 {
				v.errorf(fmt.Sprintf("%s.allow_udp[%d]", p, i), "port %d is out of range; want 1–65535", port)
			}
		}
	}
}

func (v *validator) keySource(path, file, env string, generate bool) {
	switch {
	case file == "" && env == "":
		v.errorf(path, "no private key: set private_key_file or private_key_env")
	case file != "" && env != "":
		v.errorf(path, "set only one of private_key_file and private_key_env")
	case generate && file == "":
		v.errorf(path+".generate_key", "generate_key needs private_key_file (where to write the key)")
	}
}

func (v *validator) tunName(path, name string) {
	if name != "" {
		v.iface(path, name)
	}
}

func (v *validator) tunMTU(path string, mtu int) {
	if mtu != 0 && (mtu < 576 || mtu > 65535-TunnelOverhead) {
		v.errorf(path, "MTU %d is out of range; want 576–%d (default 1420)", mtu, 65535-TunnelOverhead)
	}
}

// TunnelOverhead is what the tunnel adds to each packet: IPv4 20, UDP 8,
// transport header 16, AEAD tag 16 (docs/protocols/tunnel.md).
const TunnelOverhead = 20 + 8 + 16 + 16
