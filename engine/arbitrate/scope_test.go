package arbitrate_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/arbitrate"
	"github.com/fieldcon/fieldcon/engine/static"
)

// TestScopeIgnoresOtherInterfacesAndFamilies: a management address on eth1
// and an IPv6 SLAAC-style address on eth0 do not stop IPv4 mechanisms on
// eth0; before scopes, any global address anywhere did ("formal address
// already present; not started"), so a device on a dual-stack network never
// ran RHCP.
func TestScopeIgnoresOtherInterfacesAndFamilies(t *testing.T) {
	t.Setenv(keyEnv, string(key))
	h := fake.NewHost("device", nil, "eth0", "eth1")
	for iface, p := range map[string]string{"eth1": "198.51.100.77/24", "eth0": "2001:db8:1::77/64"} {
		if err := h.AddAddress(iface, engine.Address{Prefix: netip.MustParsePrefix(p)}); err != nil {
			t.Fatal(err)
		}
	}
	scope := arbitrate.Scope{Ifaces: []string{"eth0"}, IPv4: true}
	roles := arbitrate.WrapScoped([]string{"static", "rhcp"}, scope, []engine.Role{static.New(staticCfg("203.0.113.50/24", "")), rhcpClient()})
	rec, _, stop := run(t, h, roles)
	defer stop()
	rec.wait(t, engine.KindMechanismWon, map[string]string{"mechanism": "static", "address": "203.0.113.50/24"})
}

// TestScopeStillSeesItsOwnFormalAddress: an IPv4 address on the scoped
// interface is formal, so nothing starts, as without a scope.
func TestScopeStillSeesItsOwnFormalAddress(t *testing.T) {
	t.Setenv(keyEnv, string(key))
	h := fake.NewHost("device", nil, "eth0")
	if err := h.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("203.0.113.99/24")}); err != nil {
		t.Fatal(err)
	}
	before := h.String()
	scope := arbitrate.Scope{Ifaces: []string{"eth0", "ppp0"}, IPv4: true} // ppp0 does not exist yet
	roles := arbitrate.WrapScoped([]string{"static", "rhcp"}, scope, []engine.Role{static.New(staticCfg("203.0.113.50/24", "")), rhcpClient()})
	rec, _, stop := run(t, h, roles)
	rec.wait(t, engine.KindMechanismStopped, map[string]string{"mechanism": "rhcp_client"})
	time.Sleep(50 * time.Millisecond)
	stop()
	if h.String() != before {
		t.Errorf("a mechanism ran although eth0 had a formal IPv4 address:\n%s", h)
	}
}
