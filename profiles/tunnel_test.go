package profiles

import (
	"strings"
	"testing"
)

func TestTunnelValidation(t *testing.T) {
	const key = `private_key_file = "/k"` + "\n"
	tests := []struct {
		name, src string
		want      []string // substrings of the error, the first is the position
	}{
		{"client without server", "[[node]]\nname = \"c\"\n[node.tunnel_client]\nserver_public_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n" + key,
			[]string{"x.toml:3:", "server is missing"}},
		{"client with both server keys", "[[node]]\nname = \"c\"\n[node.tunnel_client]\nserver = \"203.0.113.1:51820\"\nserver_public_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\nserver_public_key_file = \"/y\"\n" + key,
			[]string{"x.toml:3:", "exactly one of server_public_key and server_public_key_file"}},
		{"client without key", "[[node]]\nname = \"c\"\n[node.tunnel_client]\nserver = \"203.0.113.1:51820\"\nserver_public_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
			[]string{"x.toml:3:", "no private key"}},
		{"bad server address", "[[node]]\nname = \"c\"\n[node.tunnel_client]\nserver = \"203.0.113.1\"\n",
			[]string{"x.toml:4:", "not an address and port"}},
		{"route with host bits", "[[node]]\nname = \"c\"\n[node.tunnel_client]\nserver = \"203.0.113.1:51820\"\nserver_public_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n" + key + "routes = [\"198.51.100.7/24\"]\n",
			[]string{"x.toml:", "host bits"}},
		{"server pool with host bits", "[[node]]\nname = \"s\"\n[node.tunnel_server]\nlisten = \"0.0.0.0:51820\"\n" + key + "pool = \"198.19.0.1/24\"\n[[node.tunnel_server.clients]]\nname = \"c\"\npublic_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
			[]string{"x.toml:6:", "did you mean 198.19.0.0/24"}},
		{"server pool too small", "[[node]]\nname = \"s\"\n[node.tunnel_server]\nlisten = \"0.0.0.0:51820\"\n" + key + "pool = \"198.19.0.0/31\"\n[[node.tunnel_server.clients]]\nname = \"c\"\npublic_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
			[]string{"x.toml:6:", "/16 to /30"}},
		{"idle below two heartbeats", "[[node]]\nname = \"s\"\n[node.tunnel_server]\nlisten = \"0.0.0.0:51820\"\n" + key + "pool = \"198.19.0.0/24\"\nheartbeat = \"10s\"\nidle_timeout = \"15s\"\n[[node.tunnel_server.clients]]\nname = \"c\"\npublic_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
			[]string{"x.toml:8:", "more than twice heartbeat"}},
		{"negative source handshake rate", "[[node]]\nname = \"s\"\n[node.tunnel_server]\nlisten = \"0.0.0.0:51820\"\n" + key + "pool = \"198.19.0.0/24\"\nsource_handshake_rate = -1\n[[node.tunnel_server.clients]]\nname = \"c\"\npublic_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
			[]string{"x.toml:7:", "source_handshake_rate -1 is negative"}},
		{"server without clients", "[[node]]\nname = \"s\"\n[node.tunnel_server]\nlisten = \"0.0.0.0:51820\"\n" + key + "pool = \"198.19.0.0/24\"\n",
			[]string{"x.toml:3:", "no clients are allowed"}},
		{"nat gateway port", "[[node]]\nname = \"n\"\n[node.nat_gateway]\ninside = \"eth0\"\noutside = \"eth1\"\nsource = \"198.18.0.0/24\"\nallow_udp = [70000]\n",
			[]string{"x.toml:7:", "port 70000 is out of range"}},
		{"server key not a key", "[[node]]\nname = \"c\"\n[node.tunnel_client]\nserver = \"203.0.113.1:51820\"\nserver_public_key = \"c2VjcmV0LXByaXZhdGUta2V5\"\n" + key,
			[]string{"x.toml:5:21:", "not a public key"}},
		{"client key not a key", "[[node]]\nname = \"s\"\n[node.tunnel_server]\nlisten = \"0.0.0.0:51820\"\n" + key + "pool = \"198.19.0.0/24\"\n[[node.tunnel_server.clients]]\nname = \"c\"\npublic_key = \"c2VjcmV0LXByaXZhdGUta2V5\"\n",
			[]string{"x.toml:9:14:", "not a public key"}},
		{"nat gateway typo", "[[node]]\nname = \"n\"\n[node.nat_gateway]\ninsid = \"eth0\"\n",
			[]string{"x.toml:4:", "valid keys in [node.nat_gateway]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(tt.src))
			if err == nil {
				t.Fatal("Parse accepted an invalid profile")
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
			// A key pasted in the wrong field never comes back in the error.
			if strings.Contains(msg, "c2VjcmV0") {
				t.Errorf("error %q repeats the key", msg)
			}
		})
	}
}
