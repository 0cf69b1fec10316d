package trace

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/fieldcon/fieldcon/engine"
)

// Session is one trace: captures on any number of interfaces of any number of
// nodes feeding one Ring. Captures start and stop per interface.
type Session struct {
	ring *Ring
	opt  DecoderOptions

	mu   sync.Mutex
	caps map[capKey]*capture
	errs []error
}

// capKey names a capture: node and interface.
type capKey struct{ node, iface string }

type capture struct {
	ifc    Interface
	conn   engine.PacketConn
	cancel context.CancelFunc
	done   chan struct{}

	packets, bytes atomic.Uint64
}

// InterfaceStats counts what one capture saw.
type InterfaceStats struct {
	Interface
	Packets uint64
	Bytes   uint64 // on the wire
}

// SessionConfig sizes a session's ring and tells its decoders the ports of
// fieldcon's protocols.
type SessionConfig struct {
	Ring    RingConfig
	Decoder DecoderOptions
}

// NewSession returns a session with an empty ring.
func NewSession(cfg SessionConfig) *Session {
	return &Session{ring: NewRing(cfg.Ring), opt: cfg.Decoder, caps: map[capKey]*capture{}}
}

// Ring is the session's ring buffer.
func (s *Session) Ring() *Ring { return s.ring }

// snapLen is the most bytes read of one frame: a jumbo frame plus headroom.
const snapLen = 65536

// pollInterval bounds how long a capture goroutine waits in a read before
// it looks at its context again.
const pollInterval = 250 * time.Millisecond

// Start opens an AF_PACKET socket for every EtherType (engine.EthAll) on
// iface of host and captures into the ring until Stop, StopAll or ctx ends.
// The socket sees what the node's own roles send and receive as well, since
// those frames cross the interface anyway. Starting an interface already
// captured does nothing.
func (s *Session) Start(ctx context.Context, host engine.Host, node, iface string) error {
	key := capKey{node, iface}
	s.mu.Lock()
	_, ok := s.caps[key]
	s.mu.Unlock()
	if ok {
		return nil
	}
	conn, err := host.OpenPacket(iface, engine.PacketOptions{Protocol: engine.EthAll})
	if err != nil {
		return fmt.Errorf("trace %s %s: %w", node, iface, err)
	}
	ifc := Interface{Node: node, Name: iface, LinkType: layers.LinkType(conn.LinkType())}
	s.mu.Lock()
	if _, ok := s.caps[key]; ok { // started meanwhile
		s.mu.Unlock()
		conn.Close()
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	c := &capture{ifc: ifc, conn: conn, cancel: cancel, done: make(chan struct{})}
	s.caps[key] = c
	s.mu.Unlock()
	idx := s.ring.AddInterface(ifc)
	go s.run(cctx, host, c, idx)
	return nil
}

// StartAll captures on every interface of host except loopback. Calling it
// again starts captures on interfaces that appeared since (a TUN device a
// tunnel role created); interfaces already captured are left alone.
func (s *Session) StartAll(ctx context.Context, host engine.Host, node string) error {
	links, err := host.Links()
	if err != nil {
		return fmt.Errorf("trace %s: list links: %w", node, err)
	}
	var errs []error
	for _, l := range links {
		if l.Kind == "loopback" || l.Name == "lo" {
			continue
		}
		if err := s.Start(ctx, host, node, l.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Session) run(ctx context.Context, host engine.Host, c *capture, idx uint16) {
	ifc := c.ifc
	defer close(c.done)
	defer c.conn.Close()
	dec := NewDecoder(s.opt)
	buf := make([]byte, snapLen)
	var sum Summary
	for ctx.Err() == nil {
		if err := c.conn.SetReadDeadline(time.Now().Add(pollInterval)); err != nil {
			s.end(c, host, fmt.Errorf("trace %s: %w", ifc, err))
			return
		}
		n, info, err := c.conn.ReadPacket(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.end(c, host, fmt.Errorf("trace %s: read: %w", ifc, err))
			}
			return
		}
		t := info.Time
		if t.IsZero() {
			t = time.Now()
		}
		sum = Summary{Time: t.UnixNano(), Iface: idx, Dir: uint8(info.Direction), Len: uint32(n)}
		if info.Len > n {
			sum.Len = uint32(info.Len)
			sum.Flags = Truncated
		}
		dec.Decode(ifc.LinkType, buf[:n], &sum)
		s.ring.Add(sum, buf[:n])
		c.packets.Add(1)
		c.bytes.Add(uint64(sum.Len))
	}
}

// end removes a capture that stopped by itself. An interface that was
// deleted (a TUN device closed by its role) ends its capture quietly, and a
// later StartAll captures it again if it comes back; other errors are kept
// for Err.
func (s *Session) end(c *capture, host engine.Host, err error) {
	s.mu.Lock()
	key := capKey{c.ifc.Node, c.ifc.Name}
	if s.caps[key] == c {
		delete(s.caps, key)
	}
	s.mu.Unlock()
	if _, lerr := host.LinkByName(c.ifc.Name); lerr != nil {
		return
	}
	s.fail(err)
}

func (s *Session) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

// Err returns the errors captures stopped with (nil when none did).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

// Stop stops capturing on one interface and waits for its goroutine.
func (s *Session) Stop(node, iface string) {
	s.mu.Lock()
	c, ok := s.caps[capKey{node, iface}]
	delete(s.caps, capKey{node, iface})
	s.mu.Unlock()
	if ok {
		c.stop()
	}
}

// stop ends a capture at once: closing the socket ends a blocked read
// rather than waiting for the poll interval.
func (c *capture) stop() {
	c.cancel()
	c.conn.Close()
	<-c.done
}

// StopAll stops every capture and waits for them.
func (s *Session) StopAll() {
	s.mu.Lock()
	caps := s.caps
	s.caps = map[capKey]*capture{}
	s.mu.Unlock()
	for _, c := range caps {
		c.cancel()
		c.conn.Close()
	}
	for _, c := range caps {
		<-c.done
	}
}

// Stats counts packets and bytes per running capture, sorted like Capturing.
func (s *Session) Stats() []InterfaceStats {
	s.mu.Lock()
	out := make([]InterfaceStats, 0, len(s.caps))
	for _, c := range s.caps {
		out = append(out, InterfaceStats{Interface: c.ifc, Packets: c.packets.Load(), Bytes: c.bytes.Load()})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Capturing lists the interfaces being captured, sorted by node and name.
func (s *Session) Capturing() []Interface {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Interface, 0, len(s.caps))
	for _, c := range s.caps {
		out = append(out, c.ifc)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Node != out[j].Node {
			return out[i].Node < out[j].Node
		}
		return out[i].Name < out[j].Name
	})
	return out
}
