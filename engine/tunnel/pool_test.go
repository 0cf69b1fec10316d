package tunnel

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestPool(t *testing.T) {
	p, err := NewPool(netip.MustParsePrefix("198.19.0.0/30"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a, b := PublicKey{1}, PublicKey{2}
	ba, err := p.Allocate(a, "a", now)
	if err != nil || ba.Address != netip.MustParseAddr("198.19.0.2") {
		t.Fatalf("first allocation: %+v, %v", ba, err)
	}
	if p.Gateway() != netip.MustParseAddr("198.19.0.1") {
		t.Fatalf("gateway %s", p.Gateway())
	}
	// A /30 has one client address: .0 network, .1 gateway, .3 broadcast.
	if _, err := p.Allocate(b, "b", now); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("second key on a /30: err = %v", err)
	}
	// The same key gets the same address back.
	if again, _ := p.Allocate(a, "a", now); again.Address != ba.Address {
		t.Fatalf("sticky address: %s, want %s", again.Address, ba.Address)
	}
	p.Free(ba.Address)
	if bb, err := p.Allocate(b, "b", now); err != nil || bb.Address != ba.Address {
		t.Fatalf("after free: %+v, %v", bb, err)
	}
}
