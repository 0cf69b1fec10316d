package ui

import (
	"strings"
	"testing"

	"github.com/fieldcon/fieldcon/engine"
)

// TestNATShowsTheServersTunnelsOnly: a tunnel client reports its own row
// too; the NAT view lists the server's index table, so each tunnel once.
func TestNATShowsTheServersTunnelsOnly(t *testing.T) {
	opt := recordedOptions(t)
	snap := recordedSnapshot()
	for i := range snap.Nodes {
		if snap.Nodes[i].Name == "device" {
			snap.Nodes[i].Roles = append(snap.Nodes[i].Roles, engine.RoleSnapshot{Kind: "tunnel_client", Status: engine.StatusRunning})
			snap.Nodes[i].Tunnels = append(snap.Nodes[i].Tunnels, engine.TunnelRow{Index: 1, Endpoint: "203.0.113.99:6000", Virtual: "198.18.0.2/24"})
		}
	}
	opt.Engine = staticSource{snap}
	tm, _ := start(t, opt)
	keys(tm, "3")
	waitFor(t, tm, "2 tunnels")
	frame := finish(t, tm)
	if strings.Contains(frame, "203.0.113.99") {
		t.Fatalf("the client's own tunnel row is listed in the server's table:\n%s", frame)
	}
}
