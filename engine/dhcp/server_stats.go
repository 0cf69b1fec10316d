package dhcp

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/engine/store"
)

// ServerStats counts what a running server did with the messages it read:
// enough to tell, when a load generator reports unanswered requests,
// whether they never reached the server (compare Received with what was
// sent, and the kernel's UdpRcvbufErrors), were answered with silence or a
// NAK, or were answered late (MaxReplyDelay beyond the generator's drop
// time, typically a slow fsync: MaxCommit).
type ServerStats struct {
	Received int64 `json:"received"` // datagrams read from the server's sockets
	// Undecodable are datagrams that are not DHCP messages at all (the
	// codec refused them); Malformed are decoded messages a server cannot
	// act on: a BOOTREPLY or no chaddr, no or an unknown message type, a
	// REQUEST naming no address (also counted in Silent, by reason).
	Undecodable int64 `json:"undecodable"`
	Malformed   int64 `json:"malformed"`
	Discovers   int64 `json:"discovers"`
	Requests    int64 `json:"requests"`
	Offers      int64 `json:"offers"`
	Acks        int64 `json:"acks"`
	Naks        int64 `json:"naks"`
	// Silent are messages Handle chose not to answer (another server's
	// selection, no pool for the link, pool exhausted, ...), SilentWhy the
	// same by reason (Reply.Silence). Declines and releases, which have no
	// answer, are counted only when they were not applied.
	Silent    int64            `json:"silent"`
	SilentWhy map[string]int64 `json:"silent_why,omitempty"`
	// SendErrors are replies the socket refused.
	SendErrors int64 `json:"send_errors"`
	// StoreErrors are replies withheld because their lease could not be
	// stored.
	StoreErrors int64 `json:"store_errors"`
	Commits     int64 `json:"commits"` // store transactions (each one fsync)
	// MaxBatch is the most replies one fsync covered.
	MaxBatch int `json:"max_batch"`
	// MaxCommit is the longest store transaction; MaxReplyDelay the longest
	// time from reading a message to sending its reply.
	MaxCommit     time.Duration `json:"max_commit_ns"`
	MaxReplyDelay time.Duration `json:"max_reply_delay_ns"`
	// SlowReplies are replies sent more than a second after their request.
	SlowReplies int64 `json:"slow_replies"`
}

// Reasons of Reply.Silence for input a server cannot act on: they count as
// Malformed.
const (
	silenceNotRequest  = "not a request"
	silenceMessageType = "message type"
	silenceNoAddress   = "request without address"
)

func malformedWhy(why string) bool {
	switch why {
	case silenceNotRequest, silenceMessageType, silenceNoAddress:
		return true
	}
	return false
}

// StatsBucket is the store bucket where a running server keeps its
// counters (key StatsKey), so `fieldcon leases --stats` can read them.
const (
	StatsBucket = "dhcp.stats"
	StatsKey    = "server"
)

// StoredStats is a server's counters as stored: since the role started,
// written at every sweep while they change and when it stops.
type StoredStats struct {
	Since   time.Time   `json:"since"`
	Updated time.Time   `json:"updated"`
	Stats   ServerStats `json:"stats"`
}

// LoadStats reads a server's stored counters; ok is false when the server
// has stored none (it never ran with this store, or ran before counters
// were stored).
func LoadStats(st *store.Store) (s StoredStats, ok bool, err error) {
	err = st.Get(StatsBucket, StatsKey, &s)
	if errors.Is(err, store.ErrNotFound) {
		return StoredStats{}, false, nil
	}
	if err != nil {
		return StoredStats{}, false, fmt.Errorf("dhcp server counters: %w", err)
	}
	return s, true, nil
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
			if malformedWhy(reply.Silence) {
				s.Malformed++
			}
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
