package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnknownNodeIsUsage: --node naming no node of the profile is bad
// usage (exit 2), caught before any lab is built or host opened, and the
// message lists the nodes there are.
func TestUnknownNodeIsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"run", "-p", "rhcp", "--node", "nope", "--for", "1s"},
		{"run", "-p", "rhcp", "--lab", "--node", "nope", "--for", "1s"},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != exitUsage || !strings.Contains(stderr, `no node "nope"`) || !strings.Contains(stderr, "server, router, device") {
			t.Errorf("fieldcon %v: exit %d, stderr %q; want %d naming the node and listing the profile's", args, code, stderr, exitUsage)
		}
	}
}

// TestRunRefusesWhatWouldTouchThisMachineByMistake: a lab profile without
// --lab would put every node's addresses on this machine's interfaces at
// once, and a negative --for used to mean "until interrupted". Both are
// refused before any host is opened. The profile has no roles, so even a
// regression here could not change this machine.
func TestRunRefusesWhatWouldTouchThisMachineByMistake(t *testing.T) {
	file := filepath.Join(t.TempDir(), "two.toml")
	src := "name = \"two\"\n[[node]]\nname = \"a\"\n[[node]]\nname = \"b\"\n[lab]\n[[lab.link]]\na = \"a:eth0\"\nb = \"b:eth0\"\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-p", file, "--state", state, "--for", "1s"}, "--node NAME"},
		{[]string{"run", "-p", file, "--state", state, "--lab", "--for", "-1s"}, "negative"},
		{[]string{"run", "-p", file, "--state", state, "--node", "a", "--for", "-1s"}, "negative"},
		{[]string{"trace", "-p", file, "--lab", "--for", "-1s"}, "negative"},
		{[]string{"trace", "-p", file, "--lab", "--ring", "-5"}, "negative"},
		{[]string{"lab", "up", "-p", file, "extra"}, "unexpected argument"},
	} {
		code, _, stderr := runCLI(t, tt.args...)
		if code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("fieldcon %v: exit %d, stderr %q; want %d and %q", tt.args, code, stderr, exitUsage, tt.want)
		}
	}
}
