package main

import (
	"errors"
	"strings"
	"testing"
)

func TestSiteFlagsAsArgsRepeatsTheSite(t *testing.T) {
	f := siteFlags{profile: "dhcp", nodes: stringList{"server"}, useLab: true, labName: "x1", stateDir: "/tmp/s"}
	if got, want := strings.Join(f.asArgs(), " "), "-p dhcp --node server --lab --lab-name x1 --state /tmp/s"; got != want {
		t.Fatalf("asArgs = %q, want %q", got, want)
	}
	if got := exitCode(needRoot("x")); got != exitUsage {
		t.Fatalf("exitCode(needRoot) = %d, want %d", got, exitUsage)
	}
	if got := exitCode(errors.New("boom")); got != exitFailure {
		t.Fatalf("exitCode(runtime error) = %d, want %d", got, exitFailure)
	}
}
