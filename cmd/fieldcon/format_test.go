package main

import (
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/engine"
)

func TestFormatEventNestedFields(t *testing.T) {
	e := engine.Event{Time: time.Date(2026, 11, 21, 7, 0, 0, 0, time.UTC), Node: "device-a", Kind: "dhcp.lease.renewed",
		Fields: engine.Fields{
			"changed": map[string]any{"address": map[string]string{"old": "192.0.2.21", "new": "192.0.2.22"}},
			"empty":   map[string]any{},
			"iface":   "eth0",
			"seq":     uint64(7),
		}}
	got := formatEvent(e)
	for _, want := range []string{
		`changed={"address":{"new":"192.0.2.22","old":"192.0.2.21"}}`,
		"empty={}",
		"iface=eth0",
		"seq=7",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("formatEvent = %q; want it to contain %q", got, want)
		}
	}
	if strings.Contains(got, "map[") {
		t.Errorf("formatEvent = %q shows Go map syntax", got)
	}
}
