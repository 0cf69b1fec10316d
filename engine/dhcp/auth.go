package dhcp

import (
	"crypto/hmac"
	"crypto/md5" //nolint:gosec // RFC 6704 §3 names HMAC-MD5 (algorithm 1); it is the only algorithm peers implement.
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// RFC 6704 code points.
const (
	// OptionForceRenewNonceCapable (145) lists the algorithms a client can
	// use for FORCERENEW nonce authentication (RFC 6704 §3.1.1).
	OptionForceRenewNonceCapable = dhcpv4.GenericOptionCode(145)
	// MessageTypeForceRenew is DHCPFORCERENEW (RFC 3203 §4).
	MessageTypeForceRenew = dhcpv4.MessageType(9)

	authProtocolNonce = 3 // RFC 6704 §3.1: "Forcerenew Nonce Authentication"
	authAlgHMACMD5    = 1 // RFC 6704 §3.1
	authRDMCounter    = 0 // RFC 3118 §2: monotonically increasing counter
	authTypeNonce     = 1 // auth info carries the nonce (in the ACK)
	authTypeDigest    = 2 // auth info carries HMAC-MD5 of the message (in FORCERENEW)
	nonceLen          = 16
	authOptionLen     = 3 + 8 + 1 + nonceLen
	optionsStart      = 240 // fixed BOOTP header (236) + magic cookie (4)
)

// Auth is a decoded Authentication option (RFC 3118 §2) in the RFC 6704
// profile.
type Auth struct {
	Protocol, Algorithm, RDM uint8
	Replay                   uint64
	Type                     uint8
	Value                    []byte
}

// ParseAuth decodes the value of option 90.
func ParseAuth(v []byte) (Auth, error) {
	if len(v) < 3+8+1 {
		return Auth{}, fmt.Errorf("authentication option of %d bytes is too short (want %d)", len(v), authOptionLen)
	}
	a := Auth{Protocol: v[0], Algorithm: v[1], RDM: v[2], Replay: binary.BigEndian.Uint64(v[3:11]), Type: v[11], Value: v[12:]}
	return a, nil
}

// authOption encodes option 90 with the given info type and value.
func authOption(replay uint64, typ uint8, value []byte) dhcpv4.Option {
	b := make([]byte, authOptionLen)
	b[0], b[1], b[2] = authProtocolNonce, authAlgHMACMD5, authRDMCounter
	binary.BigEndian.PutUint64(b[3:11], replay)
	b[11] = typ
	copy(b[12:], value)
	return dhcpv4.OptGeneric(dhcpv4.OptionAuthentication, b)
}

// NonceOption is the Authentication option a server puts in an ACK to hand
// the client the nonce a later FORCERENEW is keyed with (RFC 6704 §3.2).
func NonceOption(replay uint64, nonce []byte) dhcpv4.Option {
	return authOption(replay, authTypeNonce, nonce)
}

// findOption returns the offset and length of the first instance of code's
// value in a raw DHCP message, walking the options field (RFC 2132 §2).
func findOption(raw []byte, code uint8) (off, n int, ok bool) {
	i := optionsStart
	for i < len(raw) {
		c := raw[i]
		switch c {
		case 0: // pad
			i++
			continue
		case 255: // end
			return 0, 0, false
		}
		if i+1 >= len(raw) {
			return 0, 0, false
		}
		l := int(raw[i+1])
		if i+2+l > len(raw) {
			return 0, 0, false
		}
		if c == code {
			return i + 2, l, true
		}
		i += 2 + l
	}
	return 0, 0, false
}

// digest computes HMAC-MD5 keyed by nonce over the message with hops and
// giaddr zeroed (relays change them, RFC 3118 §2) and the authentication
// information value zeroed (RFC 6704 §3.3).
func digest(raw []byte, valueOff int, nonce []byte) []byte {
	m := append([]byte(nil), raw...)
	m[3] = 0        // hops
	clear(m[24:28]) // giaddr
	clear(m[valueOff : valueOff+nonceLen])
	h := hmac.New(md5.New, nonce)
	h.Write(m)
	return h.Sum(nil)
}

// SignForceRenew encodes a FORCERENEW message with its Authentication option
// carrying the HMAC-MD5 keyed by the client's nonce (RFC 6704 §3.3).
func SignForceRenew(msg *dhcpv4.DHCPv4, replay uint64, nonce []byte) ([]byte, error) {
	if len(nonce) != nonceLen {
		return nil, fmt.Errorf("forcerenew nonce of %d bytes; want %d", len(nonce), nonceLen)
	}
	msg.UpdateOption(authOption(replay, authTypeDigest, make([]byte, nonceLen)))
	raw := msg.ToBytes()
	off, n, ok := findOption(raw, uint8(dhcpv4.OptionAuthentication))
	if !ok || n != authOptionLen {
		return nil, errors.New("forcerenew: authentication option missing after encoding")
	}
	valueOff := off + 12
	copy(raw[valueOff:], digest(raw, valueOff, nonce))
	return raw, nil
}

// Forcerenew authentication failures, for dhcp.forcerenew.rejected events.
var (
	ErrNoAuth    = errors.New("no authentication option")
	ErrBadAuth   = errors.New("authentication option is not RFC 6704 HMAC-MD5 digest")
	ErrBadDigest = errors.New("HMAC-MD5 digest does not match the lease's nonce")
	ErrReplay    = errors.New("replay detection counter did not increase")
	ErrNoNonce   = errors.New("the lease holds no nonce (the server did not offer RFC 6704 authentication)")
)

// VerifyForceRenew checks a raw FORCERENEW against the nonce the client was
// given in its ACK and the last replay counter it accepted, returning the
// message's counter. RFC 6704 §3.4: a client MUST discard a FORCERENEW that
// fails authentication.
func VerifyForceRenew(raw []byte, nonce []byte, lastReplay uint64) (uint64, error) {
	if len(nonce) != nonceLen {
		return 0, ErrNoNonce
	}
	off, n, ok := findOption(raw, uint8(dhcpv4.OptionAuthentication))
	if !ok {
		return 0, ErrNoAuth
	}
	a, err := ParseAuth(raw[off : off+n])
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadAuth, err)
	}
	if a.Protocol != authProtocolNonce || a.Algorithm != authAlgHMACMD5 || a.Type != authTypeDigest || len(a.Value) != nonceLen {
		return 0, ErrBadAuth
	}
	valueOff := off + 12
	if !hmac.Equal(a.Value, digest(raw, valueOff, nonce)) {
		return 0, ErrBadDigest
	}
	if a.Replay <= lastReplay {
		return 0, ErrReplay
	}
	return a.Replay, nil
}
