package linux

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"

	"github.com/fieldcon/fieldcon/engine"
)

// These run without root: the pure conversions between engine values and
// what the kernel is told.

func TestSysctlPath(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"net/ipv4/ip_forward", "/proc/sys/net/ipv4/ip_forward"},
		{"net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"},
		{"net/ipv4/conf/eth0.100/forwarding", "/proc/sys/net/ipv4/conf/eth0.100/forwarding"},
		{"kernel/hostname", ""},
		{"net/../kernel/hostname", ""},
		{"/net/ipv4/ip_forward", ""},
		{"", ""},
	} {
		got, err := sysctlPath(tc.key)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", tc.key, got, err, tc.want)
		}
	}
}

func TestAddressConversion(t *testing.T) {
	for _, tc := range []struct {
		in               engine.Address
		label            string
		valid, preferred int
	}{
		{engine.Address{Prefix: netip.MustParsePrefix("192.0.2.1/24")}, "", 0, 0},
		{engine.Address{Prefix: netip.MustParsePrefix("192.0.2.1/24"), Label: "fc", Valid: 90 * time.Second, Preferred: 30 * time.Second}, "eth0:fc", 90, 30},
		{engine.Address{Prefix: netip.MustParsePrefix("192.0.2.1/24"), Label: "eth0:x", Valid: 1500 * time.Millisecond}, "eth0:x", 2, 2},
		{engine.Address{Prefix: netip.MustParsePrefix("192.0.2.1/24"), Label: "averyverylonglabel", Preferred: time.Minute}, "eth0:averyveryl", infinityLife, 60},
		{engine.Address{Prefix: netip.MustParsePrefix("2001:db8::1/64"), Label: "fc"}, "", 0, 0},
	} {
		na := toNetlinkAddr("eth0", tc.in)
		if na.Label != tc.label || na.ValidLft != tc.valid || na.PreferedLft != tc.preferred {
			t.Errorf("%+v → label %q valid %d preferred %d; want %q %d %d", tc.in, na.Label, na.ValidLft, na.PreferedLft, tc.label, tc.valid, tc.preferred)
		}
		back := toAddress("eth0", netlink.Addr{IPNet: na.IPNet, Peer: na.IPNet, Label: na.Label, ValidLft: na.ValidLft, PreferedLft: na.PreferedLft})
		if back.Prefix != tc.in.Prefix || back.Peer.IsValid() {
			t.Errorf("round trip of %+v gave %+v", tc.in, back)
		}
	}
	ptp := toAddress("ppp0", netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("192.0.2.1/32")), Peer: ipNet(netip.MustParsePrefix("192.0.2.2/32")), Label: "ppp0", ValidLft: infinityLife, PreferedLft: infinityLife})
	if ptp.Peer != netip.MustParsePrefix("192.0.2.2/32") || ptp.Label != "" || ptp.Valid != 0 {
		t.Errorf("point-to-point read back as %+v", ptp)
	}
}

func TestNames(t *testing.T) {
	if nudString(netlink.NUD_PERMANENT) != "PERMANENT" || nudString(netlink.NUD_STALE) != "STALE" || nudString(0) != "NONE" {
		t.Error("nudString")
	}
	for a, want := range map[string]string{"": "udp4", "192.0.2.1": "udp4", "0.0.0.0": "udp4", "::ffff:192.0.2.1": "udp4", "2001:db8::1": "udp6", "::": "udp6"} {
		var addr netip.Addr
		if a != "" {
			addr = netip.MustParseAddr(a)
		}
		if got := udpNetwork(addr); got != want {
			t.Errorf("udpNetwork(%q) = %s, want %s", a, got, want)
		}
	}
	for _, tc := range []struct {
		encap  string
		cooked bool
		want   uint16
	}{{"ether", false, 1}, {"loopback", false, 1}, {"none", false, 101}, {"ppp", false, 101}, {"ether", true, 101}} {
		l := &netlink.Device{LinkAttrs: netlink.LinkAttrs{EncapType: tc.encap}}
		if got := packetLinkType(l, tc.cooked); got != tc.want {
			t.Errorf("packetLinkType(%s, cooked=%t) = %d, want %d", tc.encap, tc.cooked, got, tc.want)
		}
	}
}

func TestNATRules(t *testing.T) {
	src := netip.MustParsePrefix("192.0.2.0/24")
	for _, tc := range []struct {
		m    engine.Masquerade
		last expr.Any
		ok   bool
	}{
		{engine.Masquerade{Source: src, OutIface: "eth0"}, &expr.Masq{}, true},
		{engine.Masquerade{Source: src, OutIface: "eth0", PortMin: 100, PortMax: 200}, &expr.Masq{ToPorts: true, RegProtoMin: 2, RegProtoMax: 3}, true},
		{engine.Masquerade{Source: src, To: netip.MustParseAddr("198.51.100.1")}, &expr.NAT{Type: expr.NATTypeSourceNAT, Family: 2, RegAddrMin: 1, Specified: true}, true},
		{engine.Masquerade{Source: netip.MustParsePrefix("2001:db8::/64")}, nil, false},
		{engine.Masquerade{Source: src, PortMin: 200, PortMax: 100}, nil, false},
		{engine.Masquerade{Source: src, PortMin: 200}, nil, false},
	} {
		ex, err := natRules(tc.m)
		if (err == nil) != tc.ok {
			t.Errorf("natRules(%+v) error %v, want ok=%t", tc.m, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		switch want := tc.last.(type) {
		case *expr.Masq:
			if got, ok := ex[len(ex)-1].(*expr.Masq); !ok || *got != *want {
				t.Errorf("natRules(%+v) ends with %#v, want %#v", tc.m, ex[len(ex)-1], want)
			}
		case *expr.NAT:
			if got, ok := ex[len(ex)-1].(*expr.NAT); !ok || *got != *want {
				t.Errorf("natRules(%+v) ends with %#v, want %#v", tc.m, ex[len(ex)-1], want)
			}
		}
	}
}
