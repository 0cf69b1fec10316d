package ui

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fieldcon/fieldcon/engine/trace"
)

// nextCountingRing counts the reads of the ring's Next, which takes its lock.
type nextCountingRing struct {
	*trace.Ring
	nexts atomic.Int32
}

func (r *nextCountingRing) Next() uint64 {
	r.nexts.Add(1)
	return r.Ring.Next()
}

// A paused list is redrawn on every key and tick; drawing it must not read
// the ring (the model never blocks on the capture).
func TestPausedTraceRendersWithoutReadingRing(t *testing.T) {
	opt := recordedOptions(t)
	ring := &nextCountingRing{Ring: opt.Trace.(*trace.Ring)}
	opt.Trace = ring
	m := New(opt)
	m.width, m.height = termW, termH
	p := m.tr
	p.update(m, readWindow(readReq{src: ring, win: window{kind: winFollow}, gen: p.gen, h: 10}))
	p.paused = true
	addPackets(ring.Ring, 3, t0)

	// The tick reads how many arrived, off the UI goroutine.
	cmd := p.poll(m)
	if cmd == nil {
		t.Fatal("a paused list's tick reads nothing")
	}
	p.update(m, cmd())

	ring.nexts.Store(0)
	for i := 0; i < 3; i++ {
		if out := p.render(m, termW, termH); !strings.Contains(out, "(3 new)") {
			t.Fatalf("paused status line does not count the new packets:\n%s", out)
		}
	}
	if n := ring.nexts.Load(); n != 0 {
		t.Fatalf("rendering a paused list read the ring's Next %d times", n)
	}
}
