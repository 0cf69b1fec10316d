package rhcp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func testProbe() *Message {
	return &Message{
		Type:     TypeProbe,
		ClientID: "ESN-0001",
		Address:  netip.MustParsePrefix("203.0.113.10/24"),
		Gateway:  netip.MustParseAddr("192.0.2.1"),
		Routes:   []Route{{Dst: netip.MustParsePrefix("198.51.100.0/24")}},
		Server:   netip.MustParseAddr("198.51.100.1"),
		Sequence: 0x0102030405060708,
		Issued:   time.Unix(1_800_000_000, 0),
		Lifetime: 300 * time.Second,
	}
}

// TestProbeBytes pins the example of docs/protocols/rhcp.md byte for byte.
func TestProbeBytes(t *testing.T) {
	b, err := testProbe().Marshal(testKey)
	if err != nil {
		t.Fatal(err)
	}
	want := "524801010064000001084553" + "4e2d30303031" + "0205cb00710a18" + "0304c0000201" +
		"0405c633640018" + "0504c6336401" + "07080102030405060708" + "080c000000006b49d200" + "0000012c"
	if got := hex.EncodeToString(b[:len(b)-32]); got != want {
		t.Fatalf("probe bytes\n got %s\nwant %s", got, want)
	}
	if len(b) != 100 {
		t.Fatalf("length %d, want 100 as in the doc", len(b))
	}
}

func TestRoundTrip(t *testing.T) {
	msgs := []*Message{
		testProbe(),
		{Type: TypeProbe, ClientID: "x", Address: netip.MustParsePrefix("2001:db8::10/64"),
			Gateway: netip.MustParseAddr("2001:db8::1"), Server: netip.MustParseAddr("2001:db8:1::1"),
			DHCPServer: netip.MustParseAddr("2001:db8:2::1"), Sequence: 1, Issued: time.Unix(1, 0), Lifetime: time.Hour,
			Routes: []Route{{Dst: netip.MustParsePrefix("2001:db8:3::/48"), Via: netip.MustParseAddr("2001:db8::2")}}},
		{Type: TypeProbe, ClientID: "ESN-2", Address: netip.MustParsePrefix("203.0.113.20/24"),
			Server: netip.MustParseAddr("198.51.100.1"), DHCPServer: netip.MustParseAddr("198.18.0.2"),
			Sequence: 9, Issued: time.Unix(1_800_000_000, 0), Lifetime: time.Minute,
			Routes: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("192.0.2.1")}}},
		{Type: TypeStop, ClientID: "ESN-0001", Address: netip.MustParsePrefix("203.0.113.10/24"), Sequence: 5, AckSeq: 4},
		{Type: TypeRelease, ClientID: "ESN-0001", Address: netip.MustParsePrefix("203.0.113.10/24"),
			Formal: netip.MustParsePrefix("203.0.113.150/24"), Sequence: 6},
		{Type: TypeAck, ClientID: "ESN-0001", Sequence: 7, AckSeq: 6},
	}
	for _, m := range msgs {
		t.Run(m.Type.String(), func(t *testing.T) {
			b, err := m.Marshal(testKey)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(b, testKey)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip\n got %+v\nwant %+v", got, m)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := testProbe().Marshal(testKey)
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	withTLV := func(tlv []byte) []byte {
		// rebuild with an extra TLV and a fresh HMAC
		body := append(bytes.Clone(good[:len(good)-32]), tlv...)
		return resign(body)
	}
	cases := []struct {
		name string
		b    []byte
		key  []byte
		want error
	}{
		{"empty", nil, testKey, ErrTruncated},
		{"short", good[:39], testKey, ErrTruncated},
		{"truncated", good[:len(good)-1], testKey, ErrTruncated},
		{"wrong key", good, []byte("another site key"), ErrBadMAC},
		{"flipped address bit", flip(30), testKey, ErrBadMAC},
		{"flipped mac", flip(len(good) - 1), testKey, ErrBadMAC},
		{"bad magic", resign(append([]byte{'X'}, good[1:len(good)-32]...)), testKey, ErrMalformed},
		{"repeated address", withTLV([]byte{2, 5, 203, 0, 113, 11, 24}), testKey, ErrMalformed},
		{"bad address length", withTLV([]byte{9, 4, 1, 2, 3, 4}), testKey, ErrMalformed},
		{"prefix too long", withTLV([]byte{9, 5, 1, 2, 3, 4, 33}), testKey, ErrMalformed},
		{"tlv overruns", withTLV([]byte{200, 10, 1}), testKey, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.b, c.key)
			if !errors.Is(err, c.want) {
				t.Fatalf("Parse: %v, want %v", err, c.want)
			}
			if strings.Contains(err.Error(), string(testKey)) {
				t.Fatal("error leaks the key")
			}
		})
	}
}

func TestUnknownTLVSkipped(t *testing.T) {
	good, _ := testProbe().Marshal(testKey)
	body := append(bytes.Clone(good[:len(good)-32]), 200, 3, 'a', 'b', 'c')
	m, err := Parse(resign(body), testKey)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, testProbe()) {
		t.Fatalf("got %+v", m)
	}
}

func TestMissingRequired(t *testing.T) {
	// A probe without SERVER: build by hand from a stop's layout.
	stop := &Message{Type: TypeStop, ClientID: "a", Address: netip.MustParsePrefix("203.0.113.1/32"), Sequence: 1}
	b, _ := stop.Marshal(testKey)
	b[3] = byte(TypeProbe)
	if _, err := Parse(resign(b[:len(b)-32]), testKey); !errors.Is(err, ErrMalformed) {
		t.Fatalf("probe without server: %v", err)
	}
}

func TestMarshalRefuses(t *testing.T) {
	bad := []*Message{
		{Type: TypeProbe, ClientID: "", Address: netip.MustParsePrefix("203.0.113.1/32"), Server: netip.MustParseAddr("198.51.100.1"), Lifetime: time.Minute},
		{Type: TypeProbe, ClientID: "has space", Address: netip.MustParsePrefix("203.0.113.1/32"), Server: netip.MustParseAddr("198.51.100.1"), Lifetime: time.Minute},
		{Type: TypeProbe, ClientID: "a", Server: netip.MustParseAddr("198.51.100.1"), Lifetime: time.Minute},
		{Type: TypeRelease, ClientID: "a", Address: netip.MustParsePrefix("203.0.113.1/32")},
		{Type: 9, ClientID: "a"},
	}
	for _, m := range bad {
		if _, err := m.Marshal(testKey); err == nil {
			t.Errorf("Marshal(%+v) succeeded", m)
		}
	}
}

// resign sets the length field of body and appends a valid HMAC.
func resign(body []byte) []byte {
	body = bytes.Clone(body)
	n := len(body) + 32
	body[4], body[5] = byte(n>>8), byte(n)
	return appendMAC(body, testKey)
}

func FuzzParse(f *testing.F) {
	good, _ := testProbe().Marshal(testKey)
	f.Add(good)
	f.Add(good[:50])
	stop, _ := (&Message{Type: TypeStop, ClientID: "a", Address: netip.MustParsePrefix("203.0.113.1/32"), Sequence: 1}).Marshal(testKey)
	f.Add(stop)
	f.Fuzz(func(t *testing.T, b []byte) {
		// Fuzz the TLV parser behind the MAC too: re-sign what the fuzzer made.
		if len(b) >= MinLen && len(b) <= MaxLen {
			b = resign(b[:len(b)-32])
		}
		m, err := Parse(b, testKey)
		if err != nil {
			return
		}
		// Whatever parses must survive a re-encode when it is sendable.
		if out, err := m.Marshal(testKey); err == nil {
			if _, err := Parse(out, testKey); err != nil {
				t.Fatalf("re-encoded message does not parse: %v", err)
			}
		}
	})
}

func FuzzParseFrame(f *testing.F) {
	p, _ := testProbe().Marshal(testKey)
	pkt := BuildPacket(netip.MustParseAddrPort("198.51.100.1:6655"), netip.MustParseAddrPort("203.0.113.10:6655"), p)
	f.Add(pkt, false)
	f.Add(append(make([]byte, 12), append([]byte{8, 0}, pkt...)...), true)
	f.Fuzz(func(t *testing.T, b []byte, eth bool) {
		d, err := ParseFrame(b, eth)
		if err == nil && len(d.Payload) > len(b) {
			t.Fatal("payload longer than frame")
		}
	})
}

func TestParseFrame(t *testing.T) {
	src, dst := netip.MustParseAddrPort("198.51.100.1:6655"), netip.MustParseAddrPort("203.0.113.10:6655")
	pkt := BuildPacket(src, dst, []byte("hello"))
	d, err := ParseFrame(pkt, false)
	if err != nil || d.Src != src || d.Dst != dst || string(d.Payload) != "hello" {
		t.Fatalf("cooked: %+v %v", d, err)
	}
	eth := append([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00}, pkt...)
	if d, err = ParseFrame(eth, true); err != nil || d.Dst != dst {
		t.Fatalf("ethernet: %+v %v", d, err)
	}
	frag := bytes.Clone(pkt)
	frag[6] = 0x20 // MF
	if _, err := ParseFrame(frag, false); err == nil {
		t.Fatal("fragment accepted")
	}
	if _, err := ParseFrame(pkt[:27], false); err == nil {
		t.Fatal("truncated accepted")
	}
}

func TestAckSequenceRequired(t *testing.T) {
	for _, m := range []*Message{
		{Type: TypeStop, ClientID: "a", Address: netip.MustParsePrefix("203.0.113.1/32"), Sequence: 2, AckSeq: 1},
		{Type: TypeAck, ClientID: "a", Sequence: 2, AckSeq: 1},
	} {
		b, err := m.Marshal(testKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(b, testKey); err != nil {
			t.Fatalf("%s with ACK_SEQUENCE: %v", m.Type, err)
		}
		// ACK_SEQUENCE is the last TLV: 2 header and 8 value bytes.
		body := b[:len(b)-32]
		if body[len(body)-10] != tlvAckSequence {
			t.Fatalf("%s: last TLV is %d, not ACK_SEQUENCE", m.Type, body[len(body)-10])
		}
		if _, err := Parse(resign(body[:len(body)-10]), testKey); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s without ACK_SEQUENCE: %v, want malformed", m.Type, err)
		}
	}
}

func TestReleaseAcked(t *testing.T) {
	sent := releases{40, 41}
	for _, c := range []struct {
		ack  uint64
		want bool
	}{{40, true}, {41, true}, {0, false}, {39, false}, {42, false}} {
		if got := sent.acked(&Message{Type: TypeAck, ClientID: "a", Sequence: 50, AckSeq: c.ack}); got != c.want {
			t.Errorf("ack of %d accepted %v, want %v", c.ack, got, c.want)
		}
	}
}
