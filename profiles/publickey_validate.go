package profiles

import (
	"encoding/base64"
	"strings"
)

// publicKey checks a Curve25519 public key given inline: 32 bytes in
// standard base64 (Noise DH25519, as `wg pubkey` prints it). The value is
// not repeated in the error: a private key pasted into the wrong field
// must not end up in a terminal or a log (DESIGN.md "Secrets").
func (v *validator) publicKey(path, b64 string) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil || len(b) != 32 {
		v.errorf(path, "not a public key: want 32 bytes in base64 (44 characters ending in '='), as the peer's key file .pub holds")
	}
}
