package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

const statsProfile = `
[[node]]
name = "srv"
[node.dhcp_server]
ifaces = ["eth0"]
sweep_interval = "50ms"
[[node.dhcp_server.pools]]
subnet = "192.0.2.0/24"
start = "192.0.2.100"
end = "192.0.2.150"
`

// TestLeasesStatsShowMalformedInput: malformed datagrams sent to a running
// server show in `fieldcon leases --stats` (and --json), read from its store
// while it runs.
func TestLeasesStatsShowMalformedInput(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "site.toml")
	os.WriteFile(prof, []byte(statsProfile), 0o644)
	p, err := profiles.Parse(prof, []byte(statsProfile))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "state", "srv.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	nw := fake.NewNetwork()
	sh := fake.NewHost("srv", nw, "eth0")
	sh.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("192.0.2.1/24")})
	ch := fake.NewHost("cli", nw, "eth0")
	ch.AddAddress("eth0", engine.Address{Prefix: netip.MustParsePrefix("192.0.2.2/24")})
	role := dhcp.NewServerRole(*p.Node("srv").DHCPServer)
	e := engine.New(engine.NewBus(100), slog.New(slog.DiscardHandler))
	e.AddNode(engine.NodeSpec{Name: "srv", Host: sh, Store: st, Roles: []engine.Role{role}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()

	conn, err := ch.ListenUDP(netip.MustParseAddrPort("192.0.2.2:67"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reply, _ := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 1}))
	reply.OpCode = dhcpv4.OpcodeBootReply
	untyped, _ := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 2}))
	noAddr, _ := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 0, 3}), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))
	malformed := [][]byte{[]byte("garbage"), make([]byte, 100), reply.ToBytes(), untyped.ToBytes(), noAddr.ToBytes()}
	deadline := time.Now().Add(5 * time.Second)
	for role.Stats().Received < int64(len(malformed)) && time.Now().Before(deadline) {
		if role.Stats().Received == 0 {
			for _, b := range malformed {
				conn.WriteToUDPAddrPort(b, netip.MustParseAddrPort("192.0.2.1:67"))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	run := func(args ...string) string {
		var out, errb bytes.Buffer
		if code := cmdLeases(context.Background(), append([]string{"-p", prof, "--state", filepath.Join(dir, "state")}, args...), &out, &errb); code != exitOK {
			t.Fatalf("leases %v: exit %d: %s", args, code, errb.String())
		}
		return out.String()
	}
	var rec map[string]any
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		line := strings.TrimSpace(run("--stats", "--json"))
		rec = nil
		if line != "" { // empty until the server's first sweep stored them
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("--stats --json: %q: %v", line, err)
			}
			if s, _ := rec["stats"].(map[string]any); s != nil && s["received"] == float64(len(malformed)) {
				break
			}
		}
		if time.Now().After(end) {
			t.Fatalf("stored counters never showed the %d datagrams: %v", len(malformed), rec)
		}
	}
	s := rec["stats"].(map[string]any)
	if rec["node"] != "srv" || s["undecodable"] != float64(2) || s["malformed"] != float64(3) {
		t.Errorf("--stats --json: %v; want 2 undecodable and 3 malformed", rec)
	}
	text := run("--stats")
	for _, want := range []string{"srv", "undecodable", "malformed", "not a request", "message type", "request without address"} {
		if !strings.Contains(text, want) {
			t.Errorf("--stats lacks %q:\n%s", want, text)
		}
	}
	t.Logf("fieldcon leases --stats:\n%s", text)
}
