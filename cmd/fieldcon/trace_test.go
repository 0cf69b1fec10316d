package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
)

func TestTraceRejectsBadFilterWithPosition(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := cmdTrace(context.Background(), []string{"-p", "rhcp", "-f", "rhcp and nod=router"}, &stdout, &stderr)
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
	}
	want := "fieldcon trace: bad filter: filter: column 10: unknown field \"nod\""
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
	}
	// The caret sits under the offending column.
	lines := strings.Split(stderr.String(), "\n")
	if len(lines) < 3 || strings.Index(lines[2], "^") != strings.Index(lines[1], "nod=") {
		t.Errorf("caret not under the error:\n%s", stderr.String())
	}
}

func TestTraceUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-p", "rhcp", "extra"},
		{"-f", "dhcp"}, // no profile
		{"-p", "rhcp", "--node", "nosuchnode"},
	} {
		var stdout, stderr bytes.Buffer
		if code := cmdTrace(context.Background(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, stderr.String())
		}
	}
}

// TestTraceRHCPLabCommand runs `fieldcon trace -p rhcp --lab --run` on a
// lab of its own: the output shows the probe and the stop with their
// fields and the device's maintenance address appearing between them, and
// the -w file holds the same packets.
func TestTraceRHCPLabCommand(t *testing.T) {
	labtest.RequireRoot(t)
	name := labtest.UniqueName("tr")
	t.Cleanup(func() {
		if lab.Exists(name) {
			t.Errorf("lab %s left behind", name)
			lab.Down(name)
		}
	})
	pcap := filepath.Join(t.TempDir(), "rhcp.pcapng")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := cmdTrace(ctx, []string{"-p", "rhcp", "--lab", "--lab-name", name, "--state", t.TempDir(),
		"--run", "--for", "4s", "-f", "rhcp", "-w", pcap}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	out := stdout.String()
	t.Logf("output:\n%s", out)
	probe := strings.Index(out, `device eth0 in RHCP 198.51.100.1:6655 > 203.0.113.10:6655 probe client "ESN-0001" addr 203.0.113.10/24`)
	added := strings.Index(out, "device EVENT address.added address=203.0.113.10/24 iface=eth0 source=rhcp")
	stop := strings.Index(out, `device eth0 out RHCP 203.0.113.10:6655 > 198.51.100.1:6655 stop client "ESN-0001" addr 203.0.113.10/24`)
	seen := strings.Index(out, "device eth0 ADDRESS + 203.0.113.10/24")
	if probe < 0 || added < 0 || stop < 0 || seen < 0 {
		t.Fatalf("probe %d, address event %d, stop %d, address seen %d: missing from the trace", probe, added, stop, seen)
	}
	if !(probe < added && added < stop) {
		t.Errorf("order: probe at %d, address.added at %d, stop at %d", probe, added, stop)
	}
	if strings.Contains(out, " ARP ") {
		t.Error("-f rhcp let ARP through")
	}
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		return
	}
	lines, err := exec.Command(tshark, "-r", pcap, "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatal(err)
	}
	shown := strings.Count(out, " RHCP ")
	if n := strings.Count(string(lines), "\n"); n != shown {
		t.Errorf("tshark reads %d packets from -w, the trace showed %d", n, shown)
	}
}
