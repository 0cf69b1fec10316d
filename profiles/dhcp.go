package profiles

// DHCPClient is the dhcp_client role: an RFC 2131 client on one interface.
type DHCPClient struct {
	// Iface is the interface to get an address for.
	Iface string `toml:"iface"`
	// ClientID is the client identifier (option 61): the device's ESN, sent
	// as type 0 followed by the string, or "hex:..." for raw bytes.
	ClientID string `toml:"client_id"`
	// VendorClass is the vendor class identifier (option 60).
	VendorClass string `toml:"vendor_class"`
	// Hostname is sent as option 12.
	Hostname string `toml:"hostname"`
	// Server, when set, is unicast to instead of broadcasting (a known
	// server); the interface needs an address to send from.
	Server *Addr `toml:"server"`
	// RapidCommit asks for the two-message exchange (RFC 4039).
	RapidCommit bool `toml:"rapid_commit"`
	// Routes installs a default route through the lease's first router.
	Routes bool `toml:"routes"`
	// ReleaseOnStop sends a RELEASE when fieldcon stops.
	ReleaseOnStop bool `toml:"release_on_stop"`
	// Persist keeps the address when fieldcon stops.
	Persist bool `toml:"persist"`
	// PinServer pins the server's IP-MAC pair as a permanent neighbour
	// entry, so a forged ARP cannot redirect the client (IP sync).
	PinServer bool `toml:"pin_server"`
	// ForceRenew advertises RFC 6704 nonce authentication so the server can
	// push changes with FORCERENEW (default true).
	ForceRenew *bool `toml:"forcerenew"`
	// ArpProbe checks an offered address with RFC 5227 ARP probes before
	// using it, and DECLINEs it when another host answers.
	ArpProbe bool `toml:"arp_probe"`
	// ProbeCount, ProbeInterval and ProbeWait shape the ARP probe (default
	// 2 probes 100ms apart, then 200ms; RFC 5227 itself waits 1–2s each).
	ProbeCount    int      `toml:"probe_count"`
	ProbeInterval Duration `toml:"probe_interval"`
	ProbeWait     Duration `toml:"probe_wait"`
	// RetransmitInitial and RetransmitMax shape the retransmission backoff
	// (default 1s doubling to 16s).
	RetransmitInitial Duration `toml:"retransmit_initial"`
	RetransmitMax     Duration `toml:"retransmit_max"`
	// DeclineWait is the pause after a DECLINE (default 1s; RFC 2131 says 10s).
	DeclineWait Duration `toml:"decline_wait"`
}

// DHCPServer is the dhcp_server role.
type DHCPServer struct {
	// Ifaces are the interfaces to serve on.
	Ifaces []string `toml:"ifaces"`
	// ServerID is the server identifier (option 54); default the first
	// IPv4 address of the first interface.
	ServerID *Addr `toml:"server_id"`
	// LeaseTime is the default lease time of pools (default 1h).
	LeaseTime Duration `toml:"lease_time"`
	// RapidCommit answers DISCOVERs with option 80 by an ACK (RFC 4039).
	RapidCommit bool `toml:"rapid_commit"`
	// ForceRenew hands RFC 6704 nonces to capable clients and sends them
	// FORCERENEW when their address or cloud server changes on reload.
	ForceRenew bool `toml:"forcerenew"`
	// SweepInterval is how often expired leases are swept (default 10s).
	SweepInterval Duration `toml:"sweep_interval"`
	// ForgetAfter is how long the row of a released, expired or declined
	// lease is kept before it is deleted (default 24h); reserved clients'
	// rows are kept.
	ForgetAfter Duration `toml:"forget_after"`
	// Pools are the address ranges handed out.
	Pools []DHCPPool `toml:"pools"`
	// Reservations give clients fixed addresses.
	Reservations []DHCPReservation `toml:"reservations"`
}

// DHCPPool is one subnet's range and options.
type DHCPPool struct {
	// Subnet is the subnet (CIDR, no host bits).
	Subnet Prefix `toml:"subnet"`
	// Start and End bound the range (inclusive).
	Start Addr `toml:"start"`
	End   Addr `toml:"end"`
	// Routers (option 3), DNS (option 6), Domain (option 15).
	Routers []Addr `toml:"routers"`
	DNS     []Addr `toml:"dns"`
	Domain  string `toml:"domain"`
	// CloudServer is the site's cloud server address (option 224).
	CloudServer *Addr `toml:"cloud_server"`
	// LeaseTime overrides the server's lease time.
	LeaseTime Duration `toml:"lease_time"`
}

// DHCPReservation is one fixed address.
type DHCPReservation struct {
	// ClientID matches option 61 (same encoding as dhcp_client.client_id).
	ClientID string `toml:"client_id"`
	// MAC matches the hardware address when there is no client_id.
	MAC string `toml:"mac"`
	// Address is the reserved address; it must be in a pool's subnet.
	Address Addr `toml:"address"`
	// CloudServer overrides the pool's cloud server for this client.
	CloudServer *Addr `toml:"cloud_server"`
}

// DHCPRelay is the dhcp_relay role (RFC 3046 option 82).
type DHCPRelay struct {
	// Downstream are the interfaces facing clients.
	Downstream []string `toml:"downstream"`
	// Upstream is the interface toward the servers.
	Upstream string `toml:"upstream"`
	// Servers are the DHCP servers (or the next relay) to forward to.
	// BOOTREPLYs are relayed only from them (and ReplyFrom), arriving on
	// Upstream.
	Servers []Addr `toml:"servers"`
	// ReplyFrom are further addresses BOOTREPLYs may come from: the DHCP
	// servers behind a chain of relays, which answer the first relay's
	// giaddr directly (RFC 1542 §4.1.2), not through the next relay.
	ReplyFrom []Addr `toml:"reply_from"`
	// RemoteID is the option 82 remote-id: the relaying device's ESN.
	RemoteID string `toml:"remote_id"`
	// MaxHops drops requests that went through more relays (default 16).
	MaxHops int `toml:"max_hops"`
}
