package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/profiles"
)

// TestTraceUnknownInterfaceListsThem: -i naming no interface of the traced
// nodes is bad usage, answered with the interfaces there are.
func TestTraceUnknownInterfaceListsThem(t *testing.T) {
	labtest.RequireRoot(t)
	name := labtest.UniqueName("ti")
	t.Cleanup(func() { lab.Down(name) })
	if _, err := lab.Up(context.Background(), loadProfile(t, "rhcp"), name); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := cmdTrace(ctx, []string{"-p", "rhcp", "--lab", "--lab-name", name, "-i", "eth9", "--for", "1s"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), `no traced node has an interface "eth9"; they have: device/eth0, router/eth0, router/eth1, server/eth0`) {
		t.Fatalf("exit %d; stderr %q", code, stderr.String())
	}
}

func loadProfile(t *testing.T, name string) *profiles.Profile {
	t.Helper()
	p, err := profiles.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTraceLabNotUpRepeatsLabName: the command lines the message offers
// work as given, --lab-name included.
func TestTraceLabNotUpRepeatsLabName(t *testing.T) {
	labtest.RequireRoot(t)
	name := labtest.UniqueName("tn")
	var stdout, stderr bytes.Buffer
	code := cmdTrace(context.Background(), []string{"-p", "rhcp", "--lab", "--lab-name", name, "--for", "1s"}, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "`fieldcon lab up -p rhcp --lab-name "+name+"`") {
		t.Fatalf("exit %d; stderr %q", code, stderr.String())
	}
}
