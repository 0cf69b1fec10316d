package tunnel

import (
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flynn/noise"
	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
)

// suite is Noise_IK_25519_ChaChaPoly_BLAKE2s (docs/protocols/tunnel.md).
var suite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)

var prologue = []byte("fieldcon tunnel v1")

// Errors a receiver counts drops by.
var (
	ErrBadMAC   = errors.New("tunnel: bad mac1")
	ErrBadAuth  = errors.New("tunnel: authentication failed")
	ErrReplayed = errors.New("tunnel: replayed")
	ErrNoCookie = errors.New("tunnel: under load, cookie required")
	// ErrRateLimited is a request over its source's handshake rate.
	ErrRateLimited = errors.New("tunnel: over the source's handshake rate")
)

// cookieRotation is how long the server's cookie secret lives (WireGuard §5.4.7).
const cookieRotation = 2 * time.Minute

func labelKey(label string, pub []byte) [32]byte {
	return blake2s.Sum256(append([]byte(label), pub...))
}

func mac(key []byte, msg []byte) []byte {
	h, err := blake2s.New128(key)
	if err != nil {
		panic(err) // only with a key longer than 32 bytes, which we never pass
	}
	h.Write(msg)
	return h.Sum(nil)
}

// sealMACs fills mac1 (keyed by the receiver's public key) and mac2 (keyed
// by cookie, when there is one) at the end of a handshake message.
func sealMACs(msg []byte, receiverPub []byte, cookie []byte) {
	off := len(msg) - 2*macLen
	k := labelKey("mac1----", receiverPub)
	copy(msg[off:], mac(k[:], msg[:off]))
	if len(cookie) > 0 {
		copy(msg[off+macLen:], mac(cookie, msg[:off+macLen]))
	}
}

func checkMAC1(msg []byte, mac1Key [32]byte) bool {
	off := len(msg) - 2*macLen
	return hmac.Equal(mac(mac1Key[:], msg[:off]), msg[off:off+macLen])
}

// Session is an established tunnel's transport keys and counters, one per
// direction (Noise Split). Seal and Open are safe for concurrent use.
type Session struct {
	Local, Remote uint32 // our index and the peer's
	send, recv    noise.Cipher
	counter       atomic.Uint64
	mu            sync.Mutex
	window        replayWindow
}

func newSession(local, remote uint32, send, recv *noise.CipherState) *Session {
	return &Session{Local: local, Remote: remote, send: send.Cipher(), recv: recv.Cipher()}
}

// Seal appends a transport message of type typ carrying plaintext to dst.
func (s *Session) Seal(dst []byte, typ byte, plaintext []byte) []byte {
	n := s.counter.Add(1) - 1
	start := len(dst)
	dst = append(dst, make([]byte, transportHeaderLen)...)
	putTransportHeader(dst[start:], typ, s.Remote, n)
	return s.send.Encrypt(dst, n, dst[start:start+transportHeaderLen], plaintext)
}

// SealInPlace seals the plaintext buf[transportHeaderLen:] where it lies:
// the header goes into the room left at the front of buf and the tag after
// the plaintext, which needs TransportOverhead-transportHeaderLen bytes of
// capacity behind buf. It returns the message, which aliases buf.
func (s *Session) SealInPlace(buf []byte, typ byte) []byte {
	n := s.counter.Add(1) - 1
	putTransportHeader(buf, typ, s.Remote, n)
	// The AEAD writes the ciphertext exactly over the plaintext, which it
	// allows; the header it authenticates is not overwritten.
	return s.send.Encrypt(buf[:transportHeaderLen], n, buf[:transportHeaderLen], buf[transportHeaderLen:])
}

// Open authenticates and decrypts a transport message addressed to s,
// appending the plaintext to dst. The replay window is consulted only after
// the tag verifies, so forged packets cannot move it.
func (s *Session) Open(dst []byte, t Transport) ([]byte, error) {
	out, err := s.recv.Decrypt(dst, t.Counter, t.Header, t.Sealed)
	if err != nil {
		return nil, ErrBadAuth
	}
	s.mu.Lock()
	ok := s.window.accept(t.Counter)
	s.mu.Unlock()
	if !ok {
		return nil, ErrReplayed
	}
	return out, nil
}

// Initiation is a client's pending establishment request.
type Initiation struct {
	hs        *noise.HandshakeState
	sender    uint32
	serverPub []byte
	mac1      []byte // of the request sent, the cookie reply's associated data
}

// Initiate builds an establishment request from the client's key to the
// server's. cookie is the last cookie the server gave (nil for none).
func Initiate(local noise.DHKey, serverPub PublicKey, sender uint32, now time.Time, cookie []byte) ([]byte, *Initiation, error) {
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: suite, Pattern: noise.HandshakeIK, Initiator: true,
		Prologue: prologue, StaticKeypair: local, PeerStatic: serverPub[:],
	})
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel: start handshake: %w", err)
	}
	payload := RequestPayload{Timestamp: uint64(now.UnixNano())}.marshal()
	n1, _, _, err := hs.WriteMessage(nil, payload)
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel: write handshake: %w", err)
	}
	msg, err := AppendRequest(nil, sender, n1)
	if err != nil {
		return nil, nil, err
	}
	sealMACs(msg, serverPub[:], cookie)
	off := len(msg) - 2*macLen
	return msg, &Initiation{hs: hs, sender: sender, serverPub: serverPub[:], mac1: append([]byte(nil), msg[off:off+macLen]...)}, nil
}

// Sender is the client index the request carries.
func (in *Initiation) Sender() uint32 { return in.sender }

// Complete checks the server's response and returns the session and the
// virtual NIC's assignment.
func (in *Initiation) Complete(b []byte, clientPub []byte) (*Session, Assignment, error) {
	r, err := ParseResponse(b)
	if err != nil {
		return nil, Assignment{}, err
	}
	if r.Receiver != in.sender {
		return nil, Assignment{}, fmt.Errorf("%w: response for index %d, want %d", ErrBadAuth, r.Receiver, in.sender)
	}
	if !checkMAC1(b, labelKey("mac1----", clientPub)) {
		return nil, Assignment{}, ErrBadMAC
	}
	payload, send, recv, err := in.hs.ReadMessage(nil, r.Noise)
	if err != nil {
		return nil, Assignment{}, ErrBadAuth
	}
	a, err := ParseAssignment(payload)
	if err != nil {
		return nil, Assignment{}, err
	}
	return newSession(in.sender, r.Sender, send, recv), a, nil
}

// OpenCookie decrypts a cookie reply to this initiation.
func (in *Initiation) OpenCookie(b []byte) ([]byte, error) {
	c, err := ParseCookieReply(b)
	if err != nil {
		return nil, err
	}
	if c.Receiver != in.sender {
		return nil, ErrBadAuth
	}
	k := labelKey("cookie--", in.serverPub)
	aead, err := chacha20poly1305.NewX(k[:])
	if err != nil {
		return nil, err
	}
	cookie, err := aead.Open(nil, c.Nonce, c.Sealed, in.mac1)
	if err != nil {
		return nil, ErrBadAuth
	}
	return cookie, nil
}

// Responder is the server's side of the handshake: mac checks, load
// shedding with cookies, a handshake rate per source and Noise IK. Of an
// unauthenticated sender it keeps only its source's token bucket, in a
// table of bounded size; besides, a global handshake rate and a rotating
// cookie secret.
type Responder struct {
	static  noise.DHKey
	mac1Key [32]byte
	cookieK [32]byte
	maxRate int // handshakes per second before cookies are demanded
	// sources limits the handshakes one source may start past the cookie
	// check.
	sources *sourceLimiter

	mu       sync.Mutex
	secret   [32]byte
	secretAt time.Time
	second   time.Time
	count    int
}

// NewResponder returns a responder for the server's key that demands
// cookies above maxRate handshakes per second (0: never).
func NewResponder(static noise.DHKey, maxRate int) *Responder {
	return &Responder{
		static: static, maxRate: maxRate, sources: newSourceLimiter(DefaultSourceHandshakeRate),
		mac1Key: labelKey("mac1----", static.Public),
		cookieK: labelKey("cookie--", static.Public),
	}
}

// WithSourceRate sets the handshakes per second one source address may
// start (0: DefaultSourceHandshakeRate). Call it before the first Accept.
func (r *Responder) WithSourceRate(rate int) *Responder {
	if rate <= 0 {
		rate = DefaultSourceHandshakeRate
	}
	r.sources = newSourceLimiter(rate)
	return r
}

// Accepted is an authenticated establishment request waiting for its
// response.
type Accepted struct {
	ClientKey PublicKey
	Sender    uint32
	Payload   RequestPayload
	hs        *noise.HandshakeState
}

// Accept checks a request from src. It returns either an authenticated
// request, or a cookie reply to send (under load), or an error saying why
// the request was dropped. Of a dropped request nothing is kept but the
// handshake it was charged to its source's bucket (ErrRateLimited: none
// left).
func (r *Responder) Accept(b []byte, src netip.AddrPort, now time.Time) (*Accepted, []byte, error) {
	req, err := ParseRequest(b)
	if err != nil {
		return nil, nil, err
	}
	if !checkMAC1(b, r.mac1Key) {
		return nil, nil, ErrBadMAC
	}
	if r.overloaded(now) {
		cookie := r.cookie(src, now)
		off := len(b) - macLen
		if !hmac.Equal(mac(cookie, b[:off]), req.MAC2) {
			reply, err := r.cookieReply(req, cookie)
			if err != nil {
				return nil, nil, err
			}
			return nil, reply, ErrNoCookie
		}
	}
	// Past the cookie, before the Diffie-Hellman that the limit protects.
	if !r.sources.allow(src.Addr(), now) {
		return nil, nil, ErrRateLimited
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: suite, Pattern: noise.HandshakeIK, Initiator: false,
		Prologue: prologue, StaticKeypair: r.static,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel: start handshake: %w", err)
	}
	payload, _, _, err := hs.ReadMessage(nil, req.Noise)
	if err != nil {
		return nil, nil, ErrBadAuth
	}
	p, err := parseRequestPayload(payload)
	if err != nil {
		return nil, nil, err
	}
	return &Accepted{ClientKey: PublicKey(hs.PeerStatic()), Sender: req.Sender, Payload: p, hs: hs}, nil, nil
}

// Respond completes the handshake, giving the client index as the tunnel
// index and the assignment; it returns the response to send and the session.
func (a *Accepted) Respond(index uint32, asg Assignment) ([]byte, *Session, error) {
	payload, err := asg.marshal()
	if err != nil {
		return nil, nil, err
	}
	n2, recv, send, err := a.hs.WriteMessage(nil, payload)
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel: write handshake response: %w", err)
	}
	msg, err := AppendResponse(nil, index, a.Sender, n2)
	if err != nil {
		return nil, nil, err
	}
	sealMACs(msg, a.ClientKey[:], nil)
	// Split gives (initiator→responder, responder→initiator).
	return msg, newSession(index, a.Sender, send, recv), nil
}

func (r *Responder) overloaded(now time.Time) bool {
	if r.maxRate <= 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.second) >= time.Second {
		r.second, r.count = now, 0
	}
	r.count++
	return r.count > r.maxRate
}

// cookie is MAC(R, src IP ‖ port), R rotating every two minutes.
func (r *Responder) cookie(src netip.AddrPort, now time.Time) []byte {
	r.mu.Lock()
	if now.Sub(r.secretAt) >= cookieRotation {
		if _, err := rand.Read(r.secret[:]); err != nil {
			panic(err) // crypto/rand does not fail on Linux
		}
		r.secretAt = now
	}
	secret := r.secret
	r.mu.Unlock()
	ip := src.Addr().As16()
	return mac(secret[:], append(ip[:], byte(src.Port()>>8), byte(src.Port())))
}

func (r *Responder) cookieReply(req Request, cookie []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(r.cookieK[:])
	if err != nil {
		return nil, err
	}
	b := make([]byte, 8, CookieLen)
	putHeader(b, TypeCookie)
	b[4], b[5], b[6], b[7] = byte(req.Sender>>24), byte(req.Sender>>16), byte(req.Sender>>8), byte(req.Sender)
	nonce := make([]byte, 24)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	b = append(b, nonce...)
	return aead.Seal(b, nonce, cookie, req.MAC1), nil
}
