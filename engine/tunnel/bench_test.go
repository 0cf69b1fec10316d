package tunnel

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/flynn/noise"
)

// BenchmarkSealOpen is the per-packet crypto of the data path: seal on one
// side, parse and open (with the replay window) on the other, for a
// full-size packet of the default MTU.
func BenchmarkSealOpen(b *testing.B) {
	cs, ss, _ := pair(b)
	pkt := make([]byte, DefaultMTU)
	out := make([]byte, 0, DefaultMTU+TransportOverhead)
	dst := make([]byte, 0, DefaultMTU)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		out = cs.Seal(out[:0], TypeData, pkt)
		tr, err := ParseTransport(out)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ss.Open(dst[:0], tr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshake is one establishment: request, responder checks and
// Noise IK on both sides.
func BenchmarkHandshake(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		pair(b)
	}
}

// BenchmarkSealInPlaceOpen is the batched data path's per-packet work: seal
// where the TUN read put the packet, parse, and open into the TUN write's
// buffer. Compare with BenchmarkSealOpen.
func BenchmarkSealInPlaceOpen(b *testing.B) {
	cs, ss, _ := pair(b)
	buf := make([]byte, transportHeaderLen+DefaultMTU, DefaultMTU+TransportOverhead)
	dst := make([]byte, 0, DefaultMTU)
	b.SetBytes(DefaultMTU)
	b.ReportAllocs()
	for b.Loop() {
		msg := cs.SealInPlace(buf, TypeData)
		tr, err := ParseTransport(msg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ss.Open(dst[:0], tr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerHandshake is the server's side of an establishment as the
// UDP loop runs it (Server.handle), with a store on disk: the responder's
// checks, Noise IK, the replay check, what is stored before the response
// goes out, and the response. "new" creates a tunnel (the binding is
// stored); "rekey" is a known client's periodic new handshake.
func BenchmarkServerHandshake(b *testing.B) {
	for _, rekey := range []bool{false, true} {
		name := map[bool]string{false: "new", true: "rekey"}[rekey]
		b.Run(name, func(b *testing.B) {
			st, err := store.Open(filepath.Join(b.TempDir(), "server.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			ck, _ := GenerateKey()
			s, resp := newBareServer(b, PublicKey(ck.Public))
			s.env.Store = st
			s.pool, _ = NewPool(netip.MustParsePrefix("198.19.0.0/16"))
			keys := make([]noise.DHKey, b.N)
			for i := range keys {
				keys[i] = ck
				if !rekey {
					keys[i], _ = GenerateKey()
					s.allowed[PublicKey(keys[i].Public)] = fmt.Sprintf("c%d", i)
				}
			}
			if rekey {
				req, _, _ := Initiate(ck, PublicKey(resp.static.Public), 1, time.Now(), nil)
				s.handle(req, netip.MustParseAddrPort("203.0.113.9:4000"), time.Now(), resp, nil)
			}
			// Requests are built before the clock starts: their DH is the
			// client's work, not the server's.
			reqs := make([][]byte, b.N)
			t0 := time.Now()
			for i := range reqs {
				reqs[i], _, _ = Initiate(keys[i], PublicKey(resp.static.Public), uint32(i+2), t0.Add(time.Duration(i+1)*time.Millisecond), nil)
			}
			from := netip.MustParseAddrPort("203.0.113.9:4000")
			b.ReportAllocs()
			b.ResetTimer()
			for i := range reqs {
				// The loop's clock says 100 ms apart: within any
				// per-source rate, so every handshake completes.
				s.handle(reqs[i], from, t0.Add(time.Duration(i)*100*time.Millisecond), resp, nil)
			}
			b.StopTimer()
			want := b.N
			if rekey {
				want = 1
			}
			if n := len(s.Tunnels()); n != want {
				b.Fatalf("%d tunnels, want %d", n, want)
			}
		})
	}
}
