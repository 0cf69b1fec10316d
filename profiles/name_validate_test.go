package profiles

import (
	"strings"
	"testing"
)

// TestProfileNameIsOnePathElement: the name becomes a state directory, so
// one that climbs out of /var/lib/fieldcon is refused with its position.
func TestProfileNameIsOnePathElement(t *testing.T) {
	for _, tt := range []struct {
		file, name string
		ok         bool
	}{
		{"x.toml", `"rhcp-dhcp"`, true},
		{"x.toml", `"Site_2.b"`, true},
		{"x.toml", "", true}, // from the file name
		{"x.toml", `"../../etc"`, false},
		{"x.toml", `"a/b"`, false},
		{"x.toml", `".hidden"`, false},
		{"x.toml", `""`, true}, // empty means the file name
		{"My Site.toml", "", false},
	} {
		src := "[[node]]\nname = \"a\"\n"
		if tt.name != "" {
			src = "name = " + tt.name + "\n" + src
		}
		_, err := Parse(tt.file, []byte(src))
		if tt.ok && err != nil {
			t.Errorf("%s name %s: %v", tt.file, tt.name, err)
		}
		if !tt.ok {
			if err == nil || !strings.Contains(err.Error(), "profile name") {
				t.Errorf("%s name %s: error %v, want one about the profile name", tt.file, tt.name, err)
			} else if tt.name != "" && !strings.HasPrefix(err.Error(), tt.file+":1:") {
				t.Errorf("%s name %s: error %q lacks the name's position", tt.file, tt.name, err)
			}
		}
	}
}

// TestLoadMissingFileSaysWhatToGive: a mistyped path names what -p takes.
func TestLoadMissingFileSaysWhatToGive(t *testing.T) {
	_, err := Load("/nonexistent/site.toml")
	if err == nil || !strings.Contains(err.Error(), "no such file") || !strings.Contains(err.Error(), "rhcp") {
		t.Fatalf("Load of a missing file: %v; want it to say so and list the embedded profiles", err)
	}
}

// TestTypeMismatchInProfileTerms: a value of the wrong TOML type is named
// with what the key wants, not with Go struct and type names.
func TestTypeMismatchInProfileTerms(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"[[node]]\nname = 5\n", "x.toml:2:8: node.name: this is an integer; want a string in quotes"},
		{"[[node]]\nname = \"a\"\nmechanisms = \"rhcp\"\n", `x.toml:3:14: node.mechanisms: this is a string; want an array of strings`},
		{"[[node]]\nname = \"a\"\n[node.static]\nforwarding = \"yes\"\n", "x.toml:4:14: node.static.forwarding: this is a string; want true or false"},
	} {
		_, err := Parse("x.toml", []byte(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "profiles.") {
			t.Errorf("%q: error %v, want %q", tt.src, err, tt.want)
		}
	}
}
