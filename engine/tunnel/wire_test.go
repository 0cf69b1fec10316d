package tunnel

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestMessageTypeRejects(t *testing.T) {
	valid := func(typ byte, n int) []byte {
		b := make([]byte, n)
		putHeader(b, typ)
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short header", []byte{4, 1}, ErrTruncated},
		{"bad version", []byte{4, 2, 0, 0}, ErrMalformed},
		{"reserved set", []byte{4, 1, 0, 1}, ErrMalformed},
		{"unknown type", valid(9, 40), ErrMalformed},
		{"short request", valid(TypeRequest, RequestLen-1), ErrTruncated},
		{"long request", valid(TypeRequest, RequestLen+1), ErrMalformed},
		{"short response", valid(TypeResponse, ResponseLen-1), ErrTruncated},
		{"short cookie", valid(TypeCookie, CookieLen-1), ErrTruncated},
		{"short data", valid(TypeData, TransportOverhead-1), ErrTruncated},
		{"heartbeat", valid(TypeHeartbeat, TransportOverhead), nil},
		{"request", valid(TypeRequest, RequestLen), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := MessageType(tt.b)
			if !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
				t.Errorf("MessageType = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAssignmentRoundTrip(t *testing.T) {
	a := Assignment{Address: netip.MustParsePrefix("198.19.0.7/24"), Gateway: netip.MustParseAddr("198.19.0.1"), Heartbeat: 15, Idle: 60, MTU: 1420}
	b, err := a.marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseAssignment(b)
	if err != nil || got != a {
		t.Fatalf("ParseAssignment = %+v, %v; want %+v", got, err, a)
	}
	b[8] = 203 // gateway outside the prefix
	if _, err := ParseAssignment(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("gateway outside prefix: err = %v", err)
	}
}

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	steps := []struct {
		c    uint64
		want bool
	}{
		{0, true}, {0, false}, {1, true}, {5, true}, {3, true}, {3, false},
		{5000, true}, {5000 - windowSize + 1, true}, {5000 - windowSize, false},
		{4999, true}, {2, false}, {100000, true}, {5000, false}, {rejectAfter, false},
	}
	for i, s := range steps {
		if got := w.accept(s.c); got != s.want {
			t.Errorf("step %d: accept(%d) = %v, want %v", i, s.c, got, s.want)
		}
	}
}

// pair runs a full handshake between fresh keys and returns both sessions.
func pair(t testing.TB) (client, server *Session, asg Assignment) {
	t.Helper()
	ck, _ := GenerateKey()
	sk, _ := GenerateKey()
	msg, in, err := Initiate(ck, PublicKey(sk.Public), 0x11223344, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) != RequestLen {
		t.Fatalf("request is %d bytes, want %d", len(msg), RequestLen)
	}
	r := NewResponder(sk, 0)
	acc, _, err := r.Accept(msg, netip.MustParseAddrPort("203.0.113.9:4000"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if acc.ClientKey != PublicKey(ck.Public) {
		t.Fatal("responder saw the wrong client key")
	}
	want := Assignment{Address: netip.MustParsePrefix("198.19.0.2/24"), Gateway: netip.MustParseAddr("198.19.0.1"), Heartbeat: 10, Idle: 30, MTU: 1420}
	resp, ss, err := acc.Respond(0xaabbccdd, want)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp) != ResponseLen {
		t.Fatalf("response is %d bytes, want %d", len(resp), ResponseLen)
	}
	cs, got, err := in.Complete(resp, ck.Public)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("assignment %+v, want %+v", got, want)
	}
	return cs, ss, got
}

func TestHandshakeAndTransport(t *testing.T) {
	cs, ss, _ := pair(t)
	if cs.Remote != ss.Local || ss.Remote != cs.Local {
		t.Fatalf("indexes: client %d→%d server %d→%d", cs.Local, cs.Remote, ss.Local, ss.Remote)
	}
	pkt := []byte("an ip packet would be here")
	msg := cs.Seal(nil, TypeData, pkt)
	tr, err := ParseTransport(msg)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Receiver != ss.Local {
		t.Fatalf("receiver %d, want tunnel index %d", tr.Receiver, ss.Local)
	}
	got, err := ss.Open(nil, tr)
	if err != nil || !bytes.Equal(got, pkt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// The same datagram again is a replay.
	if _, err := ss.Open(nil, tr); !errors.Is(err, ErrReplayed) {
		t.Errorf("replay: err = %v, want ErrReplayed", err)
	}
	// A flipped bit anywhere (header included) fails authentication.
	for _, i := range []int{0, 5, 9, 20, len(msg) - 1} {
		forged := append([]byte(nil), msg...)
		forged[i] ^= 0x40
		tr, err := ParseTransport(forged)
		if err != nil {
			continue
		}
		tr.Receiver = ss.Local
		if _, err := ss.Open(nil, tr); !errors.Is(err, ErrBadAuth) {
			t.Errorf("forged byte %d: err = %v, want ErrBadAuth", i, err)
		}
	}
	// The server's direction works too, and heartbeats carry nothing.
	hb := ss.Seal(nil, TypeHeartbeat, nil)
	tr, _ = ParseTransport(hb)
	if p, err := cs.Open(nil, tr); err != nil || len(p) != 0 || tr.Type != TypeHeartbeat {
		t.Fatalf("heartbeat: %q %v", p, err)
	}
}

func TestResponderDropsBeforeDH(t *testing.T) {
	ck, _ := GenerateKey()
	sk, _ := GenerateKey()
	other, _ := GenerateKey()
	// A request made for another server's key fails mac1.
	msg, _, _ := Initiate(ck, PublicKey(other.Public), 1, time.Now(), nil)
	r := NewResponder(sk, 0)
	if _, _, err := r.Accept(msg, netip.MustParseAddrPort("203.0.113.9:4000"), time.Now()); !errors.Is(err, ErrBadMAC) {
		t.Errorf("wrong server key: err = %v, want ErrBadMAC", err)
	}
	// A request whose noise part was altered (mac1 recomputed) fails Noise.
	msg, _, _ = Initiate(ck, PublicKey(sk.Public), 1, time.Now(), nil)
	msg[50] ^= 1
	sealMACs(msg, sk.Public, nil)
	if _, _, err := r.Accept(msg, netip.MustParseAddrPort("203.0.113.9:4000"), time.Now()); !errors.Is(err, ErrBadAuth) {
		t.Errorf("altered request: err = %v, want ErrBadAuth", err)
	}
}

func TestCookieUnderLoad(t *testing.T) {
	ck, _ := GenerateKey()
	sk, _ := GenerateKey()
	r := NewResponder(sk, 1)
	src := netip.MustParseAddrPort("203.0.113.9:4000")
	now := time.Now()
	msg, _, _ := Initiate(ck, PublicKey(sk.Public), 7, now, nil)
	if _, _, err := r.Accept(msg, src, now); err != nil {
		t.Fatalf("first request under the limit: %v", err)
	}
	msg, in, _ := Initiate(ck, PublicKey(sk.Public), 8, now, nil)
	_, reply, err := r.Accept(msg, src, now)
	if !errors.Is(err, ErrNoCookie) || len(reply) != CookieLen {
		t.Fatalf("second request: err = %v, reply %d bytes", err, len(reply))
	}
	cookie, err := in.OpenCookie(reply)
	if err != nil {
		t.Fatal(err)
	}
	msg, _, _ = Initiate(ck, PublicKey(sk.Public), 9, now, cookie)
	if _, _, err := r.Accept(msg, src, now); err != nil {
		t.Fatalf("request with cookie: %v", err)
	}
	// The cookie is bound to the source address and port.
	msg, _, _ = Initiate(ck, PublicKey(sk.Public), 10, now, cookie)
	if _, _, err := r.Accept(msg, netip.MustParseAddrPort("203.0.113.10:4000"), now); !errors.Is(err, ErrNoCookie) {
		t.Fatalf("cookie from another source: err = %v", err)
	}
}

// FuzzParse feeds arbitrary datagrams to every decoder a receiver runs
// before authentication.
func FuzzParse(f *testing.F) {
	cs, _, _ := pair(f)
	f.Add(cs.Seal(nil, TypeData, []byte("x")))
	f.Add(make([]byte, RequestLen))
	f.Add([]byte{1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, err := MessageType(b)
		if err != nil {
			return
		}
		switch typ {
		case TypeRequest:
			if _, err := ParseRequest(b); err != nil {
				t.Fatal(err)
			}
		case TypeResponse:
			if _, err := ParseResponse(b); err != nil {
				t.Fatal(err)
			}
		case TypeCookie:
			if _, err := ParseCookieReply(b); err != nil {
				t.Fatal(err)
			}
		default:
			tr, err := ParseTransport(b)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cs.Open(nil, tr); err == nil {
				t.Fatal("a fuzzed transport message authenticated")
			}
		}
	})
}

// FuzzAssignment decodes arbitrary response payloads.
func FuzzAssignment(f *testing.F) {
	f.Add(make([]byte, responsePayloadLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAssignment(b)
		if err != nil {
			return
		}
		out, err := a.marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip: %x → %+v → %x (%v)", b, a, out, err)
		}
	})
}

// FuzzResponder makes sure no request a fuzzer can build passes the
// responder without the client's key.
func FuzzResponder(f *testing.F) {
	sk, _ := GenerateKey()
	r := NewResponder(sk, 0)
	ck, _ := GenerateKey()
	msg, _, _ := Initiate(ck, PublicKey(sk.Public), 1, time.Now(), nil)
	f.Add(msg)
	f.Fuzz(func(t *testing.T, b []byte) {
		acc, _, err := r.Accept(b, netip.MustParseAddrPort("203.0.113.9:1"), time.Now())
		if err == nil && acc.ClientKey != PublicKey(ck.Public) {
			t.Fatal("accepted a request from an unknown key without a handshake")
		}
	})
}
