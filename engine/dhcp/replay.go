package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ReplayCounter hands out the replay detection values of a server's
// authenticated messages (RFC 3118 §2, RDM 0: a strictly increasing counter;
// RFC 6704 §3.3 and §3.4: a client refuses a FORCERENEW whose value is not
// above the last one it accepted). The running server and `fieldcon
// forcerenew` share one counter through a file next to the server's store
// (the store itself stays locked by the running server), so every value
// either of them sends is above every value sent before, by anyone, across
// restarts and kill -9.
//
// The file holds a limit: every value ever handed out is below it. A
// process reserves a block of values by raising the limit (one fsync) and
// then hands them out from memory, as long as the file still holds its own
// limit, i.e. nobody reserved after it; a reservation starts at the file's
// limit, never below the clock in nanoseconds (so values stay above those of
// servers that counted by the clock) and never below the process's own
// values. Each step runs under an exclusive flock(2) of the file.
type ReplayCounter struct {
	path  string
	block uint64
	now   func() time.Time

	mu          sync.Mutex
	f           *os.File
	next, limit uint64 // the reserved block is [next, limit)
	floor       uint64
}

// ReplayCounterPath is the counter file of the server whose store is at
// storePath.
func ReplayCounterPath(storePath string) string { return storePath + ".rdm" }

// replayRecordLen is the file's size: the limit, big endian, and its
// complement, which tells a damaged file from a valid one.
const replayRecordLen = 16

// OpenReplayCounter opens (creating) the counter file at path; each
// reservation takes block values (a server takes many so that it writes the
// file rarely; a one-shot command takes one).
func OpenReplayCounter(path string, block uint64) (*ReplayCounter, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("replay counter: %w", err)
	}
	return &ReplayCounter{path: path, block: max(block, 1), now: time.Now, f: f}, nil
}

// AtLeast makes every later value at least v (e.g. above the values stored
// with leases by an older version).
func (c *ReplayCounter) AtLeast(v uint64) {
	c.mu.Lock()
	c.floor = max(c.floor, v)
	c.mu.Unlock()
}

// Close closes the file; values not handed out of the reserved block are
// lost, which only leaves a gap.
func (c *ReplayCounter) Close() error { return c.f.Close() }

// Next returns a value above every value handed out before through the
// file.
func (c *ReplayCounter) Next() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fd := int(c.f.Fd())
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		return 0, fmt.Errorf("replay counter %s: lock: %w", c.path, err)
	}
	defer unix.Flock(fd, unix.LOCK_UN)
	stored, err := c.read()
	if err != nil {
		return 0, err
	}
	if stored == c.limit && c.next < c.limit && c.next >= c.floor {
		v := c.next
		c.next++
		return v, nil
	}
	base := max(stored, c.next, c.floor, uint64(max(c.now().UnixNano(), 0)))
	if base > math.MaxUint64-c.block {
		return 0, fmt.Errorf("replay counter %s: exhausted at %d", c.path, base)
	}
	if err := c.write(base + c.block); err != nil {
		return 0, err
	}
	c.next, c.limit = base+1, base+c.block
	return base, nil
}

func (c *ReplayCounter) read() (uint64, error) {
	var b [replayRecordLen]byte
	n, err := c.f.ReadAt(b[:], 0)
	if n == 0 && (err == nil || errors.Is(err, io.EOF)) {
		return 0, nil // new file
	}
	if n != replayRecordLen {
		return 0, fmt.Errorf("replay counter %s: %d bytes, want %d (damaged; removing it restarts the counter at the clock)", c.path, n, replayRecordLen)
	}
	v, check := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	if v != ^check {
		return 0, fmt.Errorf("replay counter %s: check value does not match (damaged; removing it restarts the counter at the clock)", c.path)
	}
	return v, nil
}

// write stores a new limit and syncs it before any value below it is
// handed out: after a crash the counter resumes above every value sent.
func (c *ReplayCounter) write(limit uint64) error {
	var b [replayRecordLen]byte
	binary.BigEndian.PutUint64(b[:8], limit)
	binary.BigEndian.PutUint64(b[8:], ^limit)
	if _, err := c.f.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("replay counter %s: %w", c.path, err)
	}
	if err := c.f.Sync(); err != nil {
		return fmt.Errorf("replay counter %s: sync: %w", c.path, err)
	}
	return nil
}
