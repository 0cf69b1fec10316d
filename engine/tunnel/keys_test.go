package tunnel

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestKeySourceGenerateRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "server.key")
	var wg sync.WaitGroup
	pubs := make([]PublicKey, 8)
	for i := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := KeySource{File: path, Generate: true}.Load()
			if err != nil {
				t.Error(err)
				return
			}
			pubs[i] = PublicKey(k.Public)
		}()
	}
	wg.Wait()
	for _, p := range pubs[1:] {
		if p != pubs[0] {
			t.Fatal("concurrent generators ended with different keys")
		}
	}
	pub, err := ReadPublicKeyFile(path + ".pub")
	if err != nil || pub != pubs[0] {
		t.Fatalf("public key file: %v %v", pub, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 2 {
		t.Fatalf("files left beside the key: %v", entries)
	}
}

func TestKeySourceErrorsNeverShowTheKey(t *testing.T) {
	t.Setenv("FC_TEST_TUNNEL_KEY", "c2VjcmV0LWJ1dC10b28tc2hvcnQ=")
	_, err := KeySource{Env: "FC_TEST_TUNNEL_KEY"}.Load()
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") || !strings.Contains(err.Error(), "FC_TEST_TUNNEL_KEY") {
		t.Fatalf("error %v: want the variable's name and not its value", err)
	}
}
