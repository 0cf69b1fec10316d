package tunnel

import "testing"

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
