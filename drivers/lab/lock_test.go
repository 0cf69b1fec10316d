package lab_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
)

// TestLockRefusesASecondEngine: while one process holds a lab, another
// (flock is per open file, so a child process stands in for a second
// fieldcon) is refused with a message naming the holder; after release it
// gets the lab.
func TestLockRefusesASecondEngine(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireBinary(t, "flock")
	name := labtest.UniqueName("l")
	release, err := lab.Lock(name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("/run/fieldcon/labs", name+".lock")
	t.Cleanup(func() { os.Remove(path) })
	// flock(1) -n tries the same lock from another process.
	if err := exec.Command("flock", "-n", path, "true").Run(); err == nil {
		t.Fatal("another process got the lock while this one holds it")
	}
	// A second Lock in this process opens the file again: a separate
	// open file description, so flock refuses it like another process.
	_, err = lab.Lock(name)
	if !errors.Is(err, lab.ErrInUse) || !strings.Contains(err.Error(), "--lab-name") || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second Lock: %v; want ErrInUse naming the holder and --lab-name", err)
	}
	release()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the lock file outlives the release (%v): nothing may be left behind", err)
	}
	again, err := lab.Lock(name)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	again()
}
