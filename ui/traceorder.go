package ui

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/fieldcon/fieldcon/engine/trace"
)

// The ring keeps summaries in arrival order. Each interface has its own
// capture goroutine and the kernel stamps each frame when it captures it,
// so arrival order interleaves the interfaces up to however long a frame
// waited in its socket. The list shows capture-time order, (Time, Seq), and
// a window is a position in that order, not in the ring: a page starts
// after the last row of the one before, whatever the ring's order there.
//
// reorderSpan is how late a frame may reach the ring after one captured
// later on another interface; reads go that far past a page's edge in
// capture time, so every row that belongs on the page is found.
// reorderMax caps the extra summaries a read looks at, so that a burst of
// 20,000 frames/s costs a bounded read (5,000 summaries at 250 ms).
const (
	reorderSpan = int64(250 * time.Millisecond)
	reorderMax  = 16384
)

// rowKey is a row's place in capture-time order.
type rowKey struct {
	t   int64
	seq uint64
}

func keyOf(s *trace.Summary) rowKey { return rowKey{s.Time, s.Seq} }

func (a rowKey) less(b rowKey) bool { return a.t < b.t || (a.t == b.t && a.seq < b.seq) }

// after is the smallest key greater than a: a window from it starts with
// the row after a.
func (a rowKey) after() rowKey { return rowKey{a.t, a.seq + 1} }

// oldestKey is before every row.
func oldestKey() rowKey { return rowKey{math.MinInt64, 0} }

// sortByKey sorts rows into capture-time order. Rows come nearly sorted
// (arrival order is capture order but for the interleaving), which
// pdqsort finishes in about linear time.
func sortByKey(rows []trace.Summary) {
	slices.SortFunc(rows, func(a, b trace.Summary) int {
		if c := cmp.Compare(a.Time, b.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
}

// orderedReader reads rows matching f around a ring position.
type orderedReader struct {
	src TraceSource
	f   *trace.Filter
	h   int
}

// chunk is how many matching summaries one ring call asks for.
func (r *orderedReader) chunk() int { return max(r.h, 256) }

// scanBack hands visit the matches below seq, a chunk at a time going back,
// until visit says to stop or the ring (or the reorder budget) runs out.
func (r *orderedReader) scanBack(seq uint64, visit func(chunk []trace.Summary) bool) {
	c, read := r.chunk(), 0
	for read <= r.h+reorderMax {
		out := r.src.Before(r.f, seq, c)
		read += len(out)
		if len(out) == 0 || !visit(out) || len(out) < c {
			return
		}
		seq = out[0].Seq
	}
}

// scanFwd is scanBack going forward from seq.
func (r *orderedReader) scanFwd(seq uint64, visit func(chunk []trace.Summary) bool) {
	c, read := r.chunk(), 0
	for read <= r.h+reorderMax {
		out, next, _ := r.src.Follow(r.f, seq, c)
		read += len(out)
		if len(out) == 0 || !visit(out) || len(out) < c {
			return
		}
		seq = next
	}
}

// collector keeps the rows that can still be among the h newest (newest)
// or oldest passing rows: once it holds h, the h-th capture time bounds
// the rest, and rows beyond it are dropped as they are read, so a long
// read stays cheap.
type collector struct {
	h      int
	newest bool
	pass   func(rowKey) bool
	rows   []trace.Summary
	bound  int64 // the h-th newest (oldest) time of the first h rows
	full   bool
}

func (c *collector) add(chunk []trace.Summary) {
	for i := range chunk {
		s := &chunk[i]
		if c.pass != nil && !c.pass(keyOf(s)) {
			continue
		}
		if c.full && (c.newest && s.Time < c.bound || !c.newest && s.Time > c.bound) {
			continue
		}
		c.rows = append(c.rows, *s)
	}
	if c.full || len(c.rows) < c.h {
		return
	}
	// Rows read later can only raise the h-th newest time (lower the h-th
	// oldest), so this bound is safe for dropping rows and for deciding
	// that nothing unread can still belong on the page.
	c.bound, c.full = kthTime(c.rows, c.h, c.newest), true
	kept := c.rows[:0]
	for _, s := range c.rows {
		if c.newest && s.Time >= c.bound || !c.newest && s.Time <= c.bound {
			kept = append(kept, s)
		}
	}
	c.rows = kept
}

// newest returns the h newest rows in capture-time order, and the ring's
// next sequence number when it started reading.
func (r *orderedReader) newest() ([]trace.Summary, uint64) {
	next := r.src.Next()
	c := collector{h: r.h, newest: true}
	r.scanBack(next, func(chunk []trace.Summary) bool {
		c.add(chunk)
		// Rows not read yet arrived earlier, so were captured at most
		// reorderSpan after the oldest read: stop once that is before the
		// h-th newest.
		return !c.full || chunk[0].Time+reorderSpan >= c.bound
	})
	return lastH(c.rows, r.h), next
}

// from returns the first h rows at or after k; when the ring has fewer
// after k, the newest h.
func (r *orderedReader) from(k rowKey) []trace.Summary {
	c := collector{h: r.h, pass: func(k2 rowKey) bool { return !k2.less(k) }}
	if k != oldestKey() {
		// Rows that arrived before k's but were captured after it.
		r.scanBack(k.seq, func(chunk []trace.Summary) bool {
			c.add(chunk)
			return chunk[0].Time+reorderSpan >= k.t
		})
	}
	r.scanFwd(k.seq, func(chunk []trace.Summary) bool {
		c.add(chunk)
		return !c.full || chunk[len(chunk)-1].Time-reorderSpan <= c.bound
	})
	if len(c.rows) < r.h {
		newest, _ := r.newest()
		return newest
	}
	sortByKey(c.rows)
	return c.rows[:r.h]
}

// before returns the last h rows before k; when the ring has fewer before
// k, the oldest h.
func (r *orderedReader) before(k rowKey) []trace.Summary {
	c := collector{h: r.h, newest: true, pass: func(k2 rowKey) bool { return k2.less(k) }}
	// Rows that arrived after k's but were captured before it.
	r.scanFwd(k.seq, func(chunk []trace.Summary) bool {
		c.add(chunk)
		return chunk[len(chunk)-1].Time-reorderSpan <= k.t
	})
	r.scanBack(k.seq, func(chunk []trace.Summary) bool {
		c.add(chunk)
		return !c.full || chunk[0].Time+reorderSpan >= c.bound
	})
	if len(c.rows) < r.h {
		return r.from(oldestKey())
	}
	return lastH(c.rows, r.h)
}

// lastH sorts rows by key and returns the last h.
func lastH(rows []trace.Summary, h int) []trace.Summary {
	sortByKey(rows)
	if len(rows) > h {
		rows = rows[len(rows)-h:]
	}
	return rows
}

// kthTime is the capture time of the k-th newest (newest true) or k-th
// oldest row; rows must hold at least k.
func kthTime(rows []trace.Summary, k int, newest bool) int64 {
	ts := make([]int64, len(rows))
	for i := range rows {
		ts[i] = rows[i].Time
	}
	slices.Sort(ts)
	if newest {
		return ts[len(ts)-k]
	}
	return ts[k-1]
}
