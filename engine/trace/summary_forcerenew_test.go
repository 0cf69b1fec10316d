package trace

import "testing"

func TestDHCPTypeNameForceRenew(t *testing.T) {
	for typ, want := range map[uint8]string{1: "Discover", 5: "Ack", 9: "ForceRenew"} {
		if got := dhcpTypeName(typ); got != want {
			t.Errorf("dhcpTypeName(%d) = %q, want %q", typ, got, want)
		}
	}
}
