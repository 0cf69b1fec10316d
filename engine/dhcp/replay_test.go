package dhcp

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestReplayCounterShared (issue #13 item 5): a server's counter (blocks of
// values, from memory) and `fieldcon forcerenew`'s (one value per run)
// share a file; whichever sends, each value is above every value sent
// before, and a restart, clean or after kill -9 (the block in memory lost),
// resumes above them.
func TestReplayCounterShared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "srv.db.rdm")
	clock := time.Unix(1_800_000_000, 0)
	open := func(block uint64) *ReplayCounter {
		rc := openCounter(t, path, block)
		rc.now = func() time.Time { return clock } // a clock that stands still
		return rc
	}
	srv := open(1000)
	var last uint64
	step := func(who string, rc *ReplayCounter) {
		t.Helper()
		v, err := rc.Next()
		if err != nil {
			t.Fatal(err)
		}
		if v <= last {
			t.Fatalf("%s: value %d after %d; must increase", who, v, last)
		}
		last = v
	}
	for i := 0; i < 3; i++ {
		step("server", srv)
	}
	for _, who := range []string{"cli", "server", "server", "cli", "cli", "server"} {
		if who == "cli" {
			cli := open(1)
			step(who, cli)
			cli.Close()
		} else {
			step(who, srv)
		}
	}
	// Restart after kill -9: the file is all that is left.
	srv = open(1000)
	step("restarted server", srv)
	srv.Close()
	srv = open(1000)
	step("server restarted cleanly", srv)
	// A clock set back changes nothing; a block reserved later starts no
	// lower than the clock (above an older server's clock-based values).
	clock = clock.Add(-time.Hour)
	step("server, clock set back", srv)
	srv.Close()
	step("cli, clock set back", open(1))
	clock = clock.Add(2 * time.Hour)
	step("restarted server, clock ahead", open(1000))
	if last < uint64(clock.UnixNano()) {
		t.Errorf("value %d below the clock %d", last, clock.UnixNano())
	}
}

// TestReplayCounterConcurrent: two counters on one file used at once hand
// out no value twice, and a server's values come from its block in memory
// while nobody else reserves (one write per block).
func TestReplayCounterConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "srv.db.rdm")
	a, b := openCounter(t, path, 100), openCounter(t, path, 100)
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for _, rc := range []*ReplayCounter{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				v, err := rc.Next()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[v] {
					t.Errorf("value %d handed out twice", v)
				}
				seen[v] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	c := openCounter(t, path, 100)
	first, _ := c.Next()
	limit, err := c.read()
	if err != nil || limit != first+100 {
		t.Fatalf("after the first value %d the file holds %d (%v); want the block's end %d", first, limit, err, first+100)
	}
	for i := 0; i < 99; i++ {
		c.Next()
	}
	if now, _ := c.read(); now != limit {
		t.Errorf("the file changed to %d within the block", now)
	}
	if v, _ := c.Next(); v < limit {
		t.Errorf("value after the block %d; want at least %d", v, limit)
	}
}

// TestReplayCounterDamaged: a damaged file is reported, not read as a low
// value.
func TestReplayCounterDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "srv.db.rdm")
	rc := openCounter(t, path, 10)
	if _, err := rc.Next(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	b[3] ^= 0xff
	os.WriteFile(path, b, 0o600)
	if _, err := openCounter(t, path, 1).Next(); err == nil {
		t.Fatal("damaged counter file accepted")
	}
	os.WriteFile(path, b[:5], 0o600)
	if _, err := openCounter(t, path, 1).Next(); err == nil {
		t.Fatal("short counter file accepted")
	}
}
