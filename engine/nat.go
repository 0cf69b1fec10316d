package engine

import (
	"net/netip"
	"strconv"
)

// NATHost is implemented by hosts that can program source NAT and a forward
// filter and list the kernel's connection tracking table (drivers/linux with
// nftables and netlink conntrack; drivers/fake). It is separate from Host
// because only NAT-capable roles (the tunnel server, a NAT gateway) need it:
// such a role type-asserts env.Host.Host to NATHost.
//
// Rules live in nftables tables fieldcon owns ("fieldcon-<name>"), so
// removing them never touches anybody else's firewall. The remove functions
// are meant for env.Host.OnUndo.
type NATHost interface {
	// AddMasquerade adds source NAT for forwarded packets from m.Source
	// leaving through m.OutIface.
	// Equivalent to: `nft add rule ip fieldcon-NAME postrouting ip saddr SRC oifname OUT masquerade`.
	AddMasquerade(m Masquerade) (remove func() error, err error)
	// AddForwardFilter lets through only the forwarded traffic f allows.
	// Equivalent to: `nft add rule ip fieldcon-NAME forward iifname IN udp dport PORT accept` … `drop`.
	AddForwardFilter(f ForwardFilter) (remove func() error, err error)
	// Conntrack lists the IPv4 connection tracking entries that match f.
	// Equivalent to: `conntrack -L -s SRC`.
	Conntrack(f ConntrackFilter) ([]ConntrackFlow, error)
	// DeleteConntrack removes the matching entries, so the next packet of
	// a flow is translated afresh; it returns how many went.
	// Equivalent to: `conntrack -D -s SRC -p udp`.
	DeleteConntrack(f ConntrackFilter) (int, error)
}

// Masquerade is one source NAT rule.
type Masquerade struct {
	// Name names the nftables table, "fieldcon-<Name>".
	Name string
	// Source matches the packets' source prefix (the tunnel pool, a private LAN).
	Source   netip.Prefix
	OutIface string
	// To, when set, translates to this address (snat) instead of the
	// outgoing interface's address (masquerade).
	To netip.Addr
	// PortMin..PortMax, when set, is the range of source ports to map to.
	PortMin, PortMax uint16
}

// ForwardFilter is a firewall for forwarded traffic from InIface to
// OutIface: new flows are allowed only to AllowUDP ports; replies to allowed
// flows come back (ct state established,related).
type ForwardFilter struct {
	Name              string
	InIface, OutIface string
	AllowUDP          []uint16
}

// ConntrackFilter selects conntrack entries; zero fields match all.
type ConntrackFilter struct {
	// Source matches the original direction's source address.
	Source netip.Prefix
	// Protocol is an IP protocol number (6 TCP, 17 UDP); 0 for all.
	Protocol uint8
}

// ConntrackFlow is one connection tracking entry.
type ConntrackFlow struct {
	Protocol uint8
	// Orig is the tuple as the first packet had it; Reply the tuple replies
	// carry. With source NAT, Reply.Dst is the translated source.
	OrigSrc, OrigDst   netip.AddrPort
	ReplySrc, ReplyDst netip.AddrPort
	// State is the TCP state ("ESTABLISHED", ...) or "" for other protocols.
	State string
	// Counters need net.netfilter.nf_conntrack_acct=1.
	PacketsOrig, BytesOrig   uint64
	PacketsReply, BytesReply uint64
	// Timeout is the seconds left before the entry expires.
	Timeout uint32
}

// Matches reports whether fl passes f.
func (f ConntrackFilter) Matches(fl ConntrackFlow) bool {
	if f.Protocol != 0 && fl.Protocol != f.Protocol {
		return false
	}
	return !f.Source.IsValid() || f.Source.Contains(fl.OrigSrc.Addr())
}

// ProtocolName names an IP protocol number for tables and events.
func ProtocolName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	}
	return "ip-" + strconv.Itoa(int(p))
}
