package dhcp

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/ratelimit"
)

// State is a client state of RFC 2131 §4.4 (figure 5).
type State int

// Client states. Probing is the RFC 5227 check between ACK and BOUND;
// Declined the wait after a DECLINE before starting over (RFC 2131 §3.1.5).
const (
	StateInit State = iota
	StateSelecting
	StateRequesting
	StateProbing
	StateBound
	StateRenewing
	StateRebinding
	StateRebooting
	StateDeclined
	StateReleased
)

func (s State) String() string {
	return [...]string{"init", "selecting", "requesting", "probing", "bound", "renewing", "rebinding", "init-reboot", "declined", "released"}[s]
}

// Backoff is the retransmission schedule: Initial, doubling up to Max, each
// randomized by up to a tenth (RFC 2131 §4.1 doubles from 4s to 64s with
// ±1s; commissioning wants faster, so it is configurable).
type Backoff struct {
	Initial, Max time.Duration
}

// ClientConfig configures a client.
type ClientConfig struct {
	MAC         net.HardwareAddr
	ClientID    []byte
	VendorClass string
	Hostname    string
	// Server, when set, is the server to unicast to instead of broadcasting
	// (a known server, RHCP+DHCP). ServerMAC is its (or the next hop's)
	// link address; nil sends to the link broadcast address.
	Server    netip.Addr
	ServerMAC net.HardwareAddr
	// GIAddr, when set, makes the client its own relay agent (RFC 2131 §4.1
	// giaddr): requests carry it and replies come back to it on port 67.
	GIAddr netip.Addr
	// Previous is an address from an earlier lease to ask for first
	// (INIT-REBOOT, RFC 2131 §3.2).
	Previous netip.Addr
	Backoff  Backoff
	// Requests is how many times a REQUEST is sent before starting over.
	Requests int
	// RapidCommit asks for a two-message exchange (RFC 4039).
	RapidCommit bool
	// Probe runs an RFC 5227 ARP probe on an offered address before binding.
	Probe bool
	// DeclineWait is the pause after a DECLINE (RFC 2131 §3.1.5 says 10s).
	DeclineWait time.Duration
	// NonceCapable advertises RFC 6704 FORCERENEW nonce authentication.
	NonceCapable bool
}

func (c *ClientConfig) defaults() {
	if c.Backoff.Initial <= 0 {
		c.Backoff.Initial = time.Second
	}
	if c.Backoff.Max < c.Backoff.Initial {
		c.Backoff.Max = 16 * time.Second
	}
	if c.Requests <= 0 {
		c.Requests = 4
	}
	if c.DeclineWait <= 0 {
		c.DeclineWait = time.Second
	}
}

// ActionKind says what the runner must do.
type ActionKind int

const (
	// ActSend: send Msg to To (and ToMAC on a packet socket; nil broadcast).
	ActSend ActionKind = iota
	// ActProbe: ARP-probe Lease.Address and report with ProbeDone.
	ActProbe
	// ActBind: configure Lease; Old is the lease it replaces (renewal).
	ActBind
	// ActUnbind: remove Lease from the host (expired, NAK, released).
	ActUnbind
	// ActEmit: publish Event with Fields.
	ActEmit
)

// Action is one thing the client asks its runner to do.
type Action struct {
	Kind   ActionKind
	Msg    *dhcpv4.DHCPv4
	To     netip.Addr
	ToMAC  net.HardwareAddr
	Lease  *Lease
	Old    *Lease
	Event  string
	Fields engine.Fields
}

// Source is where a received message came from.
type Source struct {
	MAC net.HardwareAddr
	IP  netip.Addr
}

var bcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// Client is the RFC 2131 client state machine. It does no I/O: the methods
// take inputs (start, a received message, the clock, a probe result) and
// return actions. It is not safe for concurrent use; its runner serializes.
type Client struct {
	cfg      ClientConfig
	state    State
	xid      dhcpv4.TransactionID
	start    time.Time
	deadline time.Time
	wait     time.Duration
	tries    int
	offer    *dhcpv4.DHCPv4
	offerSrc Source
	pending  *Lease
	lease    *Lease
	// forced marks a renewal FORCERENEW triggered, for the event.
	forced bool
	// rejects rate-limits dhcp.forcerenew.rejected: anyone on the path can
	// send FORCERENEWs, and each costs only an HMAC to refuse.
	rejects ratelimit.Window
	// lost is the lease a NAK took (IP sync: the server NAKs the renewal
	// of an address whose reservation moved); the next binding replaces it.
	lost *Lease
	// replay is the highest replay detection value seen from replayFrom
	// (a server identifier), in ACKs and accepted FORCERENEWs: RFC 3118 §2's
	// check is against it, so it only ever goes up, whatever a later ACK
	// carries and across a lease lost to a NAK.
	replay     uint64
	replayFrom netip.Addr
}

// rejectEventsPerSecond is how many dhcp.forcerenew.rejected events a
// client emits per second; the rest are counted and reported in the next
// one, or by Tick once the flood is over.
const rejectEventsPerSecond = 20

// NewClient returns a client in INIT.
func NewClient(cfg ClientConfig) *Client {
	cfg.defaults()
	return &Client{cfg: cfg, rejects: ratelimit.Window{Max: rejectEventsPerSecond, Per: time.Second}}
}

// State is the current state.
func (c *Client) State() State { return c.state }

// Lease is the bound lease, or nil.
func (c *Client) Lease() *Lease { return c.lease }

// Deadline is when Tick must next be called; zero when nothing is timed.
func (c *Client) Deadline() time.Time { return c.deadline }

// SetLease installs a lease known from before (e.g. restored), in BOUND.
func (c *Client) SetLease(l *Lease) {
	c.lease = l
	c.seenReplay(l)
	c.state = StateBound
	c.deadline = l.Acquired.Add(l.T1)
}

// Start begins acquisition: INIT-REBOOT with a previous address, else INIT.
func (c *Client) Start(now time.Time) []Action {
	c.start = now
	if c.cfg.Previous.IsValid() {
		c.newXID()
		c.state = StateRebooting
		c.tries = 0
		c.wait = c.cfg.Backoff.Initial
		return c.sendRequest(now)
	}
	return c.discover(now)
}

func (c *Client) newXID() {
	var x dhcpv4.TransactionID
	v := rand.Uint32()
	x[0], x[1], x[2], x[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	c.xid = x
}

func (c *Client) discover(now time.Time) []Action {
	c.newXID()
	c.state = StateSelecting
	c.offer, c.pending = nil, nil
	c.wait = c.cfg.Backoff.Initial
	c.tries = 0
	return c.send(now, c.discoverMessage(now), c.target(), c.cfg.ServerMAC)
}

// discoverMessage is a DISCOVER, asking for rapid commit when configured
// (RFC 4039 §3: the option goes in every DISCOVER, retransmissions too).
func (c *Client) discoverMessage(now time.Time) *dhcpv4.DHCPv4 {
	m := c.message(dhcpv4.MessageTypeDiscover, now)
	if c.cfg.RapidCommit {
		m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil))
	}
	return m
}

// target is where INIT-time messages go: the named server or broadcast.
func (c *Client) target() netip.Addr {
	if c.cfg.Server.IsValid() {
		return c.cfg.Server
	}
	return bcast4
}

func (c *Client) jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}

// send arms the retransmission timer and returns the send action.
func (c *Client) send(now time.Time, m *dhcpv4.DHCPv4, to netip.Addr, mac net.HardwareAddr) []Action {
	c.deadline = now.Add(c.jitter(c.wait))
	c.wait = min(c.wait*2, c.cfg.Backoff.Max)
	c.tries++
	return []Action{{Kind: ActSend, Msg: m, To: to, ToMAC: mac}}
}

func (c *Client) message(t dhcpv4.MessageType, now time.Time) *dhcpv4.DHCPv4 {
	m, _ := dhcpv4.New(dhcpv4.WithTransactionID(c.xid), dhcpv4.WithHwAddr(c.cfg.MAC), dhcpv4.WithMessageType(t))
	secs := now.Sub(c.start) / time.Second
	m.NumSeconds = uint16(min(secs, 0xffff))
	if len(c.cfg.ClientID) > 0 {
		m.UpdateOption(dhcpv4.OptClientIdentifier(c.cfg.ClientID))
	}
	if c.cfg.GIAddr.IsValid() {
		m.GatewayIPAddr = net.IP(c.cfg.GIAddr.AsSlice())
	}
	if t == dhcpv4.MessageTypeRelease || t == dhcpv4.MessageTypeDecline {
		return m
	}
	if c.cfg.VendorClass != "" {
		m.UpdateOption(dhcpv4.OptClassIdentifier(c.cfg.VendorClass))
	}
	if c.cfg.Hostname != "" {
		m.UpdateOption(dhcpv4.OptHostName(c.cfg.Hostname))
	}
	m.UpdateOption(dhcpv4.OptParameterRequestList(
		dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
		dhcpv4.OptionDomainName, dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionServerIdentifier,
		dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue, OptionCloudServer))
	m.UpdateOption(dhcpv4.OptMaxMessageSize(1500))
	if c.cfg.NonceCapable {
		m.UpdateOption(dhcpv4.OptGeneric(OptionForceRenewNonceCapable, []byte{authAlgHMACMD5}))
	}
	return m
}

// sendRequest builds the REQUEST of the current state (RFC 2131 §4.3.2
// table 4): SELECTING names the server and address; INIT-REBOOT asks for the
// previous address; RENEWING and REBINDING carry ciaddr.
func (c *Client) sendRequest(now time.Time) []Action {
	m := c.message(dhcpv4.MessageTypeRequest, now)
	to, mac := c.target(), c.cfg.ServerMAC
	switch c.state {
	case StateRequesting:
		m.UpdateOption(dhcpv4.OptRequestedIPAddress(c.offer.YourIPAddr))
		m.UpdateOption(dhcpv4.OptServerIdentifier(c.offer.ServerIdentifier()))
	case StateRebooting:
		m.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IP(c.cfg.Previous.AsSlice())))
	case StateRenewing:
		m.ClientIPAddr = net.IP(c.lease.Address.Addr().AsSlice())
		to, mac = c.lease.Server, c.lease.ServerMAC
		if c.cfg.GIAddr.IsValid() || !to.IsValid() {
			to = c.target()
		}
	case StateRebinding:
		m.ClientIPAddr = net.IP(c.lease.Address.Addr().AsSlice())
		to, mac = c.target(), c.cfg.ServerMAC
	}
	return c.send(now, m, to, mac)
}

// Receive handles a message from the wire. raw is the DHCP payload as
// received (FORCERENEW authentication covers its exact bytes).
func (c *Client) Receive(now time.Time, raw []byte, src Source) []Action {
	m, err := dhcpv4.FromBytes(raw)
	if err != nil || m.OpCode != dhcpv4.OpcodeBootReply || !bytes.Equal(m.ClientHWAddr, c.cfg.MAC) {
		return nil
	}
	if m.MessageType() == MessageTypeForceRenew {
		return c.forceRenew(now, raw, src)
	}
	if m.TransactionID != c.xid {
		return nil
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeOffer:
		return c.onOffer(now, m, src)
	case dhcpv4.MessageTypeAck:
		if c.state == StateSelecting && c.cfg.RapidCommit && m.Options.Has(dhcpv4.OptionRapidCommit) {
			c.state = StateRequesting
			return c.onAck(now, m, src, true)
		}
		return c.onAck(now, m, src, false)
	case dhcpv4.MessageTypeNak:
		return c.onNak(now, m)
	}
	return nil
}

func (c *Client) onOffer(now time.Time, m *dhcpv4.DHCPv4, src Source) []Action {
	if c.state != StateSelecting || ipFrom(m.YourIPAddr).IsUnspecified() || !ipFrom(m.YourIPAddr).IsValid() {
		return nil
	}
	// RFC 2131 §4.4.1: the client may take the first offer.
	c.offer, c.offerSrc = m, src
	c.state = StateRequesting
	c.tries = 0
	c.wait = c.cfg.Backoff.Initial
	return c.sendRequest(now)
}

func (c *Client) onAck(now time.Time, m *dhcpv4.DHCPv4, src Source, rapid bool) []Action {
	switch c.state {
	case StateRequesting, StateRebooting, StateRenewing, StateRebinding:
	default:
		return nil
	}
	if c.state == StateRequesting && c.offer != nil && !rapid && !ipFrom(m.ServerIdentifier()).IsUnspecified() &&
		ipFrom(m.ServerIdentifier()) != ipFrom(c.offer.ServerIdentifier()) {
		// RFC 2131 §4.3.2: the REQUEST named one server; an ACK from
		// another is not the answer to it.
		return nil
	}
	l, err := leaseFromACK(m, now)
	if err != nil {
		return []Action{{Kind: ActEmit, Event: engine.KindError, Fields: engine.Fields{"message": "dhcp client: ignoring ACK: " + err.Error()}}}
	}
	l.ServerMAC, l.ServerIP, l.RapidCommit = src.MAC, src.IP, rapid
	if !l.Server.IsValid() {
		l.Server = src.IP
	}
	if c.lease != nil && l.Nonce == nil {
		// RFC 6704 §3.2: the nonce is given once; renewals keep it.
		l.Nonce = c.lease.Nonce
	}
	c.seenReplay(&l)
	prev := c.lease
	if prev == nil {
		prev = c.lost
	}
	newAddr := prev == nil || prev.Address.Addr() != l.Address.Addr()
	// An address pushed by the server while bound (IP sync: a renewal
	// NAKed, then rediscovered) is always probed: DESIGN.md §4 wants an
	// alarm when the new address is in use.
	moved := prev != nil && newAddr
	if (c.cfg.Probe && newAddr) || moved {
		c.state, c.pending, c.deadline = StateProbing, &l, time.Time{}
		return []Action{{Kind: ActProbe, Lease: &l}}
	}
	return c.bind(&l)
}

func (c *Client) bind(l *Lease) []Action {
	old := c.lease
	if old == nil && c.lost != nil && c.lost.Address != l.Address {
		// Re-addressed through a NAK: report what changed from the lost
		// lease, whose address is already gone from the host.
		old = c.lost
	}
	forced := c.forced
	c.lease, c.pending, c.forced, c.lost = l, nil, false, nil
	c.state = StateBound
	c.deadline = l.Acquired.Add(l.T1)
	a := Action{Kind: ActBind, Lease: l, Old: old}
	if forced {
		a.Fields = engine.Fields{"forcerenew": true}
	}
	return []Action{a}
}

func (c *Client) onNak(now time.Time, m *dhcpv4.DHCPv4) []Action {
	switch c.state {
	case StateRequesting, StateRebooting, StateRenewing, StateRebinding:
	default:
		return nil
	}
	// RFC 2131 §4.4.1/§3.2: a NAK sends the client back to INIT; an
	// address it held is no longer valid and is removed before the client
	// rediscovers.
	var out []Action
	if c.lease != nil {
		out = append(out, Action{Kind: ActUnbind, Lease: c.lease, Fields: engine.Fields{"reason": "nak: " + m.Message()}})
		c.lost, c.lease = c.lease, nil
	}
	c.cfg.Previous = netip.Addr{}
	return append(out, c.discover(now)...)
}

// ProbeDone reports the ARP probe of the pending lease: a conflict DECLINEs
// it (RFC 2131 §3.1.5, RFC 5227 §2.1.1).
func (c *Client) ProbeDone(now time.Time, conflict bool, by net.HardwareAddr) []Action {
	if c.state != StateProbing || c.pending == nil {
		return nil
	}
	l := c.pending
	if !conflict {
		return c.bind(l)
	}
	m := c.message(dhcpv4.MessageTypeDecline, now)
	m.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IP(l.Address.Addr().AsSlice())))
	m.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(l.Server.AsSlice())))
	c.state, c.pending = StateDeclined, nil
	c.deadline = now.Add(c.cfg.DeclineWait)
	f := engine.Fields{"address": l.Address.Addr().String(), "server": l.Server.String()}
	if by != nil {
		f["in_use_by"] = by.String()
	}
	return []Action{
		{Kind: ActSend, Msg: m, To: c.target(), ToMAC: c.cfg.ServerMAC},
		{Kind: ActEmit, Event: engine.KindConflictDetected, Fields: f},
		{Kind: ActEmit, Event: engine.KindDHCPDeclined, Fields: f},
	}
}

// Tick handles the clock: retransmissions, T1, T2 and expiry (RFC 2131
// §4.4.5), and reports FORCERENEW rejections held back by the rate limit.
func (c *Client) Tick(now time.Time) []Action {
	var out []Action
	if n := c.rejects.Summary(now); n > 0 {
		out = append(out, Action{Kind: ActEmit, Event: engine.KindForceRenewRejected,
			Fields: engine.Fields{"reason": "rate limited (summary)", "suppressed": n}})
	}
	return append(out, c.tick(now)...)
}

func (c *Client) tick(now time.Time) []Action {
	if c.deadline.IsZero() || now.Before(c.deadline) {
		return nil
	}
	switch c.state {
	case StateSelecting:
		return c.send(now, c.discoverMessage(now), c.target(), c.cfg.ServerMAC)
	case StateRequesting, StateRebooting:
		if c.tries >= c.cfg.Requests {
			c.cfg.Previous = netip.Addr{}
			return c.discover(now)
		}
		return c.sendRequest(now)
	case StateDeclined:
		return c.discover(now)
	case StateBound:
		return c.enter(now, StateRenewing)
	case StateRenewing:
		if !now.Before(c.lease.Acquired.Add(c.lease.T2)) {
			return c.enter(now, StateRebinding)
		}
		return c.retransmit(now)
	case StateRebinding:
		if !now.Before(c.lease.Expiry()) {
			l := c.lease
			c.lease = nil
			return append([]Action{{Kind: ActUnbind, Lease: l, Fields: engine.Fields{"reason": "lease expired"}}}, c.discover(now)...)
		}
		return c.retransmit(now)
	}
	return nil
}

func (c *Client) enter(now time.Time, s State) []Action {
	c.newXID()
	c.state, c.tries, c.wait = s, 0, c.cfg.Backoff.Initial
	return c.retransmit(now)
}

// retransmit sends the state's REQUEST and makes sure the next deadline is
// not later than T2 (renewing) or expiry (rebinding), so the state changes on
// time (RFC 2131 §4.4.5).
func (c *Client) retransmit(now time.Time) []Action {
	out := c.sendRequest(now)
	var end time.Time
	switch c.state {
	case StateRenewing:
		end = c.lease.Acquired.Add(c.lease.T2)
	case StateRebinding:
		end = c.lease.Expiry()
	}
	if !end.IsZero() && c.deadline.After(end) {
		c.deadline = end
	}
	return out
}

// forceRenew handles DHCPFORCERENEW (RFC 3203 §4): a bound client whose
// lease holds a nonce checks the message's HMAC (RFC 6704 §3.4) and renews
// at once; anything else is rejected and reported.
func (c *Client) forceRenew(now time.Time, raw []byte, src Source) []Action {
	reject := func(err error) []Action {
		ok, suppressed := c.rejects.Allow(now)
		if !ok {
			return nil
		}
		f := engine.Fields{"from": addrString(src.IP), "reason": err.Error()}
		if suppressed > 0 {
			f["suppressed"] = suppressed
		}
		return []Action{{Kind: ActEmit, Event: engine.KindForceRenewRejected, Fields: f}}
	}
	if c.state != StateBound || c.lease == nil {
		return reject(fmt.Errorf("not bound (state %s)", c.state))
	}
	replay, err := VerifyForceRenew(raw, c.lease.Nonce, c.lease.Replay)
	if err != nil {
		return reject(err)
	}
	c.lease.Replay = replay
	c.seenReplay(c.lease)
	c.forced = true
	out := []Action{{Kind: ActEmit, Event: engine.KindForceRenewReceived,
		Fields: engine.Fields{"from": addrString(src.IP), "server": c.lease.Server.String()}}}
	return append(out, c.enter(now, StateRenewing)...)
}

// seenReplay raises the highest replay detection value seen from l's
// server to l's, and l's to it: an ACK with a lower value (a server that
// lost its counter, or `fieldcon forcerenew`'s values it did not see) never
// lowers what a FORCERENEW must exceed.
func (c *Client) seenReplay(l *Lease) {
	if l.Server != c.replayFrom {
		c.replay, c.replayFrom = 0, l.Server
	}
	c.replay = max(c.replay, l.Replay)
	l.Replay = c.replay
}

// Release gives the lease back (RFC 2131 §4.4.6): RELEASE unicast to the
// server, then the address is removed.
func (c *Client) Release(now time.Time) []Action {
	if c.lease == nil {
		c.state, c.deadline = StateReleased, time.Time{}
		return nil
	}
	l := c.lease
	c.newXID()
	m := c.message(dhcpv4.MessageTypeRelease, now)
	m.ClientIPAddr = net.IP(l.Address.Addr().AsSlice())
	m.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(l.Server.AsSlice())))
	to, mac := l.Server, l.ServerMAC
	if c.cfg.GIAddr.IsValid() {
		to = c.cfg.Server
	}
	c.lease, c.lost, c.state, c.deadline = nil, nil, StateReleased, time.Time{}
	return []Action{
		{Kind: ActSend, Msg: m, To: to, ToMAC: mac},
		{Kind: ActUnbind, Lease: l, Fields: engine.Fields{"reason": "released"}},
	}
}
