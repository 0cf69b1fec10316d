package dhcp_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
)

const acrossRouter = `
[[node]]
name = "srv"
[node.static]
addresses = [{ iface = "eth0", address = "198.51.100.1/24" }]
routes = [{ dst = "192.0.2.0/24", via = "198.51.100.2" }]

[[node]]
name = "router"
[node.static]
forwarding = true
addresses = [{ iface = "eth0", address = "198.51.100.2/24" }, { iface = "eth1", address = "192.0.2.1/24" }]

[[node]]
name = "dev"
[node.static]
# The device's temporary (RHCP) address.
addresses = [{ iface = "eth0", address = "192.0.2.50/24" }]
routes = [{ dst = "0.0.0.0/0", via = "192.0.2.1" }]

[lab]
[[lab.link]]
a = "srv:eth0"
b = "router:eth0"
[[lab.link]]
a = "router:eth1"
b = "dev:eth0"
`

const keaAcrossRouter = `{"Dhcp4": {
  "interfaces-config": {"interfaces": ["eth0"], "dhcp-socket-type": "udp"},
  "lease-database": {"type": "memfile", "persist": true, "name": "%[1]s/leases.csv", "lfc-interval": 0},
  "valid-lifetime": 600,
  "subnet4": [{"id": 1, "subnet": "192.0.2.0/24", "pools": [{"pool": "192.0.2.100 - 192.0.2.150"}]}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}]
}}`

// TestAcquireAsOwnRelay is RHCP+DHCP's formal-address step: a device that
// has a temporary address acquires from a server behind a router by acting
// as its own relay (giaddr = its temporary address, replies on port 67),
// against dnsmasq and against Kea, then releases.
func TestAcquireAsOwnRelay(t *testing.T) {
	labtest.RequireRoot(t)
	peers := map[string]func(t *testing.T, r *siteRun, dir string){
		"dnsmasq": func(t *testing.T, r *siteRun, dir string) {
			r.peer("srv", labtest.RequireBinary(t, "dnsmasq"), "--no-daemon", "--conf-file=/dev/null", "--port=0",
				"--bind-interfaces", "--interface=eth0", "--except-interface=lo", "--log-dhcp", "--no-ping",
				"--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,10m",
				"--dhcp-leasefile="+dir+"/leases", "--pid-file="+dir+"/pid")
		},
		"kea": func(t *testing.T, r *siteRun, dir string) {
			kea := labtest.RequireBinary(t, "kea-dhcp4")
			conf := filepath.Join(dir, "kea.json")
			os.WriteFile(conf, []byte(fmt.Sprintf(keaAcrossRouter, dir)), 0o644)
			t.Setenv("KEA_PIDFILE_DIR", dir)
			t.Setenv("KEA_LOCKFILE_DIR", dir)
			r.peer("srv", kea, "-c", conf)
		},
	}
	for _, name := range []string{"dnsmasq", "kea"} {
		t.Run(name, func(t *testing.T) {
			r := startSite(t, acrossRouter)
			r.wait("addresses and routes", 10*time.Second, func() bool {
				return strings.Contains(r.ip("dev", "route"), "default via 192.0.2.1") && strings.Contains(r.ip("srv", "route"), "192.0.2.0/24")
			})
			peers[name](t, r, t.TempDir())
			time.Sleep(time.Second)
			h := labtest.Host(t, r.lab, "dev")
			env := &engine.Env{Node: "dev", Host: engine.NewTracked(h, r.bus.NodeEmitter("dev")), Emit: r.bus.NodeEmitter("dev"),
				Progress: engine.NewProgress("acquire"), Log: slog.New(slog.DiscardHandler)}
			cfg := dhcp.AcquireConfig{Iface: "eth0", ClientID: dhcp.EncodeClientID("ESN-0001"),
				Server: netip.MustParseAddr("198.51.100.1"), GIAddr: netip.MustParseAddr("192.0.2.50"),
				Timeout: 10 * time.Second, Backoff: dhcp.Backoff{Initial: 500 * time.Millisecond}}
			start := time.Now()
			l, err := dhcp.Acquire(context.Background(), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s from %s in %s", name, l.Address, l.Server, time.Since(start).Round(time.Millisecond))
			if !inRange(l.Address.Addr(), "192.0.2.100", "192.0.2.150") || l.Address.Bits() != 24 || l.Server != netip.MustParseAddr("198.51.100.1") {
				t.Errorf("lease %s from %s; want 192.0.2.100–150/24 from 198.51.100.1", l.Address, l.Server)
			}
			if err := dhcp.ApplyLease(env, l, false); err != nil {
				t.Fatal(err)
			}
			if err := dhcp.Release(context.Background(), env, cfg, l); err != nil {
				t.Fatal(err)
			}
		})
	}
}
