package dhcp

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// OptionCloudServer carries the "cloud server" address that IP sync keeps
// current (DESIGN.md §4). 224 is the first code of the site-specific range
// (RFC 3942 §4: 224–254 stay site-specific).
const OptionCloudServer = dhcpv4.GenericOptionCode(224)

// Lease is what a client holds after an ACK.
type Lease struct {
	Iface string `json:"iface"`
	// Address is the leased address with the subnet's prefix length.
	Address netip.Prefix `json:"address"`
	// Server is the server identifier (option 54).
	Server netip.Addr `json:"server"`
	// ServerMAC and ServerIP are the link-layer and IP source of the ACK:
	// the neighbour to pin (the server, or the relay in front of it).
	ServerMAC   net.HardwareAddr `json:"server_mac,omitempty"`
	ServerIP    netip.Addr       `json:"server_ip,omitempty"`
	Routers     []netip.Addr     `json:"routers,omitempty"`
	DNS         []netip.Addr     `json:"dns,omitempty"`
	Domain      string           `json:"domain,omitempty"`
	CloudServer netip.Addr       `json:"cloud_server,omitempty"`
	LeaseTime   time.Duration    `json:"lease_time"`
	T1          time.Duration    `json:"t1"`
	T2          time.Duration    `json:"t2"`
	// Acquired is when the ACK arrived; T1, T2 and expiry count from it.
	Acquired time.Time `json:"acquired"`
	ClientID []byte    `json:"client_id,omitempty"`
	// Nonce is the RFC 6704 key for authenticating a later FORCERENEW, and
	// Replay the last replay-detection counter accepted.
	Nonce  []byte `json:"nonce,omitempty"`
	Replay uint64 `json:"replay,omitempty"`
	// RapidCommit is set when the lease came from a two-message exchange
	// (RFC 4039).
	RapidCommit bool `json:"rapid_commit,omitempty"`
}

// Expiry is when the lease ends.
func (l *Lease) Expiry() time.Time { return l.Acquired.Add(l.LeaseTime) }

func ipFrom(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok {
		return netip.Addr{}
	}
	return a
}

func ipsFrom(ips []net.IP) []netip.Addr {
	var out []netip.Addr
	for _, ip := range ips {
		if a := ipFrom(ip); a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// leaseFromACK reads a lease out of an ACK (RFC 2131 §4.3.1 and RFC 2132).
// T1 and T2 default to 0.5 and 0.875 of the lease time (RFC 2131 §4.4.5).
func leaseFromACK(ack *dhcpv4.DHCPv4, now time.Time) (Lease, error) {
	yi := ipFrom(ack.YourIPAddr)
	if !yi.IsValid() || yi.IsUnspecified() {
		return Lease{}, fmt.Errorf("ack without yiaddr")
	}
	bits := 24
	if m := ack.SubnetMask(); m != nil {
		if ones, size := m.Size(); size == 32 {
			bits = ones
		}
	}
	lt := ack.IPAddressLeaseTime(0)
	if lt <= 0 {
		return Lease{}, fmt.Errorf("ack for %s without lease time", yi)
	}
	l := Lease{
		Address:   netip.PrefixFrom(yi, bits),
		Server:    ipFrom(ack.ServerIdentifier()),
		Routers:   ipsFrom(ack.Router()),
		DNS:       ipsFrom(ack.DNS()),
		Domain:    ack.DomainName(),
		LeaseTime: lt,
		T1:        ack.IPAddressRenewalTime(lt / 2),
		T2:        ack.IPAddressRebindingTime(lt * 7 / 8),
		Acquired:  now,
		ClientID:  ack.GetOneOption(dhcpv4.OptionClientIdentifier),
	}
	if v := ack.GetOneOption(OptionCloudServer); len(v) == 4 {
		l.CloudServer = netip.AddrFrom4([4]byte(v))
	}
	if v := ack.GetOneOption(dhcpv4.OptionAuthentication); v != nil {
		if a, err := ParseAuth(v); err == nil && a.Protocol == authProtocolNonce && a.Type == authTypeNonce && len(a.Value) == nonceLen {
			l.Nonce, l.Replay = append([]byte(nil), a.Value...), a.Replay
		}
	}
	if l.T1 <= 0 || l.T1 > l.LeaseTime {
		l.T1 = lt / 2
	}
	if l.T2 <= l.T1 || l.T2 > l.LeaseTime {
		l.T2 = lt * 7 / 8
	}
	return l, nil
}

// Diff lists what changed from old to l, in the words of a
// dhcp.lease.renewed event: only these are touched on the host (IP sync).
func (l *Lease) Diff(old *Lease) map[string]any {
	d := map[string]any{}
	if old == nil {
		return d
	}
	if l.Address != old.Address {
		d["address"] = map[string]string{"old": old.Address.String(), "new": l.Address.String()}
	}
	if l.CloudServer != old.CloudServer {
		d["cloud_server"] = map[string]string{"old": addrString(old.CloudServer), "new": addrString(l.CloudServer)}
	}
	if !slices.Equal(l.Routers, old.Routers) {
		d["routers"] = map[string]any{"old": old.Routers, "new": l.Routers}
	}
	if l.Server != old.Server {
		d["server"] = map[string]string{"old": addrString(old.Server), "new": addrString(l.Server)}
	}
	return d
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// ClientKey is how a server (and `fieldcon leases`) names a client: its
// client identifier (option 61) in hex, else "mac:" and its hardware address.
func ClientKey(clientID []byte, mac net.HardwareAddr) string {
	if len(clientID) > 0 {
		return hex.EncodeToString(clientID)
	}
	return "mac:" + mac.String()
}
