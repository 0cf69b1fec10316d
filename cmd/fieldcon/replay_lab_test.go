package main

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
)

// replaySite: a dhcp_server with nonces and a fieldcon dhcp_client.
const replaySite = `
[[node]]
name = "srv"
[node.static]
addresses = [{ iface = "eth0", address = "192.0.2.1/24" }]
[node.dhcp_server]
ifaces = ["eth0"]
forcerenew = true
lease_time = "1h"
[[node.dhcp_server.pools]]
subnet = "192.0.2.0/24"
start = "192.0.2.100"
end = "192.0.2.150"
cloud_server = "203.0.113.10"
[[node.dhcp_server.reservations]]
client_id = "ESN-RP"
address = "192.0.2.20"

[[node]]
name = "cli"
[node.dhcp_client]
iface = "eth0"
client_id = "ESN-RP"

[lab]
[[lab.link]]
a = "srv:eth0"
b = "cli:eth0"
`

// capturedForceRenew is a FORCERENEW as it reached the client.
type capturedForceRenew struct {
	raw    []byte
	replay uint64
}

// captureForceRenews reads every FORCERENEW arriving on iface of netns.
func captureForceRenews(t *testing.T, netns, iface string) <-chan capturedForceRenew {
	t.Helper()
	h, err := linux.Open(netns)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := h.OpenPacket(iface, engine.PacketOptions{Protocol: engine.EthIPv4, Cooked: true, Filter: dhcp.UDPDstPortFilter(dhcp.ClientPort, true)})
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(); h.Close() })
	out := make(chan capturedForceRenew, 16)
	go func() {
		b := make([]byte, 65536)
		for {
			n, _, err := pc.ReadPacket(b)
			if err != nil {
				return
			}
			if n < 28 {
				continue
			}
			payload := append([]byte(nil), b[int(b[0]&0xf)*4+8:n]...)
			m, err := dhcpv4.FromBytes(payload)
			if err != nil || m.MessageType() != dhcp.MessageTypeForceRenew {
				continue
			}
			a, err := dhcp.ParseAuth(m.GetOneOption(dhcpv4.OptionAuthentication))
			if err != nil {
				continue
			}
			out <- capturedForceRenew{raw: payload, replay: a.Replay}
		}
	}()
	return out
}

func nextCaptured(t *testing.T, c <-chan capturedForceRenew) capturedForceRenew {
	t.Helper()
	select {
	case f := <-c:
		return f
	case <-time.After(3 * time.Second):
		t.Fatal("no FORCERENEW captured at the client")
		return capturedForceRenew{}
	}
}

// TestForceRenewReplayCounterShared (issue #13 item 5): FORCERENEWs from
// `fieldcon forcerenew` and from the running server's profile-edit push,
// interleaved, are all accepted by fieldcon's client with strictly
// increasing replay values; a captured one sent again is refused; after
// the server restarts, the command's next value is still above them all.
func TestForceRenewReplayCounterShared(t *testing.T) {
	labtest.RequireRoot(t)
	bin := buildBinary(t)
	profile := filepath.Join(t.TempDir(), "site.toml")
	if err := os.WriteFile(profile, []byte(replaySite), 0o644); err != nil {
		t.Fatal(err)
	}
	name, state := labtest.UniqueName("frrp"), t.TempDir()
	run, events := startRun(t, bin, "-p", profile, "--lab", "--lab-name", name, "--state", state)
	waitKind(t, events, "cli", engine.KindDHCPBound, 60*time.Second)
	captured := captureForceRenews(t, lab.NetnsName(name, "cli"), "eth0")

	cli := func() {
		t.Helper()
		out, err := exec.Command(bin, "forcerenew", "-p", profile, "--lab", "--lab-name", name, "--state", state,
			"--node", "srv", "ESN-RP").CombinedOutput()
		if err != nil {
			t.Fatalf("fieldcon forcerenew: %v\n%s", err, out)
		}
	}
	push := func(cloud string) {
		t.Helper()
		b, _ := os.ReadFile(profile)
		s := strings.Replace(string(b), `cloud_server = "203.0.113.10"`, `cloud_server = "`+cloud+`"`, 1)
		s = strings.Replace(s, `cloud_server = "203.0.113.30"`, `cloud_server = "`+cloud+`"`, 1)
		if err := os.WriteFile(profile, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var sent []capturedForceRenew
	for _, step := range []struct {
		who string
		do  func()
	}{
		{"cli", cli},
		{"server", func() { push("203.0.113.30") }},
		{"cli", cli},
		{"cli", cli},
		{"server", func() { push("203.0.113.10") }},
		// Last the command's: the renewal's ACK then carries a value the
		// server chose without seeing the command's.
		{"cli", cli},
	} {
		step.do()
		f := nextCaptured(t, captured)
		waitKind(t, events, "cli", engine.KindForceRenewReceived, 5*time.Second)
		waitKind(t, events, "cli", engine.KindDHCPRenewed, 3*time.Second)
		if len(sent) > 0 && f.replay <= sent[len(sent)-1].replay {
			t.Fatalf("%s sent replay value %d after %d", step.who, f.replay, sent[len(sent)-1].replay)
		}
		t.Logf("%s: FORCERENEW accepted, replay %d", step.who, f.replay)
		sent = append(sent, f)
	}

	// The captured ones, sent again from the server's namespace, port 67.
	srv, err := linux.Open(lab.NetnsName(name, "srv"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	replay := func(f capturedForceRenew) {
		t.Helper()
		d := dhcp.BuildDatagram(netip.MustParseAddrPort("192.0.2.1:67"), netip.MustParseAddrPort("192.0.2.20:68"), f.raw)
		if err := srv.SendIPv4(d); err != nil {
			t.Fatal(err)
		}
		e := waitKind(t, events, "cli", engine.KindForceRenewRejected, 3*time.Second)
		if r, _ := e.Fields["reason"].(string); !strings.Contains(r, "replay") {
			t.Fatalf("replayed FORCERENEW (replay %d) rejected for %q; want the replay check", f.replay, r)
		}
	}
	for _, f := range sent {
		replay(f)
	}

	// Restart the run (server and client) on the same state: the
	// command's next value is above every value sent before.
	run.Process.Signal(os.Interrupt)
	run.Wait()
	_, events = startRun(t, bin, "-p", profile, "--lab", "--lab-name", name, "--state", state)
	waitKind(t, events, "cli", engine.KindDHCPBound, 60*time.Second)
	captured = captureForceRenews(t, lab.NetnsName(name, "cli"), "eth0")
	cli()
	f := nextCaptured(t, captured)
	waitKind(t, events, "cli", engine.KindForceRenewReceived, 5*time.Second)
	if last := sent[len(sent)-1].replay; f.replay <= last {
		t.Fatalf("after the restart the command sent replay %d, not above %d", f.replay, last)
	}
	t.Logf("after restart: cli FORCERENEW accepted, replay %d", f.replay)
}
