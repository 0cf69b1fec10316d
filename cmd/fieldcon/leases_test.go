package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

const leasesProfile = `
[[node]]
name = "srv"
[node.dhcp_server]
ifaces = ["eth0"]
[[node.dhcp_server.pools]]
subnet = "192.0.2.0/24"
start = "192.0.2.100"
end = "192.0.2.150"
`

func TestLeasesListsTheStore(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "site.toml")
	os.WriteFile(prof, []byte(leasesProfile), 0o644)
	st, err := store.Open(filepath.Join(dir, "state", "srv.db"))
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	for _, l := range []dhcp.ServerLease{
		{Key: "0045534e2d31", ClientID: "0045534e2d31", MAC: "02:00:00:00:00:01", Address: netip.MustParseAddr("192.0.2.100"), State: dhcp.LeaseBound, Expiry: exp, CircuitID: "eth1", RemoteID: "ESN-R", Nonce: make([]byte, 16)},
		{Key: "mac:02:00:00:00:00:02", MAC: "02:00:00:00:00:02", Address: netip.MustParseAddr("192.0.2.101"), State: dhcp.LeaseReleased, Expiry: exp},
	} {
		if err := st.Put(dhcp.LeaseBucket, l.Key, l); err != nil {
			t.Fatal(err)
		}
	}
	// The store stays open, as under a running server: the command reads a
	// copy.
	defer st.Close()
	run := func(args ...string) string {
		var out, errb bytes.Buffer
		if code := cmdLeases(context.Background(), append([]string{"-p", prof, "--state", filepath.Join(dir, "state")}, args...), &out, &errb); code != exitOK {
			t.Fatalf("leases %v: exit %d: %s", args, code, errb.String())
		}
		return out.String()
	}
	table := run()
	if !strings.Contains(table, "192.0.2.100") || !strings.Contains(table, "ESN-R") || strings.Contains(table, "192.0.2.101") {
		t.Errorf("table:\n%s", table)
	}
	if all := run("--all"); !strings.Contains(all, "192.0.2.101") || !strings.Contains(all, "released") {
		t.Errorf("--all:\n%s", all)
	}
	var row map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(run("--json"), "\n", 2)[0]), &row); err != nil || row["node"] != "srv" || row["address"] != "192.0.2.100" || row["forcerenew"] != true {
		t.Errorf("json row %v (%v)", row, err)
	}
	if _, leaked := row["nonce"]; leaked {
		t.Errorf("the RFC 6704 nonce (a key) is printed: %v", row)
	}
	if l, ok := findLease([]dhcp.ServerLease{{Key: "0045534e2d31", State: dhcp.LeaseBound}}, "ESN-1"); !ok || l.Key != "0045534e2d31" {
		t.Errorf("findLease by ESN failed")
	}
}

// forcerenew sends from the identifier the running server uses: the first
// IPv4 address among all its interfaces, not only the first interface's.
func TestForceRenewServerIDMatchesRunningServer(t *testing.T) {
	h := fake.NewHost("srv", fake.NewNetwork(), "eth0", "eth1")
	if err := h.AddAddress("eth1", engine.Address{Prefix: netip.MustParsePrefix("192.0.2.1/24")}); err != nil {
		t.Fatal(err)
	}
	p := profiles.DHCPServer{Ifaces: []string{"eth0", "eth1"}}
	if got, want := serverID(p, h), netip.MustParseAddr("192.0.2.1"); got != want {
		t.Fatalf("forcerenew server id %v, want %v", got, want)
	}
	if got, want := serverID(p, h), dhcp.ServerID(p, map[string][]netip.Prefix{"eth1": {netip.MustParsePrefix("192.0.2.1/24")}}); got != want {
		t.Fatalf("forcerenew server id %v, running server's %v", got, want)
	}
}
