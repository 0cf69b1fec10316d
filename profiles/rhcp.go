package profiles

// RHCP roles name where the per-site key comes from (key_file, key_env); the
// key itself never appears in a profile (DESIGN.md: secrets come from files or
// environment variables). The fields are repeated in each section rather than
// embedded, so every key is listed under its section in docs/profiles.md.

// RHCPServer is the rhcp_server role: the remote server that allocates
// maintenance addresses to devices by ID and probes them.
type RHCPServer struct {
	// Address is the server's own address: probes come from it and name it as
	// the place to send stops.
	Address Addr `toml:"address"`
	// Port is the UDP port (default 6655).
	Port int `toml:"port"`
	// KeyFile is a file holding the per-site key (at least 16 bytes).
	KeyFile string `toml:"key_file"`
	// KeyEnv is an environment variable holding the per-site key.
	KeyEnv string `toml:"key_env"`
	// GenerateKey creates key_file with a random key when it does not exist
	// (labs and the demo).
	GenerateKey bool `toml:"generate_key"`
	// Pool is where addresses for clients without one are allocated.
	Pool *Prefix `toml:"pool"`
	// Gateway is the next hop the probe tells devices to use (the access
	// router's link address).
	Gateway *Addr `toml:"gateway"`
	// Routes are the routes the probe tells devices to install.
	Routes []RHCPRoute `toml:"routes"`
	// DHCPServer, when set, makes the probed address temporary: devices then
	// run unicast DHCP to this server (RHCP+DHCP).
	DHCPServer *Addr `toml:"dhcp_server"`
	// Lifetime is how long a probe is valid (default 5m).
	Lifetime Duration `toml:"lifetime"`
	// Interval is the first probe interval (default 1s).
	Interval Duration `toml:"interval"`
	// MaxInterval is the ceiling of the exponential backoff (default 30s).
	MaxInterval Duration `toml:"max_interval"`
	// Jitter is the random deviation added to each interval (default 10% of it).
	Jitter Duration `toml:"jitter"`
	// Clients is the allocation table.
	Clients []RHCPClientEntry `toml:"clients"`
}

// RHCPRoute is a route carried in a probe.
type RHCPRoute struct {
	// Dst is the destination prefix.
	Dst Prefix `toml:"dst"`
	// Via is the next hop; the probe's gateway when unset.
	Via *Addr `toml:"via"`
}

// RHCPClientEntry is one row of the server's allocation table.
type RHCPClientEntry struct {
	// ID is the device's ID (ESN).
	ID string `toml:"id"`
	// Address is the maintenance address (CIDR); allocated from pool when unset.
	Address *Prefix `toml:"address"`
	// Gateway overrides the server's gateway for this device.
	Gateway *Addr `toml:"gateway"`
	// DHCPServer overrides the server's dhcp_server for this device.
	DHCPServer *Addr `toml:"dhcp_server"`
}

// AccessRouter is the access_router role: it gives each device link its
// point-to-point address, routes maintenance addresses to the links and
// forwards (optionally caches) probes.
type AccessRouter struct {
	// Links are the point-to-point links to devices.
	Links []AccessLink `toml:"links"`
	// Cache keeps the latest probe for a link that is down and delivers it
	// when the link comes up.
	Cache bool `toml:"cache"`
	// Upstream is the interface probes arrive on (required with cache).
	Upstream string `toml:"upstream"`
	// Port is the RHCP UDP port (default 6655).
	Port int `toml:"port"`
}

// AccessLink is one device link of an access router.
type AccessLink struct {
	// Iface is the router's interface.
	Iface string `toml:"iface"`
	// Address is the router's link address (CIDR, e.g. "192.0.2.1/32").
	Address Prefix `toml:"address"`
	// Peer is the device's link address (the IPCP-assigned one).
	Peer Prefix `toml:"peer"`
	// Routes are the maintenance addresses or prefixes routed to this link
	// via the peer.
	Routes []Prefix `toml:"routes"`
}

// RHCPClient is the rhcp_client role: a device that waits for a probe on its
// point-to-point link.
type RHCPClient struct {
	// Iface is the point-to-point interface.
	Iface string `toml:"iface"`
	// ClientID is the device's ID (ESN).
	ClientID string `toml:"client_id"`
	// Port is the UDP port (default 6655).
	Port int `toml:"port"`
	// KeyFile is a file holding the per-site key.
	KeyFile string `toml:"key_file"`
	// KeyEnv is an environment variable holding the per-site key.
	KeyEnv string `toml:"key_env"`
	// GenerateKey creates key_file with a random key when it does not exist.
	GenerateKey bool `toml:"generate_key"`
	// Link is the link address, standing in for the IPCP step of PPP on veth.
	Link *RHCPLinkAddress `toml:"link"`
	// DHCP runs unicast DHCP when the probe names a DHCP server (default true).
	DHCP *bool `toml:"dhcp"`
	// Persist keeps the acquired address when fieldcon stops.
	Persist bool `toml:"persist"`
}

// RHCPLinkAddress is a point-to-point address.
type RHCPLinkAddress struct {
	// Address is the device's link address (CIDR).
	Address Prefix `toml:"address"`
	// Peer is the access router's end (CIDR).
	Peer Prefix `toml:"peer"`
}

// Dnsmasq is the dnsmasq role: runs the dnsmasq DHCP server as a real peer
// in the node's namespace with a generated configuration.
type Dnsmasq struct {
	// Iface is the interface dnsmasq listens on.
	Iface string `toml:"iface"`
	// PoolStart and PoolEnd bound the dynamic range.
	PoolStart Addr `toml:"pool_start"`
	PoolEnd   Addr `toml:"pool_end"`
	// PrefixLen is the pool's subnet prefix length (default 24).
	PrefixLen int `toml:"prefix_len"`
	// LeaseTime is the lease duration (default 1h).
	LeaseTime Duration `toml:"lease_time"`
	// Reservations are fixed addresses by client-id.
	Reservations []DnsmasqReservation `toml:"reservations"`
}

// DnsmasqReservation is one fixed address.
type DnsmasqReservation struct {
	// ClientID is the DHCP client-id (option 61) as text (the ESN).
	ClientID string `toml:"client_id"`
	// Address is the fixed address.
	Address Addr `toml:"address"`
}
