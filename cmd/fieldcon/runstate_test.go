package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// uniqueProfile writes leasesProfile under a name no default state
// directory (/var/lib/fieldcon/NAME) exists for.
func uniqueProfile(t *testing.T) string {
	t.Helper()
	prof := filepath.Join(t.TempDir(), "site.toml")
	src := fmt.Sprintf("name = \"rs%d\"\n", time.Now().UnixNano()) + leasesProfile
	if err := os.WriteFile(prof, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return prof
}

// TestLeasesWithoutAServerSaysWhichState: with no fieldcon running the
// profile and no store where it keeps one by default, leases and
// forcerenew fail saying so and naming --state, never "no leases".
func TestLeasesWithoutAServerSaysWhichState(t *testing.T) {
	t.Setenv("FIELDCON_RUN_DIR", t.TempDir())
	prof := uniqueProfile(t)
	for _, args := range [][]string{
		{"leases", "-p", prof},
		{"leases", "-p", prof, "--stats"},
		{"forcerenew", "-p", prof, "--node", "srv", "192.0.2.100"},
	} {
		code, stdout, stderr := runCLI(t, args...)
		if code != exitFailure || stdout != "" || !strings.Contains(stderr, "no fieldcon run of profile") || !strings.Contains(stderr, "--state DIR") {
			t.Errorf("fieldcon %v: exit %d, stdout %q, stderr %q; want %d saying no run has the server and naming --state DIR", args, code, stdout, stderr, exitFailure)
		}
	}
}

// serveStore writes a store in dir/srv.db with one bound lease, 192.0.2.100,
// and keeps it open (locked) as a running server does.
func serveStore(t *testing.T, dir string) {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "srv.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l := dhcp.ServerLease{Key: "0045534e2d31", ClientID: "0045534e2d31", MAC: "02:00:00:00:00:01", Address: netip.MustParseAddr("192.0.2.100"),
		State: dhcp.LeaseBound, Expiry: time.Now().Add(time.Hour)}
	if err := st.Put(dhcp.LeaseBucket, l.Key, l); err != nil {
		t.Fatal(err)
	}
}

// record leaves a run record for profile prof running srv with state, as a
// fieldcon run does; it holds until the test ends.
func record(t *testing.T, dir, prof, state string) {
	t.Helper()
	p, err := profiles.Load(prof)
	if err != nil {
		t.Fatal(err)
	}
	release, err := recordRun(dir, runRecord{PID: os.Getpid(), Profile: profileID(p), ProfileName: p.Name, Nodes: []string{"srv"}, State: state, Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
}

// TestLeasesFindTheRunningServer: leases without --state reads the store
// of the fieldcon that runs the node (here on this machine's interfaces,
// recorded under FIELDCON_RUN_DIR), however -p spells the profile's path;
// two such runs are ambiguous and the error names both --state values; a
// record its process left behind is ignored and removed.
func TestLeasesFindTheRunningServer(t *testing.T) {
	runs := t.TempDir()
	t.Setenv("FIELDCON_RUN_DIR", runs)
	prof := uniqueProfile(t)
	state := t.TempDir()
	serveStore(t, state)
	record(t, runs, prof, state)

	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, prof)
	if err != nil {
		t.Fatal(err)
	}
	for _, spelled := range []string{prof, rel, filepath.Dir(prof) + "/./site.toml"} {
		code, stdout, stderr := runCLI(t, "leases", "-p", spelled)
		if code != exitOK || !strings.Contains(stdout, "192.0.2.100") || stderr != "" {
			t.Errorf("leases -p %s without --state: exit %d, stdout %q, stderr %q; want the running server's lease", spelled, code, stdout, stderr)
		}
	}
	// --state naming another directory than the running server's: read
	// as asked, with a note that says where the server's store is.
	other := t.TempDir()
	serveStore(t, other)
	if code, _, stderr := runCLI(t, "leases", "-p", prof, "--state", other); code != exitOK || !strings.Contains(stderr, "--state "+state) {
		t.Errorf("leases --state %s: exit %d, stderr %q; want a note naming the running server's --state %s", other, code, stderr, state)
	}

	// A second run of the node: which one is meant is for the user to say.
	record(t, runs, prof, other)
	code, _, stderr := runCLI(t, "leases", "-p", prof)
	if code != exitUsage || !strings.Contains(stderr, "--state "+state) || !strings.Contains(stderr, "--state "+other) || !strings.Contains(stderr, "say which with --state DIR") {
		t.Errorf("two runs: exit %d, stderr %q; want %d naming both --state values", code, stderr, exitUsage)
	}
}

// TestStaleRunRecordIsIgnored: the record of a fieldcon that died without
// removing it (kill -9) no longer holds its lock: readers skip and remove it.
func TestStaleRunRecordIsIgnored(t *testing.T) {
	runs := t.TempDir()
	t.Setenv("FIELDCON_RUN_DIR", runs)
	prof := uniqueProfile(t)
	state := t.TempDir()
	serveStore(t, state)
	stale := filepath.Join(runs, "run-1.json")
	if err := os.WriteFile(stale, []byte(`{"pid":1,"profile":"`+prof+`","nodes":["srv"],"state":"`+state+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "leases", "-p", prof)
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, "no fieldcon run of profile") {
		t.Errorf("leases beside a stale record: exit %d, stdout %q, stderr %q; want %d, no run found", code, stdout, stderr, exitFailure)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale record %s not removed: %v", stale, err)
	}
}
