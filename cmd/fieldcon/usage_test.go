package main

import (
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
