package rhcp

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

func TestMergeTable(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	cfg := serverConfig(
		profiles.RHCPClientEntry{ID: "new"},
		profiles.RHCPClientEntry{ID: "kept"},
		profiles.RHCPClientEntry{ID: "moved", Address: mustPrefix("203.0.113.50/24")},
		profiles.RHCPClientEntry{ID: "later"},
	)
	stored := map[string]Allocation{
		"kept":  {ClientID: "kept", Address: netip.MustParsePrefix("203.0.113.2/24"), State: StateConfirmed},
		"moved": {ClientID: "moved", Address: netip.MustParsePrefix("203.0.113.40/24"), State: StateConfirmed},
		"gone":  {ClientID: "gone", Address: netip.MustParsePrefix("203.0.113.1/24"), State: StateReclaimed},
		// A client removed from the profile while confirmed: its address
		// is free for others.
		"gone-confirmed": {ClientID: "gone-confirmed", Address: netip.MustParsePrefix("203.0.113.3/24"), State: StateConfirmed},
	}
	out, err := mergeTable(cfg, stored, now)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Allocation{}
	for _, a := range out {
		got[a.ClientID] = a
	}
	// The reclaimed 203.0.113.1 is free again; .2 is kept by its client.
	if a := got["new"]; a.Address.String() != "203.0.113.1/24" || a.State != StateProbing {
		t.Errorf("new: %+v", a)
	}
	if a := got["kept"]; a.Address.String() != "203.0.113.2/24" || a.State != StateConfirmed {
		t.Errorf("kept: %+v", a)
	}
	// The profile moved the client: it is probed at its new address.
	if a := got["moved"]; a.Address.String() != "203.0.113.50/24" || a.State != StateProbing {
		t.Errorf("moved: %+v", a)
	}
	if a := got["later"]; a.Address.String() != "203.0.113.3/24" || a.State != StateProbing {
		t.Errorf("later: %+v (the address of a client gone from the profile is not free)", a)
	}
	for _, id := range []string{"gone", "gone-confirmed"} {
		if _, ok := got[id]; ok {
			t.Errorf("%s: a client no longer in the profile stays in the table", id)
		}
	}
}

func TestKeyGenerateConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "site.key")
	var wg sync.WaitGroup
	keys := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range keys {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			keys[i], errs[i] = KeySource{File: path, Generate: true}.Load()
		}(i)
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) || len(keys[i]) != 64 {
			t.Fatalf("generators disagree or short key: %d bytes", len(keys[i]))
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
}

func TestKeyErrorsDoNotLeak(t *testing.T) {
	t.Setenv("FIELDCON_SHORT_KEY", "tooshort")
	_, err := KeySource{Env: "FIELDCON_SHORT_KEY"}.Load()
	if err == nil || strings.Contains(err.Error(), "tooshort") {
		t.Fatalf("short key: %v", err)
	}
	if _, err := (KeySource{Env: "FIELDCON_UNSET_KEY_VAR"}).Load(); err == nil {
		t.Fatal("unset variable accepted")
	}
}

// TestLoadTableDeletesRemovedClients: the stored row of a client no longer in
// the profile is deleted, so it does not hold its address after a restart.
func TestLoadTableDeletesRemovedClients(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "srv.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Unix(1_800_000_000, 0)
	gone := Allocation{ClientID: "gone", Address: netip.MustParsePrefix("203.0.113.1/24"), State: StateConfirmed, Changed: now}
	if err := st.Put(allocBucket, "gone", gone); err != nil {
		t.Fatal(err)
	}
	s := NewServer(serverConfig(profiles.RHCPClientEntry{ID: "new"}))
	out, err := s.loadTable(&engine.Env{Store: st}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].ClientID != "new" || out[0].Address.String() != "203.0.113.1/24" {
		t.Errorf("table %+v", out)
	}
	var keys []string
	if err := st.ForEach(allocBucket, func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "new" {
		t.Errorf("stored rows %v, want only new", keys)
	}
}
