package dhcp

import (
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// ServerStats counts what a running server did with the messages it read:
// enough to tell, when a load generator reports unanswered requests,
// whether they never reached the server (compare Received with what was
// sent, and the kernel's UdpRcvbufErrors), were answered with silence or a
// NAK, or were answered late (MaxReplyDelay beyond the generator's drop
// time, typically a slow fsync: MaxCommit).
type ServerStats struct {
	Received    int64 // datagrams read from the server's sockets
	Undecodable int64
	Discovers   int64
	Requests    int64
	Offers      int64
	Acks        int64
	Naks        int64
	// Silent are messages Handle chose not to answer (another server's
	// selection, no pool for the link, pool exhausted, ...), SilentWhy the
	// same by reason (Reply.Silence). Declines and releases, which have no
	// answer, are counted only when they were not applied.
	Silent    int64
	SilentWhy map[string]int64
	// SendErrors are replies the socket refused.
	SendErrors int64
	// StoreErrors are replies withheld because their lease could not be
	// stored.
	StoreErrors int64
	Commits     int64 // store transactions (each one fsync)
	// MaxBatch is the most replies one fsync covered.
	MaxBatch int
	// MaxCommit is the longest store transaction; MaxReplyDelay the longest
	// time from reading a message to sending its reply.
	MaxCommit, MaxReplyDelay time.Duration
	// SlowReplies are replies sent more than a second after their request.
	SlowReplies int64
}

// serverCounters guards ServerStats for the role's goroutines.
type serverCounters struct {
	mu sync.Mutex
	s  ServerStats
}

func (c *serverCounters) update(f func(s *ServerStats)) {
	c.mu.Lock()
	f(&c.s)
	c.mu.Unlock()
}

func (c *serverCounters) snapshot() ServerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.SilentWhy = make(map[string]int64, len(c.s.SilentWhy))
	for k, v := range c.s.SilentWhy {
		s.SilentWhy[k] = v
	}
	return s
}

// received counts a decoded request and the reply Handle chose.
func (c *serverCounters) received(req *dhcpv4.DHCPv4, reply Reply) {
	c.update(func(s *ServerStats) {
		s.Received++
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			s.Discovers++
		case dhcpv4.MessageTypeRequest:
			s.Requests++
		}
		if reply.Msg == nil && reply.Silence != "" {
			s.Silent++
			if s.SilentWhy == nil {
				s.SilentWhy = map[string]int64{}
			}
			s.SilentWhy[reply.Silence]++
		}
	})
}

// sent counts a reply that left, read at rx.
func (c *serverCounters) sent(m *dhcpv4.DHCPv4, rx time.Time, err error) {
	d := time.Since(rx)
	c.update(func(s *ServerStats) {
		if err != nil {
			s.SendErrors++
			return
		}
		switch m.MessageType() {
		case dhcpv4.MessageTypeOffer:
			s.Offers++
		case dhcpv4.MessageTypeAck:
			s.Acks++
		case dhcpv4.MessageTypeNak:
			s.Naks++
		}
		s.MaxReplyDelay = max(s.MaxReplyDelay, d)
		if d > time.Second {
			s.SlowReplies++
		}
	})
}

// committed counts one store transaction of n replies that took d.
func (c *serverCounters) committed(n int, d time.Duration, err error) {
	c.update(func(s *ServerStats) {
		s.Commits++
		s.MaxBatch = max(s.MaxBatch, n)
		s.MaxCommit = max(s.MaxCommit, d)
		if err != nil {
			s.StoreErrors += int64(n)
		}
	})
}
