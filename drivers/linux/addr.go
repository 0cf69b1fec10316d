package linux

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fieldcon/fieldcon/engine"
)

// infinityLife is the kernel's "forever" lifetime (INFINITY_LIFE_TIME in
// include/net/addrconf.h; iproute2 prints it as "forever").
const infinityLife = math.MaxUint32

func ipNet(p netip.Prefix) *net.IPNet {
	if !p.IsValid() {
		return nil
	}
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

func fromIPNet(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func fromIP(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

// lifetime converts to the kernel's seconds, rounding up so that a lifetime
// of 1.5s is not cut to 1s.
func lifetime(d time.Duration) int {
	if d <= 0 {
		return infinityLife
	}
	s := (d + time.Second - 1) / time.Second
	if s >= infinityLife {
		return infinityLife - 1
	}
	return int(s)
}

func fromLifetime(s int) time.Duration {
	if s <= 0 || s >= infinityLife {
		return 0
	}
	return time.Duration(s) * time.Second
}

// kernelLabel makes an address label the way iproute2 insists on: the
// interface name, optionally followed by ":" and a tag, at most IFNAMSIZ-1
// bytes ("eth0:fc").
func kernelLabel(iface, label string) string {
	if label == "" {
		return ""
	}
	if label != iface && !strings.HasPrefix(label, iface+":") {
		label = iface + ":" + label
	}
	if len(label) > unix.IFNAMSIZ-1 {
		label = label[:unix.IFNAMSIZ-1]
	}
	return label
}

func toNetlinkAddr(iface string, a engine.Address) *netlink.Addr {
	na := &netlink.Addr{IPNet: ipNet(a.Prefix), Peer: ipNet(a.Peer)}
	if a.Prefix.Addr().Is4() {
		na.Label = kernelLabel(iface, a.Label)
	}
	if a.Valid > 0 || a.Preferred > 0 {
		na.ValidLft = lifetime(a.Valid)
		na.PreferedLft = lifetime(a.Preferred)
		// A preferred lifetime longer than the valid one is rejected by
		// the kernel; "forever preferred" with a finite valid lifetime
		// means preferred until it goes away.
		if a.Preferred <= 0 || na.PreferedLft > na.ValidLft {
			na.PreferedLft = na.ValidLft
		}
	}
	return na
}

func toAddress(iface string, na netlink.Addr) engine.Address {
	a := engine.Address{
		Prefix:    fromIPNet(na.IPNet),
		Preferred: fromLifetime(na.PreferedLft),
		Valid:     fromLifetime(na.ValidLft),
	}
	if na.Peer != nil {
		p := fromIPNet(na.Peer)
		// Without a peer the kernel reports IFA_ADDRESS == IFA_LOCAL;
		// only a different one is a point-to-point peer.
		if p.Addr() != a.Prefix.Addr() {
			a.Peer = p
		}
	}
	switch {
	case na.Label == iface || na.Label == "":
	case strings.HasPrefix(na.Label, iface+":"):
		a.Label = strings.TrimPrefix(na.Label, iface+":")
	default:
		a.Label = na.Label
	}
	return a
}

// Addresses lists the addresses on iface, or on every interface when iface
// is "".
//
// Equivalent to: `ip addr show dev $iface`
func (h *Host) Addresses(iface string) ([]engine.Address, error) {
	var links []netlink.Link
	if iface != "" {
		l, err := h.link(iface)
		if err != nil {
			return nil, err
		}
		links = []netlink.Link{l}
	} else {
		var err error
		links, err = retryDump(h.handle.LinkList)
		if err != nil {
			return nil, fmt.Errorf("ip link show in netns %q: %w", h.name, err)
		}
	}
	var out []engine.Address
	for _, l := range links {
		list, err := retryDump(func() ([]netlink.Addr, error) { return h.handle.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return nil, fmt.Errorf("ip addr show dev %s in netns %q: %w", l.Attrs().Name, h.name, notExist(err))
		}
		for _, na := range list {
			out = append(out, toAddress(l.Attrs().Name, na))
		}
	}
	return out, nil
}

// AddAddress adds an address, or replaces it (new lifetimes, label) when it
// is already there.
//
// Equivalent to: `ip addr replace $prefix [peer $peer] dev $iface
// [label $iface:$label] [valid_lft $v preferred_lft $p]`
func (h *Host) AddAddress(iface string, a engine.Address) error {
	if !a.Prefix.IsValid() {
		return fmt.Errorf("ip addr add on %s: no address given", iface)
	}
	l, err := h.link(iface)
	if err != nil {
		return fmt.Errorf("ip addr add %s dev %s: %w", a, iface, err)
	}
	if err := h.handle.AddrReplace(l, toNetlinkAddr(iface, a)); err != nil {
		return fmt.Errorf("ip addr add %s dev %s in netns %q: %w", a, iface, h.name, notExist(err))
	}
	return nil
}

// DelAddress removes an address; an address that is not there is an error
// wrapping engine.ErrNotExist.
//
// Equivalent to: `ip addr del $prefix [peer $peer] dev $iface`
func (h *Host) DelAddress(iface string, a engine.Address) error {
	l, err := h.link(iface)
	if err != nil {
		return fmt.Errorf("ip addr del %s dev %s: %w", a, iface, err)
	}
	// Ask first: the kernel answers a missing IPv6 address with EADDRNOTAVAIL
	// but a missing IPv4 one with the same errno only sometimes, and a
	// peer-address mismatch confusingly.
	list, err := retryDump(func() ([]netlink.Addr, error) { return h.handle.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("ip addr show dev %s in netns %q: %w", iface, h.name, notExist(err))
	}
	var found *netlink.Addr
	for i := range list {
		if fromIPNet(list[i].IPNet) == a.Prefix {
			found = &list[i]
			break
		}
	}
	if found == nil {
		return fmt.Errorf("ip addr del %s dev %s in netns %q: %w", a, iface, h.name, engine.ErrNotExist)
	}
	if err := h.handle.AddrDel(l, found); err != nil {
		return fmt.Errorf("ip addr del %s dev %s in netns %q: %w", a, iface, h.name, notExist(err))
	}
	return nil
}

func (h *Host) toNetlinkRoute(r engine.Route) (*netlink.Route, error) {
	if !r.Dst.IsValid() {
		return nil, fmt.Errorf("route without destination")
	}
	nr := &netlink.Route{
		Dst:      ipNet(r.Dst.Masked()),
		Priority: r.Metric,
		Table:    unix.RT_TABLE_MAIN,
	}
	if r.Gateway.IsValid() {
		nr.Gw = r.Gateway.AsSlice()
	} else if r.Dst.Addr().Is4() {
		// What iproute2 picks for a route without a gateway.
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	if r.Dev != "" {
		l, err := h.link(r.Dev)
		if err != nil {
			return nil, err
		}
		nr.LinkIndex = l.Attrs().Index
	}
	return nr, nil
}

// Routes lists the unicast routes of the main table, IPv4 and IPv6.
//
// Equivalent to: `ip route show table main; ip -6 route show table main`
func (h *Host) Routes() ([]engine.Route, error) {
	names := map[int]string{}
	if links, err := retryDump(h.handle.LinkList); err == nil {
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
		}
	}
	var out []engine.Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		list, err := retryDump(func() ([]netlink.Route, error) {
			return h.handle.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return nil, fmt.Errorf("ip route show in netns %q: %w", h.name, err)
		}
		for _, nr := range list {
			if nr.Type != unix.RTN_UNICAST {
				continue
			}
			dst := fromIPNet(nr.Dst)
			if !dst.IsValid() {
				dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
				if fam == netlink.FAMILY_V6 {
					dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
				}
			}
			out = append(out, engine.Route{
				Dst:     dst,
				Gateway: fromIP(nr.Gw),
				Dev:     names[nr.LinkIndex],
				Src:     fromIP(nr.Src),
				Metric:  nr.Priority,
				OnLink:  nr.Flags&int(netlink.FLAG_ONLINK) != 0,
			})
		}
	}
	return out, nil
}

// AddRoute adds a route, replacing one to the same destination and metric.
//
// Equivalent to: `ip route replace $dst [via $gw] [dev $dev] [src $src]
// [metric $metric] [onlink]`
func (h *Host) AddRoute(r engine.Route) error {
	nr, err := h.toNetlinkRoute(r)
	if err != nil {
		return fmt.Errorf("ip route replace %s: %w", r, err)
	}
	if err := h.handle.RouteReplace(nr); err != nil {
		return fmt.Errorf("ip route replace %s in netns %q: %w", r, h.name, err)
	}
	return nil
}

// DelRoute removes a route; a route that is not there is an error wrapping
// engine.ErrNotExist.
//
// Equivalent to: `ip route del $dst [via $gw] [dev $dev] [metric $metric]`
func (h *Host) DelRoute(r engine.Route) error {
	nr, err := h.toNetlinkRoute(r)
	if err != nil {
		return fmt.Errorf("ip route del %s: %w", r, err)
	}
	// The kernel matches a delete on every field given; RT_SCOPE_NOWHERE
	// means "any scope" (what iproute2 sends), and source and flags would
	// only make it miss a route that was added with other defaults.
	nr.Scope, nr.Src, nr.Flags = netlink.SCOPE_NOWHERE, nil, 0
	if err := h.handle.RouteDel(nr); err != nil {
		return fmt.Errorf("ip route del %s in netns %q: %w", r, h.name, notExist(err))
	}
	return nil
}

var nudNames = []struct {
	state int
	name  string
}{
	{netlink.NUD_PERMANENT, "PERMANENT"}, {netlink.NUD_NOARP, "NOARP"},
	{netlink.NUD_REACHABLE, "REACHABLE"}, {netlink.NUD_STALE, "STALE"},
	{netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"},
	{netlink.NUD_FAILED, "FAILED"}, {netlink.NUD_INCOMPLETE, "INCOMPLETE"},
}

// nudString names a neighbour state as `ip neigh` does.
func nudString(s int) string {
	for _, n := range nudNames {
		if s&n.state != 0 {
			return n.name
		}
	}
	return "NONE"
}

// Neighbors lists the ARP and NDP entries on iface ("" for all).
//
// Equivalent to: `ip neigh show [dev $iface]`
func (h *Host) Neighbors(iface string) ([]engine.Neighbor, error) {
	index := 0
	names := map[int]string{}
	if iface != "" {
		l, err := h.link(iface)
		if err != nil {
			return nil, err
		}
		index = l.Attrs().Index
		names[index] = iface
	} else if links, err := retryDump(h.handle.LinkList); err == nil {
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
		}
	}
	list, err := retryDump(func() ([]netlink.Neigh, error) { return h.handle.NeighList(index, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("ip neigh show in netns %q: %w", h.name, err)
	}
	var out []engine.Neighbor
	for _, n := range list {
		ip := fromIP(n.IP)
		if !ip.IsValid() || ip.IsMulticast() || n.Flags&netlink.NTF_PROXY != 0 {
			continue
		}
		out = append(out, engine.Neighbor{
			Dev:       names[n.LinkIndex],
			IP:        ip,
			MAC:       n.HardwareAddr,
			Permanent: n.State&netlink.NUD_PERMANENT != 0,
			State:     nudString(n.State),
		})
	}
	return out, nil
}

func (h *Host) toNeigh(n engine.Neighbor) (*netlink.Neigh, error) {
	l, err := h.link(n.Dev)
	if err != nil {
		return nil, err
	}
	fam := netlink.FAMILY_V4
	if n.IP.Is6() {
		fam = netlink.FAMILY_V6
	}
	state := netlink.NUD_REACHABLE
	if n.Permanent {
		state = netlink.NUD_PERMANENT
	}
	return &netlink.Neigh{
		LinkIndex: l.Attrs().Index, Family: fam, State: state,
		IP: n.IP.AsSlice(), HardwareAddr: n.MAC,
	}, nil
}

func neighString(n engine.Neighbor) string {
	s := n.IP.String()
	if n.MAC != nil {
		s += " lladdr " + n.MAC.String()
	}
	s += " dev " + n.Dev
	if n.Permanent {
		s += " nud permanent"
	}
	return s
}

// SetNeighbor adds or replaces a neighbour entry; Permanent pins it (a
// static ARP entry that no reply can overwrite, DESIGN.md IP sync).
//
// Equivalent to: `ip neigh replace $ip lladdr $mac dev $dev nud permanent`
// (or `nud reachable`)
func (h *Host) SetNeighbor(n engine.Neighbor) error {
	if !n.IP.IsValid() {
		return fmt.Errorf("ip neigh replace on %s: no address given", n.Dev)
	}
	nn, err := h.toNeigh(n)
	if err != nil {
		return fmt.Errorf("ip neigh replace %s: %w", neighString(n), err)
	}
	if err := h.handle.NeighSet(nn); err != nil {
		return fmt.Errorf("ip neigh replace %s in netns %q: %w", neighString(n), h.name, err)
	}
	return nil
}

// DelNeighbor removes a neighbour entry; an entry that is not there is an
// error wrapping engine.ErrNotExist.
//
// Equivalent to: `ip neigh del $ip dev $dev`
func (h *Host) DelNeighbor(n engine.Neighbor) error {
	nn, err := h.toNeigh(n)
	if err != nil {
		return fmt.Errorf("ip neigh del %s: %w", neighString(n), err)
	}
	if err := h.handle.NeighDel(nn); err != nil {
		return fmt.Errorf("ip neigh del %s in netns %q: %w", neighString(n), h.name, notExist(err))
	}
	return nil
}
