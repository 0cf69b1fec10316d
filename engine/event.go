package engine

import (
	"encoding/json"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Event kinds: the one vocabulary the TUI, --json output and the journal
// share (DESIGN.md "Events"). Kinds are dotted, capability first.
const (
	KindAddressAdded       = "address.added"
	KindAddressRemoved     = "address.removed"
	KindRouteAdded         = "route.added"
	KindRouteRemoved       = "route.removed"
	KindRHCPProbeSent      = "rhcp.probe.sent"
	KindRHCPProbeReceived  = "rhcp.probe.received"
	KindRHCPProbeRejected  = "rhcp.probe.rejected"
	KindRHCPStopSent       = "rhcp.stop.sent"
	KindRHCPStopReceived   = "rhcp.stop.received"
	KindDHCPBound          = "dhcp.lease.bound"
	KindDHCPRenewed        = "dhcp.lease.renewed"
	KindDHCPReleased       = "dhcp.lease.released"
	KindDHCPDeclined       = "dhcp.lease.declined"
	KindForceRenewSent     = "dhcp.forcerenew.sent"
	KindForceRenewReceived = "dhcp.forcerenew.received"
	KindForceRenewRejected = "dhcp.forcerenew.rejected"
	KindRelayReplyDropped  = "dhcp.relay.reply.dropped"
	KindNeighborPinned     = "neighbor.pinned"
	KindConflictDetected   = "conflict.detected"
	KindCascadeUp          = "cascade.downstream.up"
	KindTunnelUp           = "tunnel.up"
	KindTunnelDown         = "tunnel.down"
	KindTunnelAged         = "tunnel.aged"
	KindTunnelRoamed       = "tunnel.roamed"
	KindNATAdded           = "nat.mapping.added"
	KindNATRemoved         = "nat.mapping.removed"
	KindHopNext            = "hop.address.next"
	KindHopSwitched        = "hop.address.switched"
	KindHopRequest         = "hop.update.request"
	KindHopResponse        = "hop.update.response"
	KindAccessRequest      = "access.request"
	KindAccessConnect      = "access.connect"
	KindAccessDisconnect   = "access.disconnect"
	KindAccessMoved        = "access.moved"
	KindMechanismWon       = "mechanism.won"
	KindMechanismStopped   = "mechanism.stopped"
	KindRoleStarted        = "role.started"
	KindRoleStopped        = "role.stopped"
	KindError              = "error"
)

// KindTunnelHandshakeDropped is a tunnel server refusing establishment
// requests that passed mac1: over their source's rate, or replayed
// (docs/protocols/tunnel.md "Receiving rules").
const KindTunnelHandshakeDropped = "tunnel.handshake.dropped"

// Fields carries an event's kind-specific fields. Values must marshal to JSON;
// secrets never go here.
type Fields map[string]any

// Event is one thing that happened on a node.
type Event struct {
	Time   time.Time
	Node   string
	Kind   string
	Fields Fields
}

// MarshalJSON writes the flat form {"time":…,"node":…,"kind":…,…fields}.
func (e Event) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(e.Fields)+3)
	for k, v := range e.Fields {
		m[k] = v
	}
	m["time"] = e.Time.Format(time.RFC3339Nano)
	m["node"] = e.Node
	m["kind"] = e.Kind
	return json.Marshal(m)
}

// UnmarshalJSON reads the flat form back.
func (e *Event) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	e.Fields = Fields{}
	for k, v := range m {
		switch k {
		case "time":
			s, _ := v.(string)
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return err
			}
			e.Time = t
		case "node":
			e.Node, _ = v.(string)
		case "kind":
			e.Kind, _ = v.(string)
		default:
			e.Fields[k] = v
		}
	}
	return nil
}

// FieldNames returns the event's field names, sorted (for stable text output).
func (e Event) FieldNames() []string {
	names := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Emitter publishes events on behalf of one node.
type Emitter interface {
	Emit(kind string, f Fields)
}

// Bus fans events out to subscribers. Publishing never blocks: a subscriber
// that falls behind loses events, and the loss is counted, so a slow TUI can
// never stall a protocol.
type Bus struct {
	mu      sync.Mutex
	subs    map[*Subscription]struct{}
	closed  bool
	now     func() time.Time
	history []Event // ring of the last histMax events
	histPos int     // next slot to overwrite once the ring is full
	histMax int
}

// Subscription receives events on C until Close.
type Subscription struct {
	C       <-chan Event
	c       chan Event
	bus     *Bus
	dropped atomic.Uint64
}

// Dropped counts events this subscriber lost because its channel was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes and closes C.
func (s *Subscription) Close() { s.bus.unsubscribe(s) }

// NewBus returns a bus that keeps the last histMax events for late
// subscribers (the TUI's log view opens after the engine started).
func NewBus(histMax int) *Bus {
	return &Bus{subs: map[*Subscription]struct{}{}, now: time.Now, histMax: histMax}
}

// Subscribe returns a subscription with a buffer of n events. With replay,
// the retained history is delivered first.
func (b *Bus) Subscribe(n int, replay bool) *Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := make(chan Event, n)
	s := &Subscription{C: c, c: c, bus: b}
	if replay {
		for _, e := range b.historyLocked() {
			select {
			case c <- e:
			default:
				s.dropped.Add(1)
			}
		}
	}
	if b.closed {
		close(c)
		return s
	}
	b.subs[s] = struct{}{}
	return s
}

func (b *Bus) unsubscribe(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		close(s.c)
	}
}

// Publish stamps and delivers an event.
func (b *Bus) Publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if e.Time.IsZero() {
		e.Time = b.now()
	}
	if b.histMax > 0 {
		if len(b.history) < b.histMax {
			b.history = append(b.history, e)
		} else {
			b.history[b.histPos] = e
			b.histPos = (b.histPos + 1) % b.histMax
		}
	}
	for s := range b.subs {
		select {
		case s.c <- e:
		default:
			s.dropped.Add(1)
		}
	}
}

// History returns a copy of the retained events.
func (b *Bus) History() []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.historyLocked()
}

func (b *Bus) historyLocked() []Event {
	out := make([]Event, 0, len(b.history))
	out = append(out, b.history[b.histPos:]...)
	return append(out, b.history[:b.histPos]...)
}

// Close closes every subscription; later publishes are dropped.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for s := range b.subs {
		close(s.c)
		delete(b.subs, s)
	}
}

// NodeEmitter returns an Emitter that publishes as node.
func (b *Bus) NodeEmitter(node string) Emitter { return nodeEmitter{b, node} }

type nodeEmitter struct {
	b    *Bus
	node string
}

func (n nodeEmitter) Emit(kind string, f Fields) {
	n.b.Publish(Event{Node: n.node, Kind: kind, Fields: f})
}
