package tunnel

import (
	"net/netip"

	"github.com/fieldcon/fieldcon/engine"
)

// The data path moves packets in batches when the host's TUN and UDP socket
// offer it (engine.BatchTUN, engine.BatchUDPConn: one read of the TUN gives
// a whole GSO super-packet's segments, one recvmmsg/sendmmsg many
// datagrams, one write of the TUN a GRO-merged super-packet), and one at a
// time otherwise (drivers/fake). Either way a packet is sealed where the
// TUN read put it, behind room left for the transport header, and opened
// straight into the buffer the TUN write takes, behind room for the
// driver's virtio-net header: no copies of our own.

// maxIPPacket is the largest IP packet a TUN read can yield.
const maxIPPacket = 65535

// bufLen holds a maximal IP packet with a transport header in front and
// an AEAD tag behind it.
const bufLen = maxIPPacket + TransportOverhead

// tunReader reads packets from the TUN into buffers that keep
// transportHeaderLen bytes free in front of each, for SealInPlace.
type tunReader struct {
	tun   engine.TUN
	bt    engine.BatchTUN // nil: one Read per packet
	bufs  [][]byte
	sizes []int
}

func newTUNReader(t engine.TUN) *tunReader {
	r := &tunReader{tun: t}
	n := 1
	if bt, ok := engine.AsBatchTUN(t); ok {
		r.bt, n = bt, max(bt.BatchSize(), 1)
	}
	r.bufs, r.sizes = make([][]byte, n), make([]int, n)
	for i := range r.bufs {
		r.bufs[i] = make([]byte, bufLen)
	}
	return r
}

// read reads one or more packets; packet(i) returns the i-th.
func (r *tunReader) read() (int, error) {
	if r.bt != nil {
		return r.bt.ReadBatch(r.bufs, r.sizes, transportHeaderLen)
	}
	n, err := r.tun.Read(r.bufs[0][transportHeaderLen : transportHeaderLen+maxIPPacket])
	if err != nil {
		return 0, err
	}
	r.sizes[0] = n
	return 1, nil
}

// packet is the i-th packet read, with the header room in front (the
// buffer SealInPlace takes); the IP packet is packet(i)[transportHeaderLen:].
func (r *tunReader) packet(i int) []byte {
	return r.bufs[i][:transportHeaderLen+r.sizes[i]]
}

// tunWriter gathers opened packets and writes them to the TUN in one batch
// at flush (or at once, one by one, without a batch TUN).
type tunWriter struct {
	tun  engine.TUN
	bt   engine.BatchTUN
	bufs [][]byte // backing buffers, headroom + packet
	out  [][]byte // packets pending, as WriteBatch takes them
	err  error    // the last write error, for the caller to log
}

func newTUNWriter(t engine.TUN) *tunWriter {
	w := &tunWriter{tun: t}
	n := 1
	if bt, ok := engine.AsBatchTUN(t); ok {
		w.bt, n = bt, max(bt.BatchSize(), 1)
	}
	w.bufs, w.out = make([][]byte, n), make([][]byte, 0, n)
	for i := range w.bufs {
		// GRO merges a flow's segments into its first buffer: give
		// each the capacity of a whole super-packet.
		w.bufs[i] = make([]byte, engine.TUNHeadroom+maxIPPacket)
	}
	return w
}

// next is where to open the next packet into (append to it).
func (w *tunWriter) next() []byte {
	return w.bufs[len(w.out)][engine.TUNHeadroom:engine.TUNHeadroom]
}

// push queues pt, which the caller opened into next().
func (w *tunWriter) push(pt []byte) {
	if w.bt == nil {
		if _, err := w.tun.Write(pt); err != nil {
			w.err = err
		}
		return
	}
	w.out = append(w.out, w.bufs[len(w.out)][:engine.TUNHeadroom+len(pt)])
	if len(w.out) == cap(w.out) {
		w.flush()
	}
}

// flush writes the packets pending.
func (w *tunWriter) flush() {
	if len(w.out) == 0 {
		return
	}
	if _, err := w.bt.WriteBatch(w.out, engine.TUNHeadroom); err != nil {
		w.err = err
	}
	w.out = w.out[:0]
}

// udpReader receives datagrams, a batch at a time when the socket can.
type udpReader struct {
	conn engine.UDPConn
	bc   engine.BatchUDPConn
	msgs []engine.UDPMessage
	dgs  []datagram // the last read, coalesced messages split up
	// want is how many messages the next read asks for: twice what the
	// last one got, at least minBatch. Each slot offered costs the
	// socket layer work on every read, which a lone echo would pay.
	want int
}

// minBatch is the smallest read offered to a batch socket.
const minBatch = 4

type datagram struct {
	b    []byte
	from netip.AddrPort
}

// udpBatch is how many messages one recvmmsg/sendmmsg moves at most: about
// one TUN read's worth (a 64 KiB super-packet in MTU-sized segments).
const udpBatch = 64

func newUDPReader(c engine.UDPConn) *udpReader {
	r := &udpReader{conn: c}
	n := 1
	if bc, ok := c.(engine.BatchUDPConn); ok {
		r.bc, n = bc, udpBatch
	}
	r.msgs = make([]engine.UDPMessage, n)
	for i := range r.msgs {
		// 64 KiB: a message may be several datagrams coalesced (GRO).
		r.msgs[i].Buf = make([]byte, bufLen)
	}
	return r
}

// read receives one or more datagrams; datagram(i) returns the i-th.
func (r *udpReader) read() (int, error) {
	r.dgs = r.dgs[:0]
	if r.bc == nil {
		n, from, err := r.conn.ReadFromUDPAddrPort(r.msgs[0].Buf)
		if err != nil {
			return 0, err
		}
		r.dgs = append(r.dgs, datagram{r.msgs[0].Buf[:n], from})
		return 1, nil
	}
	n, err := r.bc.ReadBatch(r.msgs[:max(r.want, minBatch)])
	r.want = min(max(2*n, minBatch), len(r.msgs))
	for _, m := range r.msgs[:max(n, 0)] {
		b, seg := m.Buf[:m.N], m.Segment
		if seg <= 0 {
			seg = len(b)
		}
		for len(b) > 0 {
			k := min(seg, len(b))
			r.dgs = append(r.dgs, datagram{b[:k], m.Addr})
			b = b[k:]
		}
		if m.N == 0 {
			r.dgs = append(r.dgs, datagram{b, m.Addr}) // an empty datagram is one too
		}
	}
	return len(r.dgs), err
}

// datagram is the i-th datagram read.
func (r *udpReader) datagram(i int) ([]byte, netip.AddrPort) {
	return r.dgs[i].b, r.dgs[i].from
}

// udpWriter sends datagrams, a batch at a time when the socket can. The
// buffers it is given must stay untouched until flush.
type udpWriter struct {
	conn engine.UDPConn
	bc   engine.BatchUDPConn
	msgs []engine.UDPMessage
	err  error
}

func newUDPWriter(c engine.UDPConn) *udpWriter {
	w := &udpWriter{conn: c}
	if bc, ok := c.(engine.BatchUDPConn); ok {
		w.bc, w.msgs = bc, make([]engine.UDPMessage, 0, udpBatch)
	}
	return w
}

func (w *udpWriter) send(b []byte, to netip.AddrPort) {
	if w.bc == nil {
		if _, err := w.conn.WriteToUDPAddrPort(b, to); err != nil {
			w.err = err
		}
		return
	}
	w.msgs = append(w.msgs, engine.UDPMessage{Buf: b, Addr: to})
	if len(w.msgs) == cap(w.msgs) {
		w.flush()
	}
}

func (w *udpWriter) flush() {
	switch len(w.msgs) {
	case 0:
		return
	case 1:
		// A lone datagram (an echo, an ACK): sendto is the shorter way.
		if _, err := w.conn.WriteToUDPAddrPort(w.msgs[0].Buf, w.msgs[0].Addr); err != nil {
			w.err = err
		}
	default:
		if _, err := w.bc.WriteBatch(w.msgs); err != nil {
			w.err = err
		}
	}
	clear(w.msgs) // drop the references to the buffers
	w.msgs = w.msgs[:0]
}
