package assignment

import (
	"net/netip"
	"testing"
)

// TestAcceptsWhatSitesUse: the rules refuse hostile values (tested value by
// value in engine/rhcp and profiles) but none of what sites configure.
func TestAcceptsWhatSitesUse(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	for _, a := range []Assignment{
		{Address: pfx("203.0.113.10/24"), Gateway: addr("192.0.2.1"), Routes: []Route{{Dst: pfx("198.51.100.0/24")}}, Server: addr("198.51.100.1")},
		{Address: pfx("203.0.113.10/32"), Gateway: addr("192.0.2.1"), Server: addr("198.51.100.1"), DHCPServer: addr("198.18.0.2")},
		{Address: pfx("192.0.2.0/31"), Gateway: addr("192.0.2.1"), Server: addr("198.51.100.1")}, // RFC 3021
		{Address: pfx("10.1.2.3/8"), Routes: []Route{{Dst: pfx("10.0.0.0/8"), Via: addr("10.0.0.1")}}, Server: addr("10.0.0.2")},
		{Address: pfx("2001:db8::10/64"), Gateway: addr("fe80::1"), Routes: []Route{{Dst: pfx("2001:db8:1::/48")}}, Server: addr("2001:db8::1")},
	} {
		if p := a.Check(); len(p) != 0 {
			t.Errorf("%+v refused: %v", a, p)
		}
	}
}

func TestOnLink(t *testing.T) {
	link := []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32"), netip.MustParsePrefix("192.0.2.1/32")}
	addr := netip.MustParsePrefix("203.0.113.10/24")
	for gw, ok := range map[string]bool{"192.0.2.1": true, "203.0.113.1": true, "192.0.2.3": false, "198.51.100.1": false} {
		if err := OnLink(netip.MustParseAddr(gw), addr, link); (err == nil) != ok {
			t.Errorf("OnLink(%s) = %v, want on link %v", gw, err, ok)
		}
	}
}
