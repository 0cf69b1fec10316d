package dhcp_test

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
)

const acquireLab = `
[[node]]
name = "srv"
[node.static]
addresses = [{ iface = "eth0", address = "192.0.2.1/24" }]
[[node]]
name = "cli"
[lab]
[[lab.link]]
a = "srv:eth0"
b = "cli:eth0"
`

// TestAcquireFromDnsmasq gets a lease from dnsmasq (default settings, so
// with its ICMP check of new addresses) by broadcast, then by unicast to the
// named server from a temporary address (RHCP+DHCP's mode), and releases.
func TestAcquireFromDnsmasq(t *testing.T) {
	labtest.RequireRoot(t)
	dnsmasq := labtest.RequireBinary(t, "dnsmasq")
	r := startSite(t, acquireLab, "srv")
	r.wait("server address", 5*time.Second, func() bool { return strings.Contains(r.ip("srv", "addr"), "192.0.2.1/24") })
	dir := t.TempDir()
	r.peer("srv", dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--port=0", "--bind-interfaces",
		"--interface=eth0", "--except-interface=lo", "--log-dhcp", "--dhcp-authoritative",
		"--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,120s",
		"--dhcp-leasefile="+dir+"/leases", "--pid-file="+dir+"/pid")
	time.Sleep(300 * time.Millisecond)
	h := labtest.Host(t, r.lab, "cli")
	env := &engine.Env{Node: "cli", Host: engine.NewTracked(h, r.bus.NodeEmitter("cli")), Emit: r.bus.NodeEmitter("cli"),
		Progress: engine.NewProgress("acquire"), Log: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		name   string
		server netip.Addr
	}{
		{"broadcast", netip.Addr{}},
		{"unicast", netip.MustParseAddr("192.0.2.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.server.IsValid() {
				// RHCP+DHCP: the device already has its temporary address.
				r.ip("cli", "addr", "add", "192.0.2.99/24", "dev", "eth0")
			}
			cfg := dhcp.AcquireConfig{Iface: "eth0", ClientID: dhcp.EncodeClientID("ESN-" + tc.name), Server: tc.server,
				Timeout: 10 * time.Second, Backoff: dhcp.Backoff{Initial: 500 * time.Millisecond}}
			start := time.Now()
			lease, err := dhcp.Acquire(context.Background(), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("lease %s from %s in %s (lease time %s)", lease.Address, lease.Server, time.Since(start).Round(time.Millisecond), lease.LeaseTime)
			if !inRange(lease.Address.Addr(), "192.0.2.100", "192.0.2.150") || lease.Address.Bits() != 24 {
				t.Errorf("lease address %s not in the dnsmasq range", lease.Address)
			}
			if lease.Server != netip.MustParseAddr("192.0.2.1") || lease.LeaseTime != 120*time.Second {
				t.Errorf("server %s lease time %s; want 192.0.2.1 and 2m", lease.Server, lease.LeaseTime)
			}
			if err := dhcp.Release(context.Background(), env, cfg, lease); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// inRange reports whether a is within [lo, hi].
func inRange(a netip.Addr, lo, hi string) bool {
	return !a.Less(netip.MustParseAddr(lo)) && !netip.MustParseAddr(hi).Less(a)
}
