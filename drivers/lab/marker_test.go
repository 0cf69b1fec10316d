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

// FuzzParseMarker: the alias is writable by anyone with CAP_NET_ADMIN in the
// namespace (`ip link set lo alias ...`), so its parser must take anything,
// and whatever it accepts must print back to an equivalent marker.
func FuzzParseMarker(f *testing.F) {
	f.Add("fieldcon-lab name=demo node=router index=1 profile=demo")
	f.Add("fieldcon-lab name= node=x index=-5 profile=a b c")
	f.Add("")
	f.Fuzz(func(t *testing.T, alias string) {
		m, ok := parseMarker(alias)
		if !ok {
			return
		}
		again, ok := parseMarker(m.String())
		if !ok || again.lab != m.lab || again.node != m.node {
			t.Errorf("parseMarker(%q) = %+v does not survive a round trip: %+v", alias, m, again)
		}
	})
}
