package tunnel

import (
	"net/netip"
	"testing"
	"time"
)

// TestSourceLimiterBounded: a flood from more sources than the table holds
// (spoofed ones, below the load that demands cookies) never grows it past
// maxSources; new sources are refused while every bucket is in use, and
// taken again once buckets refilled and may be evicted.
func TestSourceLimiterBounded(t *testing.T) {
	l := newSourceLimiter(2)
	now := time.Now()
	src := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	}
	allowed := 0
	for i := range 3 * maxSources {
		if l.allow(src(i), now) {
			allowed++
		}
	}
	if n := l.sources(); n != maxSources || allowed != maxSources {
		t.Fatalf("%d sources in the table, %d allowed; want %d, %d", n, allowed, maxSources, maxSources)
	}
	// A moment on, the buckets are not full again: still refused.
	if l.allow(netip.MustParseAddr("203.0.113.200"), now.Add(200*time.Millisecond)) {
		t.Fatal("a new source got into a table of live buckets")
	}
	// A second on, every bucket refilled: the sweep makes room.
	later := now.Add(time.Second)
	if !l.allow(netip.MustParseAddr("203.0.113.200"), later) {
		t.Fatal("a new source refused although every bucket had refilled")
	}
	if n := l.sources(); n != 1 {
		t.Fatalf("%d sources after the sweep, want 1", n)
	}
}

// TestSourceLimiterKeys: an IPv4 source is limited by its address, in any
// form; an IPv6 source by its /64.
func TestSourceLimiterKeys(t *testing.T) {
	l := newSourceLimiter(1)
	now := time.Now()
	for _, tc := range []struct{ first, second string }{
		{"192.0.2.1", "::ffff:192.0.2.1"},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"},
	} {
		if !l.allow(netip.MustParseAddr(tc.first), now) {
			t.Fatalf("%s: first handshake refused", tc.first)
		}
		if l.allow(netip.MustParseAddr(tc.second), now) {
			t.Fatalf("%s shares %s's bucket, yet was allowed", tc.second, tc.first)
		}
	}
	for _, other := range []string{"192.0.2.2", "2001:db8:1:3::1"} {
		if !l.allow(netip.MustParseAddr(other), now) {
			t.Fatalf("%s has a bucket of its own, yet was refused", other)
		}
	}
}
