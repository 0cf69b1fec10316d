package engine

import "time"

// Snapshot is the engine's state at one instant: what the TUI draws and what
// `--json` status commands print. It is a copy; holding it blocks nothing.
type Snapshot struct {
	Time  time.Time      `json:"time"`
	Nodes []NodeSnapshot `json:"nodes"`
}

// Node returns the named node's snapshot, or nil.
func (s *Snapshot) Node(name string) *NodeSnapshot {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

// NodeSnapshot is one node's state.
type NodeSnapshot struct {
	Name  string         `json:"name"`
	Netns string         `json:"netns,omitempty"`
	Roles []RoleSnapshot `json:"roles"`
	// Winner is the mechanism that gave the node its formal address.
	Winner    string       `json:"winner,omitempty"`
	Addresses []AddressRow `json:"addresses,omitempty"`
	Leases    []LeaseRow   `json:"leases,omitempty"`
	Mappings  []MappingRow `json:"mappings,omitempty"`
	Tunnels   []TunnelRow  `json:"tunnels,omitempty"`
	Cascade   []CascadeRow `json:"cascade,omitempty"`
	Probes    []ProbeRow   `json:"probes,omitempty"`
}

// RoleSnapshot is one role's progress.
type RoleSnapshot struct {
	Kind   string     `json:"kind"`
	Status RoleStatus `json:"status"`
	Steps  []Step     `json:"steps,omitempty"`
	Error  string     `json:"error,omitempty"`
}

// AddressRow is an address the engine configured, with where it came from.
type AddressRow struct {
	Iface   string `json:"iface"`
	Address string `json:"address"`
	// Source: static, rhcp, dhcp, ipcp, tunnel, hop.
	Source string `json:"source"`
	// Temporary marks an RHCP address that a DHCP formal address will replace.
	Temporary bool          `json:"temporary,omitempty"`
	Preferred time.Duration `json:"preferred,omitempty"`
	Valid     time.Duration `json:"valid,omitempty"`
}

// LeaseRow is a DHCP lease, seen by a server (many) or a client (its own).
type LeaseRow struct {
	Role     string    `json:"role"` // "server" or "client"
	Address  string    `json:"address"`
	ClientID string    `json:"client_id,omitempty"`
	MAC      string    `json:"mac,omitempty"`
	Server   string    `json:"server,omitempty"`
	State    string    `json:"state"`
	T1       time.Time `json:"t1,omitempty"`
	T2       time.Time `json:"t2,omitempty"`
	Expiry   time.Time `json:"expiry,omitempty"`
}

// MappingRow is one NAT table row: a conntrack entry of tunnel traffic joined
// with the tunnel index.
type MappingRow struct {
	TunnelIndex uint32 `json:"tunnel_index"`
	Protocol    string `json:"protocol"`
	Virtual     string `json:"virtual"`    // client virtual address:port
	Translated  string `json:"translated"` // public address:port after SNAT
	Destination string `json:"destination"`
	State       string `json:"state,omitempty"`
	PacketsOut  uint64 `json:"packets_out"`
	BytesOut    uint64 `json:"bytes_out"`
	PacketsIn   uint64 `json:"packets_in"`
	BytesIn     uint64 `json:"bytes_in"`
}

// TunnelRow is one tunnel index table entry.
type TunnelRow struct {
	Index         uint32    `json:"index"`
	Endpoint      string    `json:"endpoint"` // client's public endpoint as seen through NAT
	Virtual       string    `json:"virtual"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	PacketsIn     uint64    `json:"packets_in"`
	PacketsOut    uint64    `json:"packets_out"`
	BytesIn       uint64    `json:"bytes_in"`
	BytesOut      uint64    `json:"bytes_out"`
}

// CascadeRow is one downstream device provisioned by a node.
type CascadeRow struct {
	Downstream string `json:"downstream"`
	Kind       string `json:"kind"` // "ppp" or "ethernet"
	Link       string `json:"link"`
	Address    string `json:"address,omitempty"`
	State      string `json:"state"`
}

// ProbeRow is an RHCP server's allocation for one client.
type ProbeRow struct {
	ClientID string    `json:"client_id"`
	Address  string    `json:"address"`
	State    string    `json:"state"` // probing, confirmed, reclaimed
	Sent     uint64    `json:"sent"`
	LastSent time.Time `json:"last_sent,omitempty"`
}
