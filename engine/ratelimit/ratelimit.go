// Package ratelimit caps how many events of one kind a role emits: a flood
// of forged or garbled packets on a link must not flood the event bus, but
// how big it was must still show. Events beyond the cap are counted and the
// count goes out with the next event let through, or in a summary once the
// flood is over.
package ratelimit

import "time"

// Window lets Max events through per Per (one second when zero) and counts
// the rest. The zero value lets nothing through; it is not safe for
// concurrent use (each role serializes its own).
type Window struct {
	Max int
	Per time.Duration

	start      time.Time
	n          int
	suppressed int
}

func (w *Window) per() time.Duration {
	if w.Per <= 0 {
		return time.Second
	}
	return w.Per
}

// Allow reports whether an event at now may be emitted. When it may,
// suppressed is how many were held back since the last one let through, to
// report with it; they are then forgotten.
func (w *Window) Allow(now time.Time) (ok bool, suppressed int) {
	if now.Sub(w.start) >= w.per() {
		w.start, w.n = now, 0
	}
	if w.n >= w.Max {
		w.suppressed++
		return false, 0
	}
	w.n++
	suppressed, w.suppressed = w.suppressed, 0
	return true, suppressed
}

// Summary returns how many events were held back, and forgets them, once
// the window that held them back has ended; zero before, or when none were.
// Call it from a timer so the count of a flood that stopped is reported
// without waiting for the next event.
func (w *Window) Summary(now time.Time) int {
	if w.suppressed == 0 || now.Sub(w.start) < w.per() {
		return 0
	}
	n := w.suppressed
	w.suppressed = 0
	return n
}
