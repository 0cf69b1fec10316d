package lab_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
)

// TestUpCancelledLeavesNothing cancels Up at spread-out moments (Ctrl-C
// during `lab up`): each time the error says so and no namespace file of
// the lab is left. Before the fix a cancel that killed `ip netns add`
// half-way left an unmounted file that blocked every later build.
func TestUpCancelledLeavesNothing(t *testing.T) {
	labtest.RequireRoot(t)
	p := parse(t, threeNodes)
	for _, after := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 7 * time.Millisecond, 15 * time.Millisecond, 30 * time.Millisecond} {
		name := labtest.UniqueName("c")
		ctx, cancel := context.WithTimeout(context.Background(), after)
		_, err := lab.Up(ctx, p, name)
		cancel()
		if err == nil {
			// Built before the deadline: fine, but it must come down.
			if err := lab.Down(name); err != nil {
				t.Fatal(err)
			}
		} else if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "deadline exceeded") && !strings.Contains(err.Error(), "signal: killed") {
			t.Errorf("cancelled after %v: error %q does not say it was cancelled", after, err)
		}
		if left := leftovers(name); len(left) != 0 {
			t.Errorf("cancelled after %v: left %v", after, left)
			for _, ns := range left {
				os.Remove(filepath.Join("/var/run/netns", ns))
			}
		}
	}
}

// TestUpClearsStaleNetnsFile: a file under /var/run/netns with no
// namespace mounted on it (what a killed `ip netns add` leaves) does not
// block the lab that wants that name.
func TestUpClearsStaleNetnsFile(t *testing.T) {
	labtest.RequireRoot(t)
	name := labtest.UniqueName("z")
	stale := filepath.Join("/var/run/netns", lab.NetnsName(name, "router"))
	if err := os.WriteFile(stale, nil, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lab.Down(name)
		if _, err := os.Lstat(stale); err == nil {
			os.Remove(stale)
		}
	})
	if _, err := lab.Up(context.Background(), parse(t, threeNodes), name); err != nil {
		t.Fatalf("Up over a stale namespace file: %v", err)
	}
	if err := lab.Down(name); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(name); len(left) != 0 {
		t.Errorf("left after down: %v", left)
	}
}
