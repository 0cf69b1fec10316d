package site

import (
	"reflect"
	"testing"

	"github.com/fieldcon/fieldcon/engine/arbitrate"
	"github.com/fieldcon/fieldcon/profiles"
)

// TestMechanismScope: the arbiter of each embedded device looks for a
// formal address only where its mechanisms would put one.
func TestMechanismScope(t *testing.T) {
	for _, tt := range []struct {
		profile, node string
		want          arbitrate.Scope
	}{
		{"rhcp", "device", arbitrate.Scope{Ifaces: []string{"eth0"}, IPv4: true}},
		{"rhcp-dhcp", "device", arbitrate.Scope{Ifaces: []string{"eth0"}, IPv4: true}},
		{"dhcp", "device-a", arbitrate.Scope{Ifaces: []string{"eth0"}, IPv4: true}},
	} {
		p, err := profiles.Load(tt.profile)
		if err != nil {
			t.Fatal(err)
		}
		n := p.Node(tt.node)
		if n == nil || len(n.Mechanisms) == 0 {
			t.Fatalf("%s: node %s has no mechanisms", tt.profile, tt.node)
		}
		if got := mechanismScope(n); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s/%s: scope %+v, want %+v", tt.profile, tt.node, got, tt.want)
		}
	}
	n := &profiles.Node{Name: "d", Mechanisms: []string{"static", "dhcp"},
		Static:     &profiles.Static{Addresses: []profiles.StaticAddress{{Iface: "eth1", Address: mustPrefix(t, "2001:db8::5/64")}}},
		DHCPClient: &profiles.DHCPClient{Iface: "eth0"}}
	want := arbitrate.Scope{Ifaces: []string{"eth1", "eth0"}, IPv4: true, IPv6: true}
	if got := mechanismScope(n); !reflect.DeepEqual(got, want) {
		t.Errorf("static+dhcp: scope %+v, want %+v", got, want)
	}
}

func mustPrefix(t *testing.T, s string) profiles.Prefix {
	t.Helper()
	var p profiles.Prefix
	if err := p.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return p
}
