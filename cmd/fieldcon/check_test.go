package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = dispatch(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckRejectsBadProfiles(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"typo in a key", "[[node]]\nname = \"a\"\n[node.static]\nadresses = []\n", "bad.toml:4:1: unknown key \"node.static.adresses\""},
		{"invalid CIDR", "[[node]]\nname = \"a\"\n[node.static]\naddresses = [{ iface = \"eth0\", address = \"192.0.2.300/24\" }]\n", "bad.toml:4:"},
		{"missing node", "[[node]]\nname = \"a\"\n[[node]]\nname = \"b\"\n[lab]\n[[lab.link]]\na = \"a:eth0\"\nb = \"ghost:eth0\"\n", "bad.toml:8:5: no node named \"ghost\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.toml")
			if err := os.WriteFile(path, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runCLI(t, "check", path)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q does not contain %q", stderr, tt.want)
			}
		})
	}
}

func TestCheckAndListEmbedded(t *testing.T) {
	code, out, stderr := runCLI(t, "check", "demo")
	if code != exitOK || !strings.Contains(out, "ok") {
		t.Fatalf("check demo: exit %d, out %q, err %q", code, out, stderr)
	}
	code, out, _ = runCLI(t, "profiles")
	if code != exitOK || !strings.Contains(out, "demo") {
		t.Fatalf("profiles: exit %d, out %q", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"check"}, {"run"}, {"run", "-p", "no-such-profile"}, {"lab"}} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("fieldcon %v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code, out, _ := runCLI(t, "version"); code != exitOK || !strings.HasPrefix(out, "fieldcon ") {
		t.Errorf("version: %d %q", code, out)
	}
}
