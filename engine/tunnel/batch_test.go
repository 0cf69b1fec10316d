package tunnel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/fake"
	"github.com/fieldcon/fieldcon/engine"
)

// batchTUN gives a fake TUN the batch interface, as drivers/linux's
// wireguard-go device has it: a read takes every packet already queued, and
// a write scribbles over the headroom in front of each packet, as a
// virtio-net header would, so a role that kept data there would break.
type batchTUN struct {
	*fake.TUN
}

func (b batchTUN) BatchSize() int { return 8 }

func (b batchTUN) ReadBatch(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := b.TUN.Read(bufs[0][offset:])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	k := 1
	for ; k < len(bufs); k++ {
		select {
		case p := <-b.TUN.In:
			sizes[k] = copy(bufs[k][offset:], p)
			continue
		default:
		}
		break
	}
	return k, nil
}

func (b batchTUN) WriteBatch(bufs [][]byte, offset int) (int, error) {
	if offset < engine.TUNHeadroom {
		return 0, fmt.Errorf("headroom %d", offset)
	}
	for i, p := range bufs {
		for j := range offset {
			p[j] = 0xee
		}
		if _, err := b.TUN.Write(p[offset:]); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

// batchUDP gives a fake socket the batch interface and plays UDP GSO and
// GRO between two of them: a run of equal-sized datagrams to one address
// crosses the fake network as one datagram with a 2-byte segment size in
// front (0: one datagram), and arrives as one message with Segment set.
// Both ends of a lab must use it.
type batchUDP struct {
	engine.UDPConn
	mu  sync.Mutex
	buf []byte
}

func (b *batchUDP) ReadBatch(ms []engine.UDPMessage) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil {
		b.buf = make([]byte, 2+maxIPPacket)
	}
	n, from, err := b.UDPConn.ReadFromUDPAddrPort(b.buf)
	if err != nil {
		return 0, err
	}
	if n < 2 {
		return 0, fmt.Errorf("batchUDP: %d-byte frame", n)
	}
	ms[0].N = copy(ms[0].Buf, b.buf[2:n])
	ms[0].Addr, ms[0].Segment = from, int(binary.BigEndian.Uint16(b.buf))
	return 1, nil
}

func (b *batchUDP) WriteBatch(ms []engine.UDPMessage) (int, error) {
	for i := 0; i < len(ms); {
		j, size := i+1, len(ms[i].Buf)
		for j < len(ms) && ms[j].Addr == ms[i].Addr && len(ms[j].Buf) == size {
			j++
		}
		frame := make([]byte, 2, 2+(j-i)*size)
		if j-i > 1 {
			binary.BigEndian.PutUint16(frame, uint16(size))
		}
		for _, m := range ms[i:j] {
			frame = append(frame, m.Buf...)
		}
		if _, err := b.UDPConn.WriteToUDPAddrPort(frame, ms[i].Addr); err != nil {
			return i, err
		}
		i = j
	}
	return len(ms), nil
}

// A single write or read on a batched socket keeps the framing.
func (b *batchUDP) WriteToUDPAddrPort(p []byte, to netip.AddrPort) (int, error) {
	if _, err := b.WriteBatch([]engine.UDPMessage{{Buf: p, Addr: to}}); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (b *batchUDP) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	ms := []engine.UDPMessage{{Buf: p}}
	if _, err := b.ReadBatch(ms); err != nil {
		return 0, netip.AddrPort{}, err
	}
	if ms[0].Segment != 0 {
		return 0, netip.AddrPort{}, fmt.Errorf("batchUDP: coalesced datagrams read one at a time")
	}
	return ms[0].N, ms[0].Addr, nil
}

// TestBatchPathSplitsCoalescedDatagrams sends a burst through a batched
// lab: every packet comes out once, whole and in order, although the
// datagrams crossed as coalesced runs and the TUN writes clobbered the
// headroom.
func TestBatchPathSplitsCoalescedDatagrams(t *testing.T) {
	checkLeaks(t)
	l := startLabOpts(t, labOpts{idle: 30 * time.Second, batch: true})
	l.waitEvent(t, "server", engine.KindTunnelUp, 5*time.Second)
	l.waitEvent(t, "client", engine.KindTunnelUp, 5*time.Second)
	cin, sout := l.client.tun(t, "tn0").In, l.server.tun(t, "tns0").Out
	var want [][]byte
	for i := range 6 {
		// Equal sizes, so the client's batch goes as one run.
		want = append(want, ipv4("198.19.0.2", "198.51.100.10", fmt.Sprintf("burst %02d", i)))
	}
	for _, p := range want {
		cin <- p
	}
	for i, w := range want {
		if got := recvPacket(t, sout); string(got) != string(w) {
			t.Fatalf("packet %d out of the server: %q, want %q", i, got, w)
		}
	}
	sin, cout := l.server.tun(t, "tns0").In, l.client.tun(t, "tn0").Out
	for i := range want {
		want[i] = ipv4("198.51.100.10", "198.19.0.2", fmt.Sprintf("back %02d", i))
		sin <- want[i]
	}
	for i, w := range want {
		if got := recvPacket(t, cout); string(got) != string(w) {
			t.Fatalf("packet %d out of the client: %q, want %q", i, got, w)
		}
	}
	if d := l.srv.Drops(); d[DropBadAuth]+d[DropReplayed]+d[DropMalformed]+d[DropTruncated] != 0 {
		t.Errorf("server drops: %v", d)
	}
	if d := l.cli.Drops(); d[DropBadAuth]+d[DropReplayed]+d[DropMalformed]+d[DropTruncated] != 0 {
		t.Errorf("client drops: %v", d)
	}
}

// TestSealInPlace: sealing where the packet lies gives the same message as
// Seal, and Open gives the packet back.
func TestSealInPlace(t *testing.T) {
	a, b, _ := pair(t)
	pt := []byte("an IP packet, more or less")
	buf := make([]byte, transportHeaderLen, transportHeaderLen+len(pt)+TransportOverhead)
	buf = append(buf, pt...)
	msg := a.SealInPlace(buf, TypeData)
	if len(msg) != len(pt)+TransportOverhead || &msg[0] != &buf[0] {
		t.Fatalf("sealed %d bytes at %p, want %d in place", len(msg), &msg[0], len(pt)+TransportOverhead)
	}
	tr, err := ParseTransport(msg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Open(nil, tr)
	if err != nil || string(got) != string(pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// The same counter again is a replay.
	if _, err := b.Open(nil, tr); err != ErrReplayed {
		t.Fatalf("second Open: %v, want ErrReplayed", err)
	}
}

// coalescedConn returns one message of three coalesced datagrams, as a
// socket with UDP_GRO does, then an empty datagram.
type coalescedConn struct {
	engine.UDPConn
	calls int
}

func (c *coalescedConn) ReadBatch(ms []engine.UDPMessage) (int, error) {
	c.calls++
	from := netip.MustParseAddrPort("203.0.113.1:51820")
	if c.calls == 1 {
		ms[0].N = copy(ms[0].Buf, "aaaabbbbcc")
		ms[0].Addr, ms[0].Segment = from, 4
		ms[1].N, ms[1].Addr, ms[1].Segment = copy(ms[1].Buf, "dd"), from, 0
		return 2, nil
	}
	ms[0].N, ms[0].Addr, ms[0].Segment = 0, from, 0
	return 1, nil
}

func (c *coalescedConn) WriteBatch(ms []engine.UDPMessage) (int, error) { return len(ms), nil }

func TestUDPReaderSplitsCoalescedDatagrams(t *testing.T) {
	r := newUDPReader(&coalescedConn{})
	n, err := r.read()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := range n {
		b, from := r.datagram(i)
		if from.Port() != 51820 {
			t.Errorf("datagram %d from %s", i, from)
		}
		got = append(got, string(b))
	}
	if fmt.Sprint(got) != "[aaaa bbbb cc dd]" {
		t.Errorf("datagrams %q, want [aaaa bbbb cc dd]", got)
	}
	if n, err := r.read(); err != nil || n != 1 {
		t.Fatalf("empty datagram: %d, %v; want 1 datagram", n, err)
	}
	if b, _ := r.datagram(0); len(b) != 0 {
		t.Errorf("empty datagram read as %q", b)
	}
}
