package rhcp

import (
	"net/netip"
	"testing"
	"time"
)

func TestProberBackoff(t *testing.T) {
	p := NewProber(Backoff{Interval: time.Second, Max: 4 * time.Second}, 1)
	t0 := time.Unix(1000, 0)
	p.Add(Allocation{ClientID: "a", Address: netip.MustParsePrefix("203.0.113.1/24"), State: StateProbing}, t0)
	p.Add(Allocation{ClientID: "b", Address: netip.MustParsePrefix("203.0.113.2/24"), State: StateConfirmed}, t0)
	var at []time.Duration
	for now := t0; now.Before(t0.Add(20 * time.Second)); now = now.Add(100 * time.Millisecond) {
		for _, a := range p.Due(now) {
			if a.ClientID != "a" {
				t.Fatalf("probed %s, which is confirmed", a.ClientID)
			}
			at = append(at, now.Sub(t0))
		}
	}
	// 0, +1, +2, +4, then every 4s up to the ceiling.
	want := []time.Duration{0, 1 * time.Second, 3 * time.Second, 7 * time.Second, 11 * time.Second, 15 * time.Second, 19 * time.Second}
	if len(at) != len(want) {
		t.Fatalf("probes at %v, want %v", at, want)
	}
	for i := range want {
		if at[i] != want[i] {
			t.Fatalf("probes at %v, want %v", at, want)
		}
	}
	stop := &Message{Type: TypeStop, ClientID: "a", Address: netip.MustParsePrefix("203.0.113.1/24"), Sequence: 5}
	if changed, why := p.Stop(stop, t0); !changed || why != "" {
		t.Fatalf("stop: %v %q", changed, why)
	}
	if !p.Next().IsZero() {
		t.Fatal("still probing after the stop")
	}
	if _, why := p.Stop(stop, t0); why != ReasonReplay {
		t.Fatalf("replayed stop: %q", why)
	}
	wrong := &Message{Type: TypeStop, ClientID: "b", Address: netip.MustParsePrefix("203.0.113.9/24"), Sequence: 6}
	if changed, _ := p.Stop(wrong, t0); changed {
		t.Fatal("stop for another address accepted")
	}
}

func TestProberJitterBounded(t *testing.T) {
	p := NewProber(Backoff{Interval: time.Second, Max: time.Second, Jitter: 200 * time.Millisecond}, 7)
	t0 := time.Unix(0, 0)
	p.Add(Allocation{ClientID: "a", State: StateProbing}, t0)
	p.Due(t0)
	for i := 0; i < 100; i++ {
		d := p.Next().Sub(t0)
		if d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("interval %s outside 1s ± 200ms", d)
		}
		t0 = p.Next()
		p.Due(t0)
	}
}

func TestProbeCheckSequence(t *testing.T) {
	c := ProbeCheck{ClientID: "ESN-0001"}
	m := testProbe()
	now := m.Issued.Add(time.Second)
	if r := c.Check(m, now); r != "" {
		t.Fatalf("first probe: %s", r)
	}
	if r := c.Check(m, now); r != ReasonReplay {
		t.Fatalf("same sequence: %q", r)
	}
	m2 := *m
	m2.Sequence++
	if r := c.Check(&m2, now); r != "" {
		t.Fatalf("next sequence: %s", r)
	}
	if r := c.Check(&m2, m.Issued.Add(m.Lifetime+time.Second)); r != ReasonExpired {
		t.Fatalf("after lifetime: %q", r)
	}
	if r := c.Check(&m2, m.Issued.Add(-time.Minute)); r != ReasonExpired {
		t.Fatalf("issued in the future: %q", r)
	}
}
