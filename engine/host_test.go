package engine

import (
	"net/netip"
	"testing"
)

func TestIproute2Forms(t *testing.T) {
	a := Address{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Peer: netip.MustParsePrefix("192.0.2.2/32")}
	if got := a.String(); got != "192.0.2.1/32 peer 192.0.2.2/32" {
		t.Errorf("Address.String() = %q", got)
	}
	r := Route{Dst: netip.MustParsePrefix("203.0.113.0/24"), Gateway: netip.MustParseAddr("192.0.2.2"), Dev: "eth1", Metric: 10, OnLink: true}
	if got := r.String(); got != "203.0.113.0/24 via 192.0.2.2 dev eth1 metric 10 onlink" {
		t.Errorf("Route.String() = %q", got)
	}
}
