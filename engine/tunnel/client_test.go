package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/profiles"
)

// failingTUN is a TUN whose reads block until it is closed or told to
// fail, as a device gone bad does (EIO); it counts reads in progress.
type failingTUN struct {
	engine.TUN
	fail, closed chan struct{}
	once         sync.Once
	reading      atomic.Int32
}

var errTUNBroken = errors.New("input/output error")

func (t *failingTUN) Read(b []byte) (int, error) {
	t.reading.Add(1)
	defer t.reading.Add(-1)
	select {
	case <-t.fail:
		return 0, errTUNBroken
	case <-t.closed:
		return 0, net.ErrClosed
	}
}

func (t *failingTUN) Close() error {
	t.once.Do(func() { close(t.closed) })
	return t.TUN.Close()
}

// failingTUNHost hands the client role a failingTUN.
type failingTUNHost struct {
	*fake.Host
	tun chan *failingTUN
}

func (h *failingTUNHost) CreateTUN(name string, mtu int) (engine.TUN, error) {
	t, err := h.Host.CreateTUN(name, mtu)
	if err != nil {
		return nil, err
	}
	ft := &failingTUN{TUN: t, fail: make(chan struct{}), closed: make(chan struct{})}
	h.tun <- ft
	return ft, nil
}

// runFailingClient starts a client (with no server to answer it) on a
// failingTUN and returns the TUN and Run's result.
func runFailingClient(t *testing.T, ctx context.Context) (*failingTUN, chan error) {
	t.Helper()
	h := &failingTUNHost{Host: fake.NewHost("client", fake.NewNetwork(), "eth0"), tun: make(chan *failingTUN, 1)}
	h.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("198.18.0.2/24")})
	bus := engine.NewBus(0)
	env := &engine.Env{Node: "client", Host: engine.NewTracked(h, nil), Emit: bus.NodeEmitter("client"),
		Progress: engine.NewProgress("tunnel_client"), Log: slog.New(slog.DiscardHandler)}
	sk, _ := GenerateKey()
	cPriv, _ := writeKey(t, t.TempDir(), "client.key")
	c := NewClient(profiles.TunnelClient{
		Server:          profiles.AddrPort{AddrPort: netip.MustParseAddrPort("203.0.113.1:51820")},
		ServerPublicKey: PublicKey(sk.Public).String(), PrivateKeyFile: cPriv,
	})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, env) }()
	select {
	case ft := <-h.tun:
		return ft, done
	case err := <-done:
		t.Fatalf("client ended before creating its TUN: %v", err)
	case <-time.After(3 * time.Second):
		t.Fatal("client created no TUN")
	}
	return nil, nil
}

// TestClientEndsOnTUNReadError: a TUN that fails to read ends the client
// with that error, instead of a tunnel that silently carries nothing out.
func TestClientEndsOnTUNReadError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ft, done := runFailingClient(t, ctx)
	close(ft.fail)
	select {
	case err := <-done:
		if !errors.Is(err, errTUNBroken) || !strings.Contains(err.Error(), "tunnel client: read") {
			t.Fatalf("Run = %v, want the TUN's read error", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("client still running after its TUN failed")
	}
}

// TestClientStopJoinsTUNLoop: a stopped client returns nil, and only once
// its TUN loop has ended.
func TestClientStopJoinsTUNLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ft, done := runFailingClient(t, ctx)
	deadline := time.Now().Add(3 * time.Second)
	for ft.reading.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after stop = %v, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("client did not stop")
	}
	if n := ft.reading.Load(); n != 0 {
		t.Fatalf("%d TUN reads still in progress after Run returned", n)
	}
}
