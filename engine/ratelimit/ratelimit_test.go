package ratelimit

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	w := Window{Max: 3, Per: time.Second}
	var let, held int
	for i := 0; i < 10; i++ {
		ok, n := w.Allow(t0.Add(time.Duration(i) * time.Millisecond))
		if ok {
			let++
			held += n
		}
	}
	if let != 3 || held != 0 {
		t.Fatalf("first window let %d through (reported %d held back), want 3 and 0", let, held)
	}
	if n := w.Summary(t0.Add(500 * time.Millisecond)); n != 0 {
		t.Errorf("summary %d inside the window, want 0 (not over yet)", n)
	}
	// Next window: the first event carries the 7 held back.
	if ok, n := w.Allow(t0.Add(time.Second)); !ok || n != 7 {
		t.Errorf("next window: allowed %v with %d held back, want true and 7", ok, n)
	}
	for i := 0; i < 5; i++ {
		w.Allow(t0.Add(time.Second + time.Millisecond))
	}
	// 2 more let through, 3 held back; the flood stops: the summary says 3
	// once, then nothing.
	if n := w.Summary(t0.Add(2 * time.Second)); n != 3 {
		t.Errorf("summary %d, want 3", n)
	}
	if n := w.Summary(t0.Add(3 * time.Second)); n != 0 {
		t.Errorf("second summary %d, want 0", n)
	}
}
