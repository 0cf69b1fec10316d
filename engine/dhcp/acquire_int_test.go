package dhcp

import (
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestAcquireFromDnsmasq gets a lease from dnsmasq by broadcast and then by
// unicast to the named server (RHCP+DHCP's mode), and releases it.
func TestAcquireFromDnsmasq(t *testing.T) {
	requireBin(t, "dnsmasq")
	l := newNSLab(t)
	srv, cli := l.node("srv"), l.node("cli")
	l.link(srv, "eth0", cli, "eth0")
	l.ip(srv, "addr", "add", "192.0.2.1/24", "dev", "eth0")
	l.dnsmasq(srv, "eth0", "192.0.2.100,192.0.2.150,255.255.255.0,120s")
	env := l.env(cli, "cli")
	if os.Getenv("DHCPDEBUG") != "" {
		l.start(cli, "tcpdump", "-l", "-n", "-e", "-i", "eth0")
		time.Sleep(time.Second)
		t.Cleanup(func() { t.Fail() })
	}

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
				l.ip(cli, "addr", "add", "192.0.2.99/24", "dev", "eth0")
			}
			cfg := AcquireConfig{Iface: "eth0", ClientID: []byte("\x00ESN-" + tc.name), Server: tc.server, Timeout: 10 * time.Second,
				Backoff: Backoff{Initial: 500 * time.Millisecond}}
			start := time.Now()
			lease, err := Acquire(ctxT(t, 15*time.Second), env, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("lease %s from %s in %s (lease time %s)", lease.Address, lease.Server, time.Since(start), lease.LeaseTime)
			if !netip.MustParsePrefix("192.0.2.0/24").Contains(lease.Address.Addr()) || lease.Address.Bits() != 24 {
				t.Errorf("lease address %s not in the dnsmasq range", lease.Address)
			}
			if lease.Server != netip.MustParseAddr("192.0.2.1") || lease.LeaseTime != 120*time.Second {
				t.Errorf("server %s lease time %s; want 192.0.2.1 and 2m", lease.Server, lease.LeaseTime)
			}
			if err := Release(ctxT(t, 5*time.Second), env, cfg, lease); err != nil {
				t.Fatal(err)
			}
		})
	}
}
