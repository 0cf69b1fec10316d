package trace

import (
	"sync"
	"unsafe"
)

// Defaults of a session's ring (see the package doc for the memory budget).
const (
	DefaultSummaries = 1 << 20  // 1,048,576 summaries
	DefaultRawBytes  = 64 << 20 // 64 MiB of frame bytes for the detail view and export
)

// SummarySize is the bytes one Summary takes in the ring.
const SummarySize = int(unsafe.Sizeof(Summary{}))

// RingConfig sizes a ring. Zero values take the defaults.
type RingConfig struct {
	// Summaries is how many packet summaries the ring keeps.
	Summaries int
	// RawBytes is how many bytes of captured frames it keeps for Get and
	// export; older frames keep their summary but lose their bytes.
	RawBytes int
}

// Ring is the bounded store of one trace session: summaries of every frame
// captured, the raw bytes of the most recent ones, and the table of captured
// interfaces. Adding never blocks on readers for longer than a copy: when
// full, the oldest summary is overwritten and counted in Dropped. Readers get
// copies. Safe for concurrent use.
type Ring struct {
	mu      sync.RWMutex
	max     int
	sums    []Summary // grows to max, then wraps: seq lives at sums[seq%max]
	next    uint64    // seq of the next summary
	dropped uint64

	arena     []byte // raw frames, allocated on first use
	arenaSize int
	arenaNext uint64 // logical offset of the next frame's first byte

	ifaces []Interface
	notify chan struct{}
}

// NewRing returns an empty ring.
func NewRing(cfg RingConfig) *Ring {
	if cfg.Summaries <= 0 {
		cfg.Summaries = DefaultSummaries
	}
	if cfg.RawBytes <= 0 {
		cfg.RawBytes = DefaultRawBytes
	}
	return &Ring{max: cfg.Summaries, arenaSize: cfg.RawBytes, notify: make(chan struct{}, 1)}
}

// AddInterface registers a captured interface and returns its index for
// Summary.Iface; an interface already registered keeps its index.
func (r *Ring) AddInterface(ifc Interface) uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, o := range r.ifaces {
		if o == ifc {
			return uint16(i)
		}
	}
	r.ifaces = append(r.ifaces, ifc)
	return uint16(len(r.ifaces) - 1)
}

// Interfaces returns a copy of the interface table, indexed by Summary.Iface.
func (r *Ring) Interfaces() []Interface {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]Interface(nil), r.ifaces...)
}

// Add stores a summary and the frame it came from, setting s.Seq and
// s.CapLen, and returns the sequence number.
func (r *Ring) Add(s Summary, frame []byte) uint64 {
	r.mu.Lock()
	s.Seq = r.next
	s.CapLen = uint32(len(frame))
	s.rawOff = r.storeRaw(frame)
	if len(r.sums) < r.max {
		if len(r.sums) == cap(r.sums) {
			r.grow()
		}
		r.sums = append(r.sums, s)
	} else {
		r.sums[s.Seq%uint64(r.max)] = s
		r.dropped++
	}
	r.next++
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return s.Seq
}

// grow doubles the summary slice up to exactly max, so a full ring holds no
// slack beyond its budget (append would overshoot it by a quarter).
func (r *Ring) grow() {
	n := min(max(2*cap(r.sums), 1024), r.max)
	sums := make([]Summary, len(r.sums), n)
	copy(sums, r.sums)
	r.sums = sums
}

// storeRaw copies frame into the arena and returns its logical offset. A
// frame never wraps around the arena's end: it starts again at the front, so
// it can be handed out as one slice.
func (r *Ring) storeRaw(frame []byte) uint64 {
	n := len(frame)
	if n == 0 || n > r.arenaSize {
		return r.arenaNext
	}
	if r.arena == nil {
		r.arena = make([]byte, r.arenaSize)
	}
	size := uint64(r.arenaSize)
	pos := r.arenaNext % size
	if pos+uint64(n) > size {
		r.arenaNext += size - pos
		pos = 0
	}
	off := r.arenaNext
	copy(r.arena[pos:], frame)
	r.arenaNext += uint64(n)
	return off
}

// rawLocked returns the frame bytes of s if the arena still has them.
func (r *Ring) rawLocked(s *Summary) []byte {
	n := uint64(s.CapLen)
	if n == 0 || r.arena == nil || s.rawOff+n > r.arenaNext || s.rawOff+uint64(r.arenaSize) < r.arenaNext {
		return nil
	}
	pos := s.rawOff % uint64(r.arenaSize)
	return append([]byte(nil), r.arena[pos:pos+n]...)
}

// Notify returns a channel that receives (at most one pending) signal after
// summaries were added: readers wait on it instead of polling.
func (r *Ring) Notify() <-chan struct{} { return r.notify }

// Len is how many summaries the ring holds.
func (r *Ring) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.sums)
}

// First is the sequence number of the oldest summary held.
func (r *Ring) First() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.next - uint64(len(r.sums))
}

// Next is the sequence number the next summary will get (the total count).
func (r *Ring) Next() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.next
}

// Dropped counts the summaries overwritten because the ring was full.
func (r *Ring) Dropped() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.dropped
}

// Get returns the summary with sequence number seq and a copy of its frame
// bytes (nil when the arena no longer holds them); ok is false when the
// summary itself is gone or not yet captured.
func (r *Ring) Get(seq uint64) (s Summary, frame []byte, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if seq >= r.next || seq < r.next-uint64(len(r.sums)) {
		return Summary{}, nil, false
	}
	s = r.sums[seq%uint64(r.max)]
	return s, r.rawLocked(&s), true
}

// Range returns up to n summaries from sequence number from on (clamped to
// the oldest held), oldest first.
func (r *Ring) Range(from uint64, n int) []Summary {
	return r.RangeFiltered(nil, from, n)
}

// scanChunk bounds how long one reader holds the lock while filtering, so
// capture goroutines wait at most that long.
const scanChunk = 16384

// RangeFiltered returns up to n summaries matching f (nil matches all) with
// sequence numbers from `from` on, oldest first.
func (r *Ring) RangeFiltered(f *Filter, from uint64, n int) []Summary {
	out, _, _ := r.Follow(f, from, n)
	return out
}

// Follow is RangeFiltered for readers that print what arrives: it also
// returns the sequence number to continue from (past every summary it
// looked at, matching or not) and how many summaries between `from` and the
// oldest held were overwritten before the reader got to them.
func (r *Ring) Follow(f *Filter, from uint64, n int) (out []Summary, next, missed uint64) {
	for n > 0 {
		r.mu.RLock()
		first := r.next - uint64(len(r.sums))
		if from < first {
			missed += first - from
			from = first
		}
		end := min(r.next, from+scanChunk)
		ifs := r.ifaces
		for ; from < end && n > 0; from++ {
			s := &r.sums[from%uint64(r.max)]
			if f.Match(s, ifs) {
				out = append(out, *s)
				n--
			}
		}
		done := from >= r.next
		r.mu.RUnlock()
		if done {
			break
		}
	}
	return out, from, missed
}

// Before returns up to n summaries matching f (nil matches all) with
// sequence numbers below `before`, oldest first: scrolling back, or the
// newest n with before = Next().
func (r *Ring) Before(f *Filter, before uint64, n int) []Summary {
	var rev []Summary
	for n > 0 {
		r.mu.RLock()
		first := r.next - uint64(len(r.sums))
		if before > r.next {
			before = r.next
		}
		stop := first
		if before > first+scanChunk {
			stop = before - scanChunk
		}
		ifs := r.ifaces
		for ; before > stop && n > 0; before-- {
			s := &r.sums[(before-1)%uint64(r.max)]
			if f.Match(s, ifs) {
				rev = append(rev, *s)
				n--
			}
		}
		done := before <= first
		r.mu.RUnlock()
		if done {
			break
		}
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev
}

// Count returns how many held summaries match f.
func (r *Ring) Count(f *Filter) int {
	n := 0
	from := uint64(0)
	for {
		r.mu.RLock()
		first := r.next - uint64(len(r.sums))
		if from < first {
			from = first
		}
		end := min(r.next, from+scanChunk)
		for ; from < end; from++ {
			if f.Match(&r.sums[from%uint64(r.max)], r.ifaces) {
				n++
			}
		}
		done := from >= r.next
		r.mu.RUnlock()
		if done {
			return n
		}
	}
}

// Line formats a summary with the ring's interface table.
func (r *Ring) Line(s *Summary) string {
	r.mu.RLock()
	ifs := r.ifaces
	r.mu.RUnlock()
	return Format(s, ifs)
}
