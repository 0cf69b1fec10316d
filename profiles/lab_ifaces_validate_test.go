package profiles

import (
	"strings"
	"testing"
)

// TestLabIfacesExist: in a lab profile a role may name only interfaces the
// node's lab links give it; a typo is reported where it is written.
func TestLabIfacesExist(t *testing.T) {
	const lab = "[lab]\n[[lab.link]]\na = \"r:eth0\"\nb = \"d:eth0\"\n"
	for _, tt := range []struct {
		name, node, want string
	}{
		{"static ok", "[node.static]\naddresses = [{ iface = \"eth0\", address = \"192.0.2.1/24\" }]\n", ""},
		{"static typo", "[node.static]\naddresses = [{ iface = \"eht0\", address = \"192.0.2.1/24\" }]\n",
			`x.toml:5:24: node r has no interface "eht0" in the lab; its lab links give it: eth0`},
		{"relay downstream", "[node.dhcp_relay]\nupstream = \"eth0\"\ndownstream = [\"eth1\"]\nservers = [\"198.51.100.1\"]\n",
			`x.toml:6:15: node r has no interface "eth1" in the lab`},
		{"lo is fine", "[node.static]\naddresses = [{ iface = \"lo\", address = \"192.0.2.1/32\" }]\n", ""},
	} {
		src := "name = \"l\"\n[[node]]\nname = \"r\"\n" + tt.node + "[[node]]\nname = \"d\"\n" + lab
		_, err := Parse("x.toml", []byte(src))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
	// Without a lab the node's real interfaces are not known: no check.
	if _, err := Parse("x.toml", []byte("name = \"l\"\n[[node]]\nname = \"r\"\n[node.static]\naddresses = [{ iface = \"enp3s0\", address = \"192.0.2.1/24\" }]\n")); err != nil {
		t.Errorf("profile without a lab: %v", err)
	}
}
