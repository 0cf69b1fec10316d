package tunnel

import (
	"net/netip"
	"sync"
	"time"
)

// maxSources bounds the per-source table, so a flood from many (spoofed)
// sources costs at most this many entries, about 64 bytes each.
const maxSources = 4096

// sweepEvery is how often a full table is searched for entries to evict:
// a flood of new sources into a full table must not make every request a
// walk of the whole table.
const sweepEvery = 100 * time.Millisecond

// sourceLimiter is a token bucket per source address for the handshakes
// past the cookie check (WireGuard whitepaper §5.3 and its ratelimiter.c).
// Under load the cookie proves that a source receives at its address, but
// it does not bound how many handshakes that source asks for; the bucket
// does, before any Diffie-Hellman. Below the load that demands cookies
// any source, spoofed or not, reaches the table, hence its bound.
//
// IPv4 sources are limited per address; IPv6 sources per /64, which one
// host usually holds whole. A bucket holds rate handshakes and refills at
// rate per second. A bucket that refilled completely says nothing a new
// one would not, so it may go; when the table is full and none may, new
// sources are refused until one may (their clients retry every second),
// as WireGuard's does.
type sourceLimiter struct {
	rate int

	mu    sync.Mutex
	table map[netip.Addr]bucket
	swept time.Time
}

// bucket is one source's credit, in nanoseconds: a handshake costs
// 1s/rate, and the bucket holds at most 1s.
type bucket struct {
	credit int64
	last   int64 // unix nanoseconds of the last update
}

func newSourceLimiter(rate int) *sourceLimiter {
	return &sourceLimiter{rate: rate, table: map[netip.Addr]bucket{}}
}

// sourceKey is the address a source is limited by.
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a
}

// allow charges one handshake to src's bucket and says whether it had the
// credit.
func (l *sourceLimiter) allow(src netip.Addr, now time.Time) bool {
	cost, full := int64(time.Second)/int64(l.rate), int64(time.Second)
	key, t := sourceKey(src), now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.table[key]
	if !ok {
		if len(l.table) >= maxSources && !l.sweepLocked(now, full) {
			return false
		}
		b = bucket{credit: full, last: t}
	}
	if elapsed := t - b.last; elapsed > 0 {
		b.credit = min(full, b.credit+elapsed)
	}
	b.last = max(b.last, t) // a clock that steps back earns no credit
	allowed := b.credit >= cost
	if allowed {
		b.credit -= cost
	}
	l.table[key] = b
	return allowed
}

// sweepLocked evicts the buckets that refilled completely and says
// whether the table has room now. It walks the table at most every
// sweepEvery.
func (l *sourceLimiter) sweepLocked(now time.Time, full int64) bool {
	if d := now.Sub(l.swept); d >= 0 && d < sweepEvery {
		return false
	}
	l.swept = now
	t := now.UnixNano()
	for k, b := range l.table {
		if b.credit+(t-b.last) >= full {
			delete(l.table, k)
		}
	}
	return len(l.table) < maxSources
}

// sources is the number of sources the table holds.
func (l *sourceLimiter) sources() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.table)
}
