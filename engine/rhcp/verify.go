package rhcp

import (
	"net/netip"
	"time"
)

// Reasons a device rejects a probe (rhcp.probe.rejected "reason"),
// docs/protocols/rhcp.md "Rules".
const (
	ReasonWrongClient = "wrong-client-id"
	ReasonExpired     = "expired"
	ReasonReplay      = "replay"
	ReasonNotProbe    = "not-a-probe"
	// ReasonRefusedValue: authentic and fresh, but a value breaks the
	// rules of package assignment (docs/protocols/rhcp.md "Values a device
	// accepts"); nothing is configured.
	ReasonRefusedValue = "refused-value"
)

// ProbeCheck is the device's acceptance rule for probes: its own ID, within
// the validity window, and a sequence above the last one accepted from the
// same server (so a captured probe cannot be replayed to re-address the
// device). It is a pure state machine: Check takes a decoded message and the
// time and returns "" or the rejection reason.
type ProbeCheck struct {
	ClientID string
	last     map[netip.Addr]uint64
}

// Check decides on m and, when it accepts, remembers its sequence.
func (c *ProbeCheck) Check(m *Message, now time.Time) string {
	switch {
	case m.Type != TypeProbe:
		return ReasonNotProbe
	case m.ClientID != c.ClientID:
		return ReasonWrongClient
	case now.Before(m.Issued.Add(-skewWindow)) || now.After(m.Issued.Add(m.Lifetime)):
		return ReasonExpired
	}
	if c.last == nil {
		c.last = map[netip.Addr]uint64{}
	}
	if m.Sequence <= c.last[m.Server] {
		return ReasonReplay
	}
	c.last[m.Server] = m.Sequence
	return ""
}

// Last returns the last accepted sequence per server, to store.
func (c *ProbeCheck) Last() map[netip.Addr]uint64 {
	out := make(map[netip.Addr]uint64, len(c.last))
	for k, v := range c.last {
		out[k] = v
	}
	return out
}

// Restore sets the last accepted sequence of a server (from the store after
// a restart), so probes captured before the restart stay replays.
func (c *ProbeCheck) Restore(server netip.Addr, seq uint64) {
	if c.last == nil {
		c.last = map[netip.Addr]uint64{}
	}
	if seq > c.last[server] {
		c.last[server] = seq
	}
}

// Sequencer draws sequence numbers that increase across restarts without
// being stored: max(last+1, now in Unix nanoseconds).
type Sequencer struct{ last uint64 }

// Next returns the next sequence number.
func (s *Sequencer) Next(now time.Time) uint64 {
	n := uint64(now.UnixNano())
	if n <= s.last {
		n = s.last + 1
	}
	s.last = n
	return n
}
