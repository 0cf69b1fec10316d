package lab

import "testing"

func TestMarkerRoundTrip(t *testing.T) {
	for _, m := range []marker{
		{lab: "demo", node: "router", profile: "demo", index: 1},
		{lab: "t1", node: "a-b", profile: "my site", index: 0},
	} {
		got, ok := parseMarker(m.String())
		if !ok || got.lab != m.lab || got.node != m.node || got.index != m.index {
			t.Errorf("parseMarker(%q) = %+v, %t", m.String(), got, ok)
		}
	}
	for _, alias := range []string{"", "something else", "fieldcon-lab", "fieldcon-lab name=x"} {
		if _, ok := parseMarker(alias); ok {
			t.Errorf("parseMarker(%q) accepted", alias)
		}
	}
}
