// Package assignment holds the rules the values an RHCP probe gives a
// device must satisfy: the maintenance address, the gateway, the routes and
// the servers the device answers. The RHCP client checks a probe with them
// before it touches the host, and `fieldcon check` refuses the same values
// in the server's allocation table, so both sides refuse exactly the same
// things (docs/protocols/rhcp.md "Values a device accepts").
package assignment

import (
	"fmt"
	"net/netip"
)

// Route is a route a probe carries: Via unset means the probe's gateway.
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// Assignment is what one probe tells a device to configure.
type Assignment struct {
	Address    netip.Prefix
	Gateway    netip.Addr
	Routes     []Route
	Server     netip.Addr
	DHCPServer netip.Addr
}

// Fields of a Problem.
const (
	FieldAddress    = "address"
	FieldGateway    = "gateway"
	FieldRouteDst   = "route.dst"
	FieldRouteVia   = "route.via"
	FieldServer     = "server"
	FieldDHCPServer = "dhcp_server"
)

// Problem is one value of an assignment that breaks a rule. Route is the
// index of the route for the route fields.
type Problem struct {
	Field string
	Route int
	Err   error
}

func (p Problem) Error() string {
	if p.Field == FieldRouteDst || p.Field == FieldRouteVia {
		return fmt.Sprintf("%s[%d]: %v", p.Field, p.Route, p.Err)
	}
	return fmt.Sprintf("%s: %v", p.Field, p.Err)
}

// Check applies every rule to a and returns the problems, in the order of
// the fields. An unset Address (a pool allocation not made yet) skips the
// rules that need it.
func (a Assignment) Check() []Problem {
	var out []Problem
	add := func(field string, i int, err error) {
		if err != nil {
			out = append(out, Problem{Field: field, Route: i, Err: err})
		}
	}
	if a.Address.IsValid() {
		add(FieldAddress, 0, Address(a.Address))
	}
	if a.Gateway.IsValid() {
		add(FieldGateway, 0, NextHop(a.Gateway, a.Address))
	}
	for i, r := range a.Routes {
		add(FieldRouteDst, i, Destination(r.Dst))
		if r.Via.IsValid() {
			add(FieldRouteVia, i, NextHop(r.Via, a.Address))
			if r.Dst.IsValid() && r.Via.Is4() != r.Dst.Addr().Is4() {
				add(FieldRouteVia, i, fmt.Errorf("next hop %s and destination %s are of different IP families", r.Via, r.Dst))
			}
		}
		// Without via or gateway the route is a device route: fine on the
		// point-to-point link RHCP runs on.
	}
	if a.Server.IsValid() {
		add(FieldServer, 0, Peer(a.Server, a.Address))
	}
	if a.DHCPServer.IsValid() {
		add(FieldDHCPServer, 0, Peer(a.DHCPServer, a.Address))
	}
	return out
}

// Prefix lengths a device accepts (RFC 4632 §3.1 aggregates go no wider
// than a /8 in practice; anything shorter on a device's link, or as a route
// a probe adds, would take over most of the address space, e.g. /0 or the
// 0.0.0.0/1 + 128.0.0.0/1 pair that overrides a default route).
const (
	minBits4 = 8
	minBits6 = 16
)

// refused are the address ranges never given to or routed by a device, with
// why (RFC 6890 special-purpose registries).
var refused = []struct {
	p   netip.Prefix
	why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "in 0.0.0.0/8, \"this network\" (RFC 1122 §3.2.1.3), not an address to configure"},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address (RFC 1122 §3.2.1.3)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "an IPv4 link-local address (RFC 3927), which is never assigned by a server"},
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address (RFC 1112 §4)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the limited broadcast address (RFC 919 §7)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "in 240.0.0.0/4, reserved class E (RFC 1112 §4)"},
	{netip.MustParsePrefix("::/128"), "the unspecified address (RFC 4291 §2.5.2)"},
	{netip.MustParsePrefix("::1/128"), "the loopback address (RFC 4291 §2.5.3)"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "an IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2); give the IPv4 address"},
	{netip.MustParsePrefix("fe80::/10"), "an IPv6 link-local address (RFC 4291 §2.5.6), which the device forms itself"},
	{netip.MustParsePrefix("ff00::/8"), "a multicast address (RFC 4291 §2.7)"},
}

// special returns why a is not a unicast address a device may be given,
// or "".
func special(a netip.Addr) string {
	for _, r := range refused {
		if r.p.Contains(a) {
			return r.why
		}
	}
	return ""
}

func bits(p netip.Prefix) error {
	minBits := minBits4
	if p.Addr().Is6() {
		minBits = minBits6
	}
	if p.Bits() < minBits {
		return fmt.Errorf("prefix length /%d is too short; want /%d–/%d", p.Bits(), minBits, p.Addr().BitLen())
	}
	return nil
}

// Address checks the maintenance address: a unicast address with a sane
// prefix length that is neither the network nor the broadcast address of
// its subnet (RFC 919 §7, RFC 1122 §3.2.1.3; a /31 has neither, RFC 3021).
func Address(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("address %s is not valid", p)
	}
	a := p.Addr()
	if why := special(a); why != "" {
		return fmt.Errorf("%s is %s", a, why)
	}
	if err := bits(p); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if a.Is4() && p.Bits() <= 30 {
		switch a {
		case p.Masked().Addr():
			return fmt.Errorf("%s is the network address of its subnet %s", a, p.Masked())
		case lastAddr(p):
			return fmt.Errorf("%s is the broadcast address of its subnet %s", a, p.Masked())
		}
	}
	return nil
}

// Destination checks a route's destination (and a pool): no host bits, a
// sane prefix length, not within or over special address space (a route
// to loopback, multicast or class E, or one that covers them).
func Destination(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("destination %s is not valid", p)
	}
	if p.Masked() != p {
		return fmt.Errorf("destination %s has host bits set; did you mean %s?", p, p.Masked())
	}
	if err := bits(p); err != nil {
		return fmt.Errorf("destination %s: %w", p, err)
	}
	for _, r := range refused {
		if r.p.Overlaps(p) {
			return fmt.Errorf("destination %s covers %s, %s", p, r.p, r.why)
		}
	}
	return nil
}

// NextHop checks a gateway or a route's via: a unicast address of the
// maintenance address's family and not that address itself. An IPv6
// link-local next hop is allowed: routers are reached by those (RFC 4861
// §8).
func NextHop(gw netip.Addr, addr netip.Prefix) error {
	if !(gw.Is6() && gw.IsLinkLocalUnicast()) {
		if why := special(gw); why != "" {
			return fmt.Errorf("next hop %s is %s", gw, why)
		}
	}
	if addr.IsValid() {
		if gw.Is4() != addr.Addr().Is4() {
			return fmt.Errorf("next hop %s and address %s are of different IP families", gw, addr)
		}
		if gw == addr.Addr() {
			return fmt.Errorf("next hop %s is the device's own address", gw)
		}
		if gw.Is4() && addr.Bits() <= 30 && gw == lastAddr(addr) {
			return fmt.Errorf("next hop %s is the broadcast address of %s", gw, addr.Masked())
		}
	}
	return nil
}

// Peer checks the address of a server the device answers (the RHCP server
// its stop goes to, the DHCP server of RHCP+DHCP): unicast, not the device's
// own address.
func Peer(a netip.Addr, addr netip.Prefix) error {
	if why := special(a); why != "" {
		return fmt.Errorf("%s is %s", a, why)
	}
	if addr.IsValid() && a == addr.Addr() {
		return fmt.Errorf("%s is the device's own address", a)
	}
	return nil
}

// OnLink checks that a next hop is reachable from the device: inside the
// maintenance address's subnet, or inside (or the peer of) one of the
// prefixes the device already reaches directly on the link (its link
// address and peer, device routes). The client checks it against the host;
// a server's table cannot know the device's link.
func OnLink(gw netip.Addr, addr netip.Prefix, link []netip.Prefix) error {
	if addr.IsValid() && addr.Masked().Contains(gw) {
		return nil
	}
	for _, p := range link {
		if p.Masked().Contains(gw) {
			return nil
		}
	}
	return fmt.Errorf("next hop %s is not on the link: outside %s and the link's prefixes %v", gw, addr, link)
}

// lastAddr is the highest address of p (its broadcast address for IPv4).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
