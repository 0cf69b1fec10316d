package profiles

import (
	"strings"
	"testing"
)

func TestRHCPLabKeysMatch(t *testing.T) {
	const server = "[[node]]\nname = \"s\"\n[node.rhcp_server]\naddress = \"198.51.100.1\"\nkey_file = \"/run/k/site.key\"\n[[node.rhcp_server.clients]]\nid = \"ESN-1\"\naddress = \"203.0.113.10/24\"\n"
	device := func(key string) string {
		return "[[node]]\nname = \"d\"\n[node.rhcp_client]\niface = \"eth0\"\nclient_id = \"ESN-1\"\n" + key + "\nlink = { address = \"192.0.2.2/32\", peer = \"192.0.2.1/32\" }\n"
	}
	const lab = "[lab]\n[[lab.link]]\na = \"s:eth0\"\nb = \"d:eth0\"\n"
	for _, tt := range []struct {
		name, src, want string
	}{
		{"same file", server + device(`key_file = "/run/k/site.key"`) + lab, ""},
		{"other file", server + device(`key_file = "/run/k/other.key"`) + lab, `x.toml:14:12: the device reads the per-site key from key_file /run/k/other.key but the RHCP server reads it from s key_file /run/k/site.key`},
		{"env instead", server + device(`key_env = "K"`) + lab, `x.toml:14:11: the device reads the per-site key from key_env K`},
		{"no lab: devices elsewhere", server + device(`key_file = "/etc/fieldcon/site.key"`), ""},
	} {
		_, err := Parse("x.toml", []byte(tt.src))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestRHCPJitterBelowInterval(t *testing.T) {
	src := "[[node]]\nname = \"s\"\n[node.rhcp_server]\naddress = \"198.51.100.1\"\nkey_env = \"K\"\ninterval = \"2s\"\njitter = \"%s\"\n[[node.rhcp_server.clients]]\nid = \"E1\"\naddress = \"203.0.113.10/24\"\n"
	if _, err := Parse("x.toml", []byte(strings.Replace(src, "%s", "200ms", 1))); err != nil {
		t.Errorf("jitter 200ms with interval 2s: %v", err)
	}
	_, err := Parse("x.toml", []byte(strings.Replace(src, "%s", "2s", 1)))
	if err == nil || !strings.Contains(err.Error(), "x.toml:7:10: jitter 2s is not below interval 2s") {
		t.Errorf("jitter 2s with interval 2s: %v", err)
	}
}
