package rhcp

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/profiles"
)

// losingAcquirer gives out formal addresses in turn; each lease's Keep
// holds it until the test loses it, then removes the address as dhcp.Keep
// does and reports the loss.
type losingAcquirer struct {
	formals []netip.Prefix
	got     chan FormalRequest
	lose    chan struct{}
}

func (f *losingAcquirer) AcquireFormal(ctx context.Context, env *engine.Env, req FormalRequest) (FormalLease, error) {
	f.got <- req
	p := f.formals[0]
	f.formals = f.formals[1:]
	return FormalLease{Address: p, Lifetime: 30 * time.Second, Server: req.Server,
		Keep: func(ctx context.Context, env *engine.Env) error {
			select {
			case <-ctx.Done():
				return nil
			case <-f.lose:
			}
			if err := env.DelAddress(req.Iface, engine.Address{Prefix: p}, "dhcp"); err != nil {
				return err
			}
			return fmt.Errorf("%w: %s: nak: test", dhcp.ErrLeaseLost, p)
		}}, nil
}

// TestFormalLeaseLostFake: the formal address is added with the lease's
// lifetime; when its lease is lost the device reports it and takes the next
// probe (a re-probe) from the start, temporary address and DHCP again.
func TestFormalLeaseLostFake(t *testing.T) {
	s := newSite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.forward(ctx, "203.0.113.1")
	st := openStore(t, filepath.Join(t.TempDir(), "server.db"))
	defer st.Close()
	cfg := serverConfig(profiles.RHCPClientEntry{ID: "ESN-0001"})
	cfg.DHCPServer = mustAddr("198.18.0.2")
	srv := NewServer(cfg)
	acq := &losingAcquirer{formals: []netip.Prefix{netip.MustParsePrefix("203.0.113.150/24"), netip.MustParsePrefix("203.0.113.151/24")},
		got: make(chan FormalRequest, 2), lose: make(chan struct{})}
	stop := s.run(ctx,
		engine.NodeSpec{Name: "server", Host: s.server, Roles: []engine.Role{srv}, Store: st},
		engine.NodeSpec{Name: "device", Host: s.device, Roles: []engine.Role{NewClient(clientConfig("ESN-0001"), acq)}})
	defer stop()
	<-acq.got
	s.wait(2*time.Second, "device", engine.KindDHCPBound, map[string]string{"address": "203.0.113.150/24", "server": "198.18.0.2", "lease_time": "30s"})
	s.wait(2*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"type": "release", "formal": "203.0.113.150/24"})
	if tr := s.device.String(); !strings.Contains(tr, "203.0.113.150/24") || !strings.Contains(tr, "valid_lft 30 preferred_lft 30") {
		t.Errorf("formal address not added with the lease's lifetime:\n%s", tr)
	}

	lost := time.Now()
	acq.lose <- struct{}{}
	s.wait(2*time.Second, "device", engine.KindAddressRemoved, map[string]string{"address": "203.0.113.150/24", "source": "dhcp"})
	e := s.wait(2*time.Second, "device", engine.KindError, nil)
	if msg := fmt.Sprint(e.Fields["message"]); !strings.Contains(msg, "formal address 203.0.113.150/24 lost") || !strings.Contains(msg, "re-probe ESN-0001") {
		t.Errorf("loss reported as %q", msg)
	}
	for end := time.Now().Add(2 * time.Second); storedAllocation(t, st, "ESN-0001").State != StateReclaimed && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if err := srv.Reprobe(ctx, "ESN-0001"); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-acq.got:
		if req.Relay != netip.MustParseAddr("203.0.113.1") {
			t.Errorf("second DHCP relayed from %s, want the new temporary address", req.Relay)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("no DHCP after the re-probe:\n%s", s.dump())
	}
	if n := s.count("device", engine.KindRHCPProbeRejected, lost); n != 0 {
		t.Errorf("%d probes rejected after the loss:\n%s", n, s.dump())
	}
	s.wait(2*time.Second, "device", engine.KindDHCPBound, map[string]string{"address": "203.0.113.151/24"})
	s.wait(2*time.Second, "server", engine.KindRHCPStopReceived, map[string]string{"type": "release", "formal": "203.0.113.151/24"})
	if !s.device.HasAddress(netip.MustParseAddr("203.0.113.151")) || s.device.HasAddress(netip.MustParseAddr("203.0.113.150")) ||
		s.device.HasAddress(netip.MustParseAddr("203.0.113.1")) {
		t.Errorf("addresses after the second RHCP+DHCP:\n%s", s.device.String())
	}
}
