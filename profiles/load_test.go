package profiles

import (
	"errors"
	"strings"
	"testing"
)

func TestEmbeddedProfilesValidate(t *testing.T) {
	names := Embedded()
	if len(names) == 0 || !contains(names, "demo") {
		t.Fatalf("embedded profiles = %v, want demo among them", names)
	}
	for _, n := range names {
		if _, err := Load(n); err != nil {
			t.Errorf("embedded profile %s: %v", n, err)
		}
	}
}

func TestProblemsHavePositions(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // substrings of the error, the first is the position
	}{
		{"typo in key", "[[node]]\nname = \"a\"\n[node.static]\nadresses = []\n",
			[]string{"x.toml:4:1:", `unknown key "node.static.adresses"`, "valid keys in [node.static]: addresses, forwarding, persist, routes"}},
		{"invalid CIDR", "[[node]]\nname = \"a\"\n[node.static]\naddresses = [{ iface = \"eth0\", address = \"192.0.2.1/33\" }]\n",
			[]string{"x.toml:4:", "CIDR"}},
		{"missing node in lab", "[[node]]\nname = \"a\"\n[[node]]\nname = \"b\"\n[lab]\n[[lab.link]]\na = \"a:eth0\"\nb = \"c:eth0\"\n",
			[]string{"x.toml:8:5:", `no node named "c"`, "nodes: a, b"}},
		{"host bits in route", "[[node]]\nname = \"a\"\n[node.static]\nroutes = [{ dst = \"192.0.2.1/24\", dev = \"eth0\" }]\n",
			[]string{"x.toml:4:", "did you mean 192.0.2.0/24"}},
		{"duplicate node", "[[node]]\nname = \"a\"\n[[node]]\nname = \"a\"\n",
			[]string{"x.toml:4:8:", "used twice"}},
		{"bad duration", "[[node]]\nname = \"a\"\n[lab]\n[[lab.link]]\na = \"a:x\"\nb = \"a:y\"\ndelay = \"5 parsecs\"\n",
			[]string{"x.toml:7:", "not a duration"}},
		{"family mismatch", "[[node]]\nname = \"a\"\n[node.static]\nroutes = [{ dst = \"2001:db8::/32\", via = \"192.0.2.1\" }]\n",
			[]string{"x.toml:4:", "different IP families"}},
		{"not toml", "[[node]\nname=", []string{"x.toml:1:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(tt.src))
			if err == nil {
				t.Fatal("Parse accepted an invalid profile")
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error %T %v is not Problems", err, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.want[0]) {
				t.Errorf("error %q does not start with position %q", msg, tt.want[0])
			}
			for _, w := range tt.want[1:] {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestLoadUnknownName(t *testing.T) {
	_, err := Load("no-such-profile")
	if err == nil || !strings.Contains(err.Error(), "demo") {
		t.Fatalf("Load(no-such-profile) = %v, want an error listing embedded profiles", err)
	}
}
