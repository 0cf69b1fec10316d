package rhcp

import (
	"container/heap"
	"math/rand/v2"
	"net/netip"
	"sort"
	"time"
)

// Allocation states, as stored and shown in snapshots (engine.ProbeRow).
const (
	StateProbing   = "probing"
	StateConfirmed = "confirmed"
	StateReclaimed = "reclaimed"
)

// Allocation is one row of the server's allocation table, as kept in the
// node's store (bucket "rhcp.allocations", key = client ID).
type Allocation struct {
	ClientID string       `json:"client_id"`
	Address  netip.Prefix `json:"address"`
	State    string       `json:"state"`
	// Formal is the DHCP address the client reported when it released
	// the temporary one (RHCP+DHCP).
	Formal      netip.Prefix `json:"formal,omitempty"`
	LastStopSeq uint64       `json:"last_stop_seq,omitempty"`
	Changed     time.Time    `json:"changed"`
}

// Backoff is the probe schedule: Interval first, doubling after every
// unanswered probe up to Max, each interval moved by up to ±Jitter.
type Backoff struct {
	Interval, Max, Jitter time.Duration
}

// Prober is the server's probing state machine (sans-I/O): Due says which
// clients to probe now, Stop and Release apply the client's answers. Clients
// are kept in a heap by next probe time, so a server with tens of thousands
// of clients does O(log n) work per probe.
type Prober struct {
	backoff Backoff
	rnd     *rand.Rand
	clients map[string]*probeState
	queue   probeQueue
}

type probeState struct {
	alloc    Allocation
	next     time.Time
	interval time.Duration
	sent     uint64
	lastSent time.Time
	index    int // in queue; -1 when not probing
}

// NewProber returns a prober with the schedule b; seed makes the jitter
// reproducible in tests.
func NewProber(b Backoff, seed uint64) *Prober {
	if b.Max < b.Interval {
		b.Max = b.Interval
	}
	return &Prober{backoff: b, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), clients: map[string]*probeState{}}
}

// Add puts an allocation in the table. A probing allocation is due at now.
func (p *Prober) Add(a Allocation, now time.Time) {
	s := &probeState{alloc: a, interval: p.backoff.Interval, index: -1, next: now}
	if old, ok := p.clients[a.ClientID]; ok {
		if old.index >= 0 {
			heap.Remove(&p.queue, old.index)
		}
		s.sent, s.lastSent = old.sent, old.lastSent
	}
	p.clients[a.ClientID] = s
	if a.State == StateProbing {
		heap.Push(&p.queue, s)
	}
}

// Allocation returns a client's allocation.
func (p *Prober) Allocation(id string) (Allocation, bool) {
	s, ok := p.clients[id]
	if !ok {
		return Allocation{}, false
	}
	return s.alloc, true
}

// Next is when the next probe is due; zero when nobody is probed.
func (p *Prober) Next() time.Time {
	if len(p.queue) == 0 {
		return time.Time{}
	}
	return p.queue[0].next
}

// Due returns the allocations to probe at now and schedules their next
// probe with backoff.
func (p *Prober) Due(now time.Time) []Allocation {
	var out []Allocation
	for len(p.queue) > 0 && !p.queue[0].next.After(now) {
		s := p.queue[0]
		out = append(out, s.alloc)
		s.sent++
		s.lastSent = now
		s.next = now.Add(p.jittered(s.interval))
		s.interval = min(2*s.interval, p.backoff.Max)
		heap.Fix(&p.queue, 0)
	}
	return out
}

func (p *Prober) jittered(d time.Duration) time.Duration {
	if p.backoff.Jitter <= 0 {
		return d
	}
	j := time.Duration((p.rnd.Float64()*2 - 1) * float64(p.backoff.Jitter))
	return max(d+j, d/2)
}

// Stop applies a verified stop indication: it confirms the client and ends
// its probing. It reports whether the table changed (so the caller stores
// it) and why it ignored the stop otherwise.
func (p *Prober) Stop(m *Message, now time.Time) (changed bool, ignored string) {
	s, ok := p.clients[m.ClientID]
	switch {
	case !ok:
		return false, "unknown client"
	case m.Address.Addr() != s.alloc.Address.Addr():
		return false, "address is not the one allocated"
	case m.Sequence <= s.alloc.LastStopSeq:
		return false, ReasonReplay
	}
	s.alloc.LastStopSeq = m.Sequence
	if s.alloc.State != StateProbing {
		return true, ""
	}
	s.alloc.State, s.alloc.Changed = StateConfirmed, now
	if s.index >= 0 {
		heap.Remove(&p.queue, s.index)
	}
	return true, ""
}

// Release applies a verified release: the client has its formal address, the
// temporary one is reclaimed.
func (p *Prober) Release(m *Message, now time.Time) (changed bool, ignored string) {
	s, ok := p.clients[m.ClientID]
	switch {
	case !ok:
		return false, "unknown client"
	case m.Address.Addr() != s.alloc.Address.Addr():
		return false, "address is not the one allocated"
	case m.Sequence <= s.alloc.LastStopSeq:
		return false, ReasonReplay
	}
	s.alloc.LastStopSeq = m.Sequence
	if s.index >= 0 {
		heap.Remove(&p.queue, s.index)
	}
	s.alloc.State, s.alloc.Formal, s.alloc.Changed = StateReclaimed, m.Formal, now
	return true, ""
}

// Rows lists the table for snapshots.
func (p *Prober) Rows() []ProbeStats {
	out := make([]ProbeStats, 0, len(p.clients))
	for _, s := range p.clients {
		out = append(out, ProbeStats{Allocation: s.alloc, Sent: s.sent, LastSent: s.lastSent})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ClientID < out[j].ClientID })
	return out
}

// ProbeStats is an allocation with its probe counters.
type ProbeStats struct {
	Allocation
	Sent     uint64
	LastSent time.Time
}

type probeQueue []*probeState

func (q probeQueue) Len() int           { return len(q) }
func (q probeQueue) Less(i, j int) bool { return q[i].next.Before(q[j].next) }
func (q probeQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *probeQueue) Push(x any) {
	s := x.(*probeState)
	s.index = len(*q)
	*q = append(*q, s)
}
func (q *probeQueue) Pop() any {
	old := *q
	s := old[len(old)-1]
	old[len(old)-1] = nil
	s.index = -1
	*q = old[:len(old)-1]
	return s
}
