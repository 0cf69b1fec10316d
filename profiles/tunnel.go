package profiles

import (
	"fmt"
	"net/netip"
)

// TunnelClient is the TN tunnel client (DESIGN.md §5): a TUN virtual NIC
// and one UDP flow to a tunnel server; routes chosen destinations into it.
type TunnelClient struct {
	// Server is the tunnel server's public address and UDP port.
	Server AddrPort `toml:"server"`
	// ServerPublicKey (base64) or ServerPublicKeyFile identifies the server.
	ServerPublicKey     string `toml:"server_public_key"`
	ServerPublicKeyFile string `toml:"server_public_key_file"`
	// PrivateKeyFile or PrivateKeyEnv holds the client's private key.
	PrivateKeyFile string `toml:"private_key_file"`
	PrivateKeyEnv  string `toml:"private_key_env"`
	// GenerateKey creates PrivateKeyFile (and FILE.pub) when missing (labs).
	GenerateKey bool `toml:"generate_key"`
	// TUN names the virtual NIC (default "tn0").
	TUN string `toml:"tun"`
	// MTU of the virtual NIC (default 1420).
	MTU int `toml:"mtu"`
	// Routes are the destinations routed into the tunnel.
	Routes []Prefix `toml:"routes"`
	// Heartbeat is the keepalive interval (default 15s).
	Heartbeat Duration `toml:"heartbeat"`
}

// TunnelServer is the TN tunnel server: tunnel index table, virtual address
// pool, decapsulation into a TUN and forwarding with source NAT.
type TunnelServer struct {
	// Listen is the UDP address and port to listen on ("0.0.0.0:51820").
	Listen AddrPort `toml:"listen"`
	// PrivateKeyFile or PrivateKeyEnv holds the server's private key.
	PrivateKeyFile string `toml:"private_key_file"`
	PrivateKeyEnv  string `toml:"private_key_env"`
	// GenerateKey creates PrivateKeyFile (and FILE.pub) when missing (labs).
	GenerateKey bool `toml:"generate_key"`
	// Pool is the virtual NIC prefix; the server's TUN takes its first
	// address, clients the others.
	Pool Prefix `toml:"pool"`
	// TUN names the server's virtual NIC (default "tns0").
	TUN string `toml:"tun"`
	// MTU of the virtual NICs (default 1420).
	MTU int `toml:"mtu"`
	// Egress is the interface tunnel traffic leaves through, with source NAT.
	Egress string `toml:"egress"`
	// Heartbeat is the interval the server asks clients to use (0: theirs).
	Heartbeat Duration `toml:"heartbeat"`
	// IdleTimeout ages out a tunnel that was silent this long (default 60s).
	IdleTimeout Duration `toml:"idle_timeout"`
	// HandshakeRate is the establishment requests per second above which
	// the server demands cookies (default 100).
	HandshakeRate int `toml:"handshake_rate"`
	// SourceHandshakeRate is the establishment requests per second one
	// source address may have handshaked, past the cookie check (default 20).
	SourceHandshakeRate int `toml:"source_handshake_rate"`
	// NATInterval is how often the NAT table is read from conntrack (default 1s).
	NATInterval Duration `toml:"nat_interval"`
	// Clients are the client keys allowed to establish tunnels.
	Clients []TunnelPeer `toml:"clients"`
}

// TunnelPeer is one allowed tunnel client.
type TunnelPeer struct {
	Name          string `toml:"name"`
	PublicKey     string `toml:"public_key"`
	PublicKeyFile string `toml:"public_key_file"`
}

// NATGateway makes a node a NAT/firewall in front of a private network:
// kernel masquerade and a forward filter that lets only chosen UDP ports out.
type NATGateway struct {
	// Inside is the private-side interface; Outside the public one.
	Inside  string `toml:"inside"`
	Outside string `toml:"outside"`
	// Source is the private prefix to masquerade.
	Source Prefix `toml:"source"`
	// AllowUDP lists the only UDP destination ports allowed out (empty: all traffic).
	AllowUDP []int `toml:"allow_udp"`
	// UDPTimeout sets net.netfilter.nf_conntrack_udp_timeout (0: leave it).
	UDPTimeout Duration `toml:"udp_timeout"`
}

// AddrPort is an address and port ("203.0.113.1:51820").
type AddrPort struct{ netip.AddrPort }

// UnmarshalText parses address:port.
func (a *AddrPort) UnmarshalText(b []byte) error {
	v, err := netip.ParseAddrPort(string(b))
	if err != nil {
		return fmt.Errorf("%q is not an address and port; want e.g. \"203.0.113.1:51820\" or \"[2001:db8::1]:51820\"", string(b))
	}
	a.AddrPort = v
	return nil
}

// MarshalText writes address:port.
func (a AddrPort) MarshalText() ([]byte, error) { return []byte(a.AddrPort.String()), nil }
