package profiles

import (
	"strings"
	"testing"
)

func TestMechanismsMatchSections(t *testing.T) {
	const rhcpClient = "[node.rhcp_client]\niface = \"eth0\"\nclient_id = \"ESN-1\"\nkey_env = \"K\"\nlink = { address = \"192.0.2.2/32\", peer = \"192.0.2.1/32\" }\n"
	const dhcpClient = "[node.dhcp_client]\niface = \"eth0\"\n"
	const static = "[node.static]\naddresses = [{ iface = \"eth0\", address = \"192.0.2.9/24\" }]\n"
	for _, tt := range []struct {
		name, node, want string
	}{
		{"arbitrated", "mechanisms = [\"rhcp\", \"dhcp\"]\n" + rhcpClient + dhcpClient, ""},
		{"static listed with section", "mechanisms = [\"static\", \"rhcp\"]\n" + static + rhcpClient, ""},
		{"one client, no list", rhcpClient, ""},
		{"twice", "mechanisms = [\"rhcp\", \"rhcp\"]\n" + rhcpClient, `x.toml:4:23: mechanism "rhcp" is listed twice`},
		{"static without section", "mechanisms = [\"static\", \"rhcp\"]\n" + rhcpClient, `x.toml:4:15: mechanism "static" needs a [node.static]`},
		{"two clients unarbitrated", rhcpClient + dhcpClient, `x.toml:3:8: node "d" has both [node.rhcp_client] and [node.dhcp_client]`},
	} {
		src := "name = \"m\"\n[[node]]\nname = \"d\"\n" + tt.node
		_, err := Parse("x.toml", []byte(src))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}
