package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/fieldcon/fieldcon/engine"
)

// udpConn is a UDP socket of the namespace: a *net.UDPConn (deadlines,
// buffer sizes, one datagram per call) that also moves batches of datagrams
// with recvmmsg(2)/sendmmsg(2), through golang.org/x/net's PacketConn, which
// waits on Go's poller like the *net.UDPConn itself. Where the kernel can,
// a run of equal-sized datagrams to one address leaves as one UDP GSO send
// (UDP_SEGMENT, Linux 4.18) and the datagrams of one flow arrive as one
// coalesced read (UDP_GRO, Linux 5.0): the stack, the veths and the
// forwarding namespaces in between handle one skb instead of dozens.
type udpConn struct {
	*net.UDPConn
	// batch is an ipv4.PacketConn or ipv6.PacketConn: both take
	// []socket.Message (ipv4.Message and ipv6.Message are the same type).
	batch interface {
		ReadBatch(ms []ipv4.Message, flags int) (int, error)
		WriteBatch(ms []ipv4.Message, flags int) (int, error)
	}

	rmu    sync.Mutex
	rmsgs  []ipv4.Message
	groSet bool // UDP_GRO asked for (at the first ReadBatch)

	wmu   sync.Mutex
	gso   bool // UDP_SEGMENT works; cleared when a send says it does not
	wmsgs []ipv4.Message
	waddr []net.UDPAddr // one per message, reused: no allocation per send
	woob  [][]byte      // one UDP_SEGMENT control message per message, reused likewise
	wiov  [][]byte      // the iovecs of every message, back to back
	wseg  []int         // datagrams in each message
}

var _ engine.BatchUDPConn = (*udpConn)(nil)

// Limits of one GSO send (udp_send_skb in net/ipv4/udp.c): at most
// UDP_MAX_SEGMENTS datagrams (64 until Linux 6.11), and an IP packet's worth
// of payload (65535 less the IPv4 and UDP headers).
const (
	gsoMaxSegments = 64
	gsoMaxPayload  = 65535 - 20 - 8
)

func newUDPConn(uc *net.UDPConn, batch interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}) *udpConn {
	c := &udpConn{UDPConn: uc, batch: batch}
	// The kernel knows UDP_SEGMENT when it can read it back.
	if rc, err := uc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
			c.gso = err == nil
		})
	}
	return c
}

// ReadBatch implements engine.BatchUDPConn with one recvmmsg(2).
func (c *udpConn) ReadBatch(ms []engine.UDPMessage) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if !c.groSet {
		// Only now: a socket read one datagram at a time must not get
		// several coalesced into one. A kernel without UDP_GRO simply
		// delivers them one by one.
		c.groSet = true
		if rc, err := c.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) })
		}
	}
	for len(c.rmsgs) < len(ms) {
		c.rmsgs = append(c.rmsgs, ipv4.Message{Buffers: make([][]byte, 1), OOB: make([]byte, unix.CmsgSpace(4))})
	}
	for i := range ms {
		c.rmsgs[i].Buffers[0] = ms[i].Buf
		c.rmsgs[i].Addr, c.rmsgs[i].N, c.rmsgs[i].NN = nil, 0, 0
	}
	n, err := c.batch.ReadBatch(c.rmsgs[:len(ms)], 0)
	n = max(n, 0) // x/net says -1 with an error
	for i := range n {
		m := &c.rmsgs[i]
		ms[i].N, ms[i].Addr, ms[i].Segment = m.N, netip.AddrPort{}, groSegment(m.OOB[:m.NN])
		if ms[i].Segment >= m.N {
			ms[i].Segment = 0 // one datagram after all
		}
		if a, ok := m.Addr.(*net.UDPAddr); ok {
			// Unmap: an IPv4 peer must compare equal to what
			// ReadFromUDPAddrPort returns for it.
			ms[i].Addr = netip.AddrPortFrom(a.AddrPort().Addr().Unmap(), uint16(a.Port))
		}
	}
	if err != nil {
		return n, fmt.Errorf("recvmmsg on %s: %w", c.LocalAddr(), err)
	}
	return n, nil
}

// groSegment reads the UDP_GRO control message (the coalesced datagrams'
// size, an int) from oob; 0 when there is none.
func groSegment(oob []byte) int {
	for len(oob) >= unix.CmsgLen(0) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.CmsgLen(0) || l > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(binary.NativeEndian.Uint32(oob[unix.CmsgLen(0):]))
		}
		oob = oob[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(oob)):]
	}
	return 0
}

// WriteBatch implements engine.BatchUDPConn: sendmmsg(2), each message a
// GSO run of datagrams to one address when the kernel can, until every
// datagram is queued.
func (c *udpConn) WriteBatch(ms []engine.UDPMessage) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	sent := 0
	for sent < len(ms) {
		n, err := c.send(ms[sent:])
		sent += n
		if err != nil && c.gso && gsoRefused(err) {
			// The route's device cannot segment or checksum for us
			// (udp_send_skb says EIO): send datagram by datagram.
			c.gso = false
			continue
		}
		if err != nil {
			return sent, fmt.Errorf("sendmmsg on %s: %w", c.LocalAddr(), err)
		}
		if n == 0 {
			return sent, fmt.Errorf("sendmmsg on %s: no datagram sent", c.LocalAddr())
		}
	}
	return sent, nil
}

func gsoRefused(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP)
}

// send makes one sendmmsg call for ms and returns how many datagrams of
// ms the kernel took.
func (c *udpConn) send(ms []engine.UDPMessage) (int, error) {
	c.wmsgs, c.wiov, c.wseg = c.wmsgs[:0], c.wiov[:0], c.wseg[:0]
	for i := 0; i < len(ms); {
		// A run: same address, same size, the last one possibly
		// shorter, within the kernel's limits.
		j, size, total := i+1, len(ms[i].Buf), len(ms[i].Buf)
		if c.gso && size > 0 {
			for j < len(ms) && j-i < gsoMaxSegments && ms[j].Addr == ms[i].Addr &&
				len(ms[j].Buf) > 0 && len(ms[j].Buf) <= size && total+len(ms[j].Buf) <= gsoMaxPayload {
				total += len(ms[j].Buf)
				j++
				if len(ms[j-1].Buf) < size {
					break
				}
			}
		}
		start := len(c.wiov)
		for k := i; k < j; k++ {
			c.wiov = append(c.wiov, ms[k].Buf)
		}
		k := len(c.wmsgs)
		if k == len(c.waddr) {
			c.waddr = append(c.waddr, net.UDPAddr{IP: make(net.IP, 0, net.IPv6len)})
			c.woob = append(c.woob, make([]byte, unix.CmsgSpace(2)))
		}
		a := &c.waddr[k]
		ip := ms[i].Addr.Addr()
		if ip.Is4() {
			b := ip.As4()
			a.IP = append(a.IP[:0], b[:]...)
		} else {
			b := ip.As16()
			a.IP = append(a.IP[:0], b[:]...)
		}
		a.Port, a.Zone = int(ms[i].Addr.Port()), ip.Zone()
		m := ipv4.Message{Buffers: c.wiov[start:len(c.wiov):len(c.wiov)], Addr: a}
		if j-i > 1 {
			m.OOB = putSegmentCmsg(c.woob[k], size)
		}
		c.wmsgs = append(c.wmsgs, m)
		c.wseg = append(c.wseg, j-i)
		i = j
	}
	n, err := c.batch.WriteBatch(c.wmsgs, 0)
	n = max(n, 0)
	datagrams := 0
	for _, s := range c.wseg[:n] {
		datagrams += s
	}
	return datagrams, err
}

// putSegmentCmsg writes the UDP_SEGMENT control message (the datagrams'
// size) into b, unix.CmsgSpace(2) bytes, and returns it.
func putSegmentCmsg(b []byte, size int) []byte {
	b = b[:unix.CmsgSpace(2)]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}
