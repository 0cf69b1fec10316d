package rhcp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeyFileOpenToEveryoneIsRefused: a world-readable key is refused with
// the fix, never with the key itself; 0600 and 0640 load.
func TestKeyFileOpenToEveryoneIsRefused(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	dir := t.TempDir()
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o640, true}, {0o644, false}, {0o666, false}} {
		path := filepath.Join(dir, "site.key")
		os.Remove(path)
		if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tt.mode); err != nil {
			t.Fatal(err)
		}
		key, err := KeySource{File: path}.Load()
		switch {
		case tt.ok && (err != nil || string(key) != secret):
			t.Errorf("mode %04o: %v", tt.mode, err)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), "chmod 600")):
			t.Errorf("mode %04o: error %v, want a refusal saying chmod 600", tt.mode, err)
		case err != nil && strings.Contains(err.Error(), secret):
			t.Errorf("mode %04o: the error repeats the key", tt.mode)
		}
	}
}
