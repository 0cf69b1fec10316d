package main

import (
	"fmt"
	"os"
	"testing"
)

// TestMain keeps the run records of every fieldcon this package's tests
// start in a directory of their own, removed afterwards: tests end their
// runs with SIGKILL, which would leave stale records in the host's
// /run/fieldcon/runs, and a user's `fieldcon leases` must not find a test's
// run.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fieldcon-runs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "run records directory:", err)
		os.Exit(1)
	}
	os.Setenv("FIELDCON_RUN_DIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
