package tunnel

// replayWindow is RFC 6479's sliding-window bitmap: a counter is accepted
// once, and only when it is no older than windowSize behind the greatest
// counter accepted. The caller serialises access.
type replayWindow struct {
	last uint64 // greatest counter accepted, +1 (0: none yet)
	bits [windowWords]uint64
}

const (
	windowWords = 32 // 2048 bits; one word is the look-ahead block (RFC 6479 §2)
	windowSize  = (windowWords - 1) * 64
	// rejectAfter bounds counters well below 2^64 so a nonce never wraps.
	rejectAfter = ^uint64(0) - (1 << 13)
)

// accept records counter and reports whether it was new and in the window.
func (w *replayWindow) accept(counter uint64) bool {
	if counter >= rejectAfter {
		return false
	}
	c := counter + 1 // so that 0 means "nothing yet"
	idx := c >> 6
	if c > w.last {
		cur := w.last >> 6
		diff := idx - cur
		if diff > windowWords {
			diff = windowWords
		}
		for i := uint64(1); i <= diff; i++ {
			w.bits[(cur+i)%windowWords] = 0
		}
		w.last = c
	} else if w.last-c >= windowSize {
		return false
	}
	word, bit := idx%windowWords, c&63
	if w.bits[word]&(1<<bit) != 0 {
		return false
	}
	w.bits[word] |= 1 << bit
	return true
}
