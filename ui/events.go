package ui

import (
	"fmt"
	"strings"

	"github.com/fieldcon/fieldcon/engine"
)

// eventRing keeps the newest events for the log view: a fixed ring, so a
// chatty engine costs bounded memory.
type eventRing struct {
	buf     []engine.Event
	start   int // index of the oldest
	n       int
	total   uint64 // events ever added
	dropped uint64 // events the bus dropped for us
}

func newEventRing(size int) *eventRing { return &eventRing{buf: make([]engine.Event, size)} }

func (r *eventRing) add(evs []engine.Event) {
	for _, e := range evs {
		r.total++
		if r.n < len(r.buf) {
			r.buf[(r.start+r.n)%len(r.buf)] = e
			r.n++
			continue
		}
		r.buf[r.start] = e
		r.start = (r.start + 1) % len(r.buf)
	}
}

// at returns the i-th retained event, oldest first.
func (r *eventRing) at(i int) *engine.Event { return &r.buf[(r.start+i)%len(r.buf)] }

func (r *eventRing) len() int { return r.n }

// eventLine formats an event's fields as key=value pairs, sorted by key.
func eventLine(e *engine.Event) string {
	var b strings.Builder
	for i, k := range e.FieldNames() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%v", k, e.Fields[k])
	}
	return b.String()
}

// capability is the first dotted part of an event kind ("rhcp" of
// "rhcp.probe.sent"): the log filters on it.
func capability(kind string) string {
	c, _, _ := strings.Cut(kind, ".")
	return c
}
