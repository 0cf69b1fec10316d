package profiles

import (
	"fmt"
	"strings"
	"testing"
)

// TestRHCPHostileTable: `fieldcon check` refuses in the server's allocation
// table the values a device refuses in a probe (engine/rhcp/assignment),
// each at the line and column of the value.
func TestRHCPHostileTable(t *testing.T) {
	// section is the [node.rhcp_server] body with one client; %s are extra
	// section lines and the client's inline table fields.
	section := func(extra, client string) string {
		return fmt.Sprintf(`[[node]]
name = "s"
[node.rhcp_server]
address = "198.51.100.1"
key_env = "K"
gateway = "192.0.2.1"
%s
[[node.rhcp_server.clients]]
id = "ESN-1"
%s
`, extra, client)
	}
	cases := []struct {
		name, extra, client, want string
	}{
		{"limited broadcast", "", `address = "255.255.255.255/32"`, "t.toml:10:11: 255.255.255.255 is the limited broadcast address"},
		{"loopback", "", `address = "127.0.0.1/8"`, "t.toml:10:11: 127.0.0.1 is a loopback address"},
		{"multicast", "", `address = "224.0.0.5/24"`, "t.toml:10:11: 224.0.0.5 is a multicast address"},
		{"class E", "", `address = "240.0.0.1/24"`, "t.toml:10:11: 240.0.0.1 is in 240.0.0.0/4, reserved class E"},
		{"unspecified /0", "", `address = "0.0.0.0/0"`, "t.toml:10:11: 0.0.0.0 is in 0.0.0.0/8"},
		{"/0 prefix", "", `address = "203.0.113.10/0"`, "t.toml:10:11: 203.0.113.10/0: prefix length /0 is too short"},
		{"/4 prefix", "", `address = "203.0.113.10/4"`, "t.toml:10:11: 203.0.113.10/4: prefix length /4 is too short"},
		{"link-local", "", `address = "169.254.10.10/16"`, "t.toml:10:11: 169.254.10.10 is an IPv4 link-local address"},
		{"network address", "", `address = "203.0.113.0/24"`, "t.toml:10:11: 203.0.113.0 is the network address"},
		{"subnet broadcast", "", `address = "203.0.113.255/24"`, "t.toml:10:11: 203.0.113.255 is the broadcast address"},
		{"default route", `routes = [{ dst = "0.0.0.0/0" }]`, `address = "203.0.113.10/24"`, "t.toml:7:19: destination 0.0.0.0/0: prefix length /0 is too short"},
		{"half the Internet", `routes = [{ dst = "128.0.0.0/1" }]`, `address = "203.0.113.10/24"`, "t.toml:7:19: destination 128.0.0.0/1: prefix length /1 is too short"},
		{"route to loopback", `routes = [{ dst = "127.0.0.0/8" }]`, `address = "203.0.113.10/24"`, "t.toml:7:19: destination 127.0.0.0/8 covers 127.0.0.0/8, a loopback address"},
		{"route to multicast", `routes = [{ dst = "239.0.0.0/8" }]`, `address = "203.0.113.10/24"`, "t.toml:7:19: destination 239.0.0.0/8 covers 224.0.0.0/4, a multicast address"},
		{"via loopback", `routes = [{ dst = "198.51.100.0/24", via = "127.0.0.1" }]`, `address = "203.0.113.10/24"`, "t.toml:7:44: next hop 127.0.0.1 is a loopback address"},
		{"via broadcast", `routes = [{ dst = "198.51.100.0/24", via = "255.255.255.255" }]`, `address = "203.0.113.10/24"`, "t.toml:7:44: next hop 255.255.255.255 is the limited broadcast address"},
		{"via multicast", `routes = [{ dst = "198.51.100.0/24", via = "224.0.0.1" }]`, `address = "203.0.113.10/24"`, "t.toml:7:44: next hop 224.0.0.1 is a multicast address"},
		{"via unspecified", `routes = [{ dst = "198.51.100.0/24", via = "0.0.0.0" }]`, `address = "203.0.113.10/24"`, "t.toml:7:44: next hop 0.0.0.0 is in 0.0.0.0/8"},
		{"client gateway loopback", "", "address = \"203.0.113.10/24\"\ngateway = \"127.0.0.1\"", "t.toml:11:11: next hop 127.0.0.1 is a loopback address"},
		{"client gateway subnet broadcast", "", "address = \"203.0.113.10/24\"\ngateway = \"203.0.113.255\"", "t.toml:11:11: next hop 203.0.113.255 is the broadcast address of 203.0.113.0/24"},
		{"gateway own address", "", "address = \"192.0.2.1/24\"", "t.toml:6:11: next hop 192.0.2.1 is the device's own address"},
		{"dhcp server multicast", "", "address = \"203.0.113.10/24\"\ndhcp_server = \"224.0.0.1\"", "t.toml:11:15: 224.0.0.1 is a multicast address"},
		{"pool class E", `pool = "240.0.0.0/24"`, "", "t.toml:7:8: destination 240.0.0.0/24 covers 240.0.0.0/4"},
		{"server loopback", "", `address = "203.0.113.10/24"`, "t.toml:4:11: 127.0.0.1 is a loopback address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := section(c.extra, c.client)
			if c.name == "server loopback" {
				src = strings.Replace(src, `"198.51.100.1"`, `"127.0.0.1"`, 1)
			}
			_, err := Parse("t.toml", []byte(src))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse:\n%v\nwant an error containing %q; profile:\n%s", err, c.want, src)
			}
		})
	}
}
