package rhcp

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// minKeyLen is the shortest per-site key accepted: RFC 2104 §3 advises keys
// no shorter than the hash output; 16 bytes is the floor we tolerate for
// keys people type.
const minKeyLen = 16

// KeySource says where the per-site key comes from. The key never appears in
// events, logs or errors (DESIGN.md "Secrets").
type KeySource struct {
	File     string
	Env      string
	Generate bool
}

// Load reads the key. With Generate, a missing file is created with 32
// random bytes; the file is made under a temporary name and linked into
// place, so two roles generating at once agree on one key.
func (k KeySource) Load() ([]byte, error) {
	if k.Env != "" {
		v, ok := os.LookupEnv(k.Env)
		if !ok {
			return nil, fmt.Errorf("rhcp key: environment variable %s is not set", k.Env)
		}
		return checkKey([]byte(v), "environment variable "+k.Env)
	}
	if k.File == "" {
		return nil, errors.New("rhcp key: no key_file or key_env in the profile")
	}
	b, err := os.ReadFile(k.File)
	if errors.Is(err, os.ErrNotExist) && k.Generate {
		if err := generateKey(k.File); err != nil {
			return nil, err
		}
		b, err = os.ReadFile(k.File)
	}
	if err != nil {
		return nil, fmt.Errorf("rhcp key: %w", err)
	}
	if err := checkKeyMode(k.File); err != nil {
		return nil, err
	}
	return checkKey(b, k.File)
}

// checkKeyMode refuses a key file every local user can read: with the
// per-site key anyone can forge probes that re-address devices (DESIGN.md
// "Secrets"). Group access is left to the operator.
func checkKeyMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("rhcp key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 {
		return fmt.Errorf("rhcp key file %s is readable or writable by every user (mode %04o); restrict it with `chmod 600 %s`", path, perm, path)
	}
	return nil
}

func checkKey(b []byte, where string) ([]byte, error) {
	b = bytes.TrimSpace(b)
	if len(b) < minKeyLen {
		return nil, fmt.Errorf("rhcp key from %s is %d bytes; want at least %d", where, len(b), minKeyLen)
	}
	return b, nil
}

func generateKey(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("rhcp key: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("rhcp key: %w", err)
	}
	// Hex keeps the file printable so an engineer can copy it to a device.
	text := fmt.Appendf(nil, "%x\n", raw)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".rhcp-key-*")
	if err != nil {
		return fmt.Errorf("rhcp key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(text); err != nil {
		tmp.Close()
		return fmt.Errorf("rhcp key: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("rhcp key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("rhcp key: %w", err)
	}
	return nil
}
