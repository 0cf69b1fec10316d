package profiles

import (
	"strings"
	"testing"
)

// TestRHCPValidate checks that each RHCP mistake is reported at its
// position with what would be valid.
func TestRHCPValidate(t *testing.T) {
	cases := []struct {
		name, toml, want string
	}{
		{"server without key", `
[[node]]
name = "s"
[node.rhcp_server]
address = "198.51.100.1"
clients = [{ id = "ESN-1", address = "203.0.113.10/24" }]
`, "t.toml:4:2: no key: set key_file"},
		{"client id with space", `
[[node]]
name = "s"
[node.rhcp_server]
address = "198.51.100.1"
key_env = "K"
clients = [{ id = "ESN 1", address = "203.0.113.10/24" }]
`, "client id \"ESN 1\" is not valid"},
		{"no address no pool", `
[[node]]
name = "s"
[node.rhcp_server]
address = "198.51.100.1"
key_env = "K"
clients = [{ id = "ESN-1" }]
`, "has no address and the section has no pool"},
		{"duplicate address", `
[[node]]
name = "s"
[node.rhcp_server]
address = "198.51.100.1"
key_env = "K"
clients = [{ id = "a", address = "203.0.113.10/24" }, { id = "b", address = "203.0.113.10/24" }]
`, "already allocated to \"a\""},
		{"route without gateway", `
[[node]]
name = "s"
[node.rhcp_server]
address = "198.51.100.1"
key_env = "K"
routes = [{ dst = "198.51.100.0/24" }]
clients = [{ id = "a", address = "203.0.113.10/24" }]
`, "needs via, or a gateway"},
		{"cache without upstream", `
[[node]]
name = "r"
[node.access_router]
cache = true
links = [{ iface = "eth1", address = "192.0.2.1/32", peer = "192.0.2.2/32", routes = ["203.0.113.10/32"] }]
`, "cache needs upstream"},
		{"router route host bits", `
[[node]]
name = "r"
[node.access_router]
links = [{ iface = "eth1", address = "192.0.2.1/32", peer = "192.0.2.2/32", routes = ["203.0.113.10/24"] }]
`, "did you mean 203.0.113.0/24"},
		{"client both keys", `
[[node]]
name = "d"
[node.rhcp_client]
iface = "eth0"
client_id = "ESN-1"
key_file = "/k"
key_env = "K"
`, "set key_file or key_env, not both"},
		{"mechanism without section", `
[[node]]
name = "d"
mechanisms = ["rhcp"]
`, "needs a [node.rhcp_client] section"},
		{"dnsmasq pool reversed", `
[[node]]
name = "h"
[node.dnsmasq]
iface = "eth0"
pool_start = "203.0.113.199"
pool_end = "203.0.113.100"
`, "pool_end 203.0.113.100 is below pool_start"},
		{"unknown key", `
[[node]]
name = "d"
[node.rhcp_client]
iface = "eth0"
client_id = "ESN-1"
key_env = "K"
secret = "x"
`, "unknown key \"node.rhcp_client.secret\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(c.toml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse: %v\nwant an error containing %q", err, c.want)
			}
		})
	}
}

func TestRHCPEmbeddedProfilesValid(t *testing.T) {
	for _, name := range []string{"rhcp", "rhcp-dhcp", "demo"} {
		p, err := Load(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Node("device") == nil || p.Node("device").RHCPClient == nil {
			t.Errorf("%s: the device has no rhcp_client", name)
		}
	}
}
