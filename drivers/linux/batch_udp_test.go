package linux

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/fieldcon/fieldcon/engine"
)

// segmentsBatch stands in for x/net's PacketConn without allocating: it
// keeps the UDP_SEGMENT size of each message of the last send.
type segmentsBatch struct{ seg []int }

func (s *segmentsBatch) ReadBatch(ms []ipv4.Message, flags int) (int, error) { return 0, nil }

func (s *segmentsBatch) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	s.seg = s.seg[:0]
	for _, m := range ms {
		seg := 0
		if len(m.OOB) > 0 {
			seg = int(binary.NativeEndian.Uint16(m.OOB[unix.CmsgLen(0):]))
		}
		s.seg = append(s.seg, seg)
	}
	return len(ms), nil
}

// TestUDPBatchSendReusesControlMessages: once a socket has sent a batch of
// a given shape, sending it again allocates nothing, the UDP_SEGMENT
// control messages included, and each message still carries its own size.
func TestUDPBatchSendReusesControlMessages(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.2:4000")
	b := netip.MustParseAddrPort("192.0.2.3:4000")
	var ms []engine.UDPMessage
	for range 3 {
		ms = append(ms, engine.UDPMessage{Buf: make([]byte, 1400), Addr: a})
	}
	for range 2 {
		ms = append(ms, engine.UDPMessage{Buf: make([]byte, 900), Addr: b})
	}
	rec := &segmentsBatch{seg: make([]int, 0, 8)}
	c := &udpConn{batch: rec, gso: true}
	if n, err := c.WriteBatch(ms); err != nil || n != len(ms) {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := c.WriteBatch(ms); err != nil || n != len(ms) {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("WriteBatch allocates %.0f times per call, want 0", allocs)
	}
	if len(rec.seg) != 2 || rec.seg[0] != 1400 || rec.seg[1] != 900 {
		t.Errorf("segment sizes %v, want [1400 900]", rec.seg)
	}
}
