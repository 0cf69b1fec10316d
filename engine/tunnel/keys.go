package tunnel

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
)

// KeySource says where a private key comes from: a file, or an environment
// variable (DESIGN.md: secrets come from files or environment variables
// named in the profile). The key itself is never printed.
type KeySource struct {
	File string
	Env  string
	// Generate creates File with a fresh key when it does not exist (labs),
	// and writes the public key next to it as File+".pub".
	Generate bool
}

// PublicKey is a Curve25519 public key, written in base64 like WireGuard's.
type PublicKey [32]byte

func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// ParsePublicKey parses a base64 public key.
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != 32 {
		return k, fmt.Errorf("public key %q is not 32 bytes in base64", s)
	}
	copy(k[:], b)
	return k, nil
}

// ReadPublicKeyFile reads a base64 public key from a file.
func ReadPublicKeyFile(path string) (PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PublicKey{}, fmt.Errorf("read public key: %w", err)
	}
	k, err := ParsePublicKey(string(b))
	if err != nil {
		return k, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// GenerateKey returns a fresh Curve25519 key pair.
func GenerateKey() (noise.DHKey, error) {
	return noise.DH25519.GenerateKeypair(rand.Reader)
}

// keyPair derives the pair from a base64 private key. Errors never include
// the key.
func keyPair(b64 string) (noise.DHKey, error) {
	priv, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil || len(priv) != 32 {
		return noise.DHKey{}, errors.New("private key is not 32 bytes in base64")
	}
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		return noise.DHKey{}, fmt.Errorf("private key: %w", err)
	}
	return noise.DHKey{Private: priv, Public: pub}, nil
}

// Load reads the key pair.
func (s KeySource) Load() (noise.DHKey, error) {
	switch {
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return noise.DHKey{}, fmt.Errorf("private key: environment variable %s is not set", s.Env)
		}
		k, err := keyPair(v)
		if err != nil {
			return k, fmt.Errorf("environment variable %s: %w", s.Env, err)
		}
		return k, nil
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if errors.Is(err, os.ErrNotExist) && s.Generate {
			return s.generate()
		}
		if err != nil {
			return noise.DHKey{}, fmt.Errorf("read private key: %w", err)
		}
		k, err := keyPair(string(b))
		if err != nil {
			return k, fmt.Errorf("%s: %w", s.File, err)
		}
		return k, s.writePublic(k)
	}
	return noise.DHKey{}, errors.New("no private key source: set a key file or an environment variable")
}

func (s KeySource) generate() (noise.DHKey, error) {
	k, err := GenerateKey()
	if err != nil {
		return k, fmt.Errorf("generate key: %w", err)
	}
	dir := filepath.Dir(s.File)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return k, fmt.Errorf("generate key: %w", err)
	}
	// Write a temporary file and link it into place, so a process that
	// races us (two labs starting at once) never reads a half-written key.
	f, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return k, fmt.Errorf("generate key: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(k.Private) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(f.Name(), s.File)
	}
	if errors.Is(err, os.ErrExist) {
		return s.Load() // another process won the race; use its key
	}
	if err != nil {
		return k, fmt.Errorf("generate key %s: %w", s.File, err)
	}
	return k, s.writePublic(k)
}

// writePublic keeps File.pub current so a lab's peer can read it.
func (s KeySource) writePublic(k noise.DHKey) error {
	if !s.Generate {
		return nil
	}
	pub := PublicKey(k.Public).String() + "\n"
	f, err := os.CreateTemp(filepath.Dir(s.File), ".pub-*")
	if err != nil {
		return fmt.Errorf("write public key: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(pub)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), s.File+".pub")
	}
	if err != nil {
		return fmt.Errorf("write public key %s.pub: %w", s.File, err)
	}
	return nil
}
