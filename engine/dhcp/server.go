package dhcp

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Pool is a range of addresses a server hands out on one subnet, with the
// options that go with it.
type Pool struct {
	Subnet      netip.Prefix
	Start, End  netip.Addr
	Routers     []netip.Addr
	DNS         []netip.Addr
	Domain      string
	CloudServer netip.Addr
	LeaseTime   time.Duration
}

// Reservation gives one client a fixed address, matched by client
// identifier or by MAC.
type Reservation struct {
	ClientID    []byte
	MAC         net.HardwareAddr
	Address     netip.Addr
	CloudServer netip.Addr
}

// ServerConfig configures a server.
type ServerConfig struct {
	// ServerID is the server identifier (option 54): an address of the
	// server the clients can reach.
	ServerID     netip.Addr
	Pools        []Pool
	Reservations []Reservation
	// OfferHold is how long an offered address stays set aside.
	OfferHold time.Duration
	// RapidCommit answers a DISCOVER carrying option 80 with an ACK
	// (RFC 4039).
	RapidCommit bool
	// ForceRenewNonce hands RFC 6704 nonces to clients that can use them,
	// so the server can FORCERENEW them later.
	ForceRenewNonce bool
}

// Lease states kept by a server.
const (
	LeaseOffered  = "offered"
	LeaseBound    = "bound"
	LeaseReleased = "released"
	LeaseDeclined = "declined"
	LeaseExpired  = "expired"
)

// ServerLease is the server's record of one client, as stored (synced to
// disk before the ACK that promises it is sent).
type ServerLease struct {
	Key      string     `json:"key"`
	ClientID string     `json:"client_id,omitempty"` // hex
	MAC      string     `json:"mac"`
	Address  netip.Addr `json:"address"`
	State    string     `json:"state"`
	Start    time.Time  `json:"start"`
	Expiry   time.Time  `json:"expiry"`
	Hostname string     `json:"hostname,omitempty"`
	// GIAddr is the relay the client sits behind; RelayInfo the option 82
	// it added (circuit-id, remote-id), hex.
	GIAddr      netip.Addr `json:"giaddr,omitempty"`
	CircuitID   string     `json:"circuit_id,omitempty"`
	RemoteID    string     `json:"remote_id,omitempty"`
	CloudServer netip.Addr `json:"cloud_server,omitempty"`
	// Nonce is the RFC 6704 key given to this client, which must survive
	// a restart; Replay the last replay detection value sent to it (the
	// values come from the server's ReplayCounter).
	Nonce  []byte `json:"nonce,omitempty"`
	Replay uint64 `json:"replay,omitempty"`
	// XID is the transaction id of the last ACK. A FORCERENEW carries it:
	// RFC 3203 does not say which xid to use, and dhcpcd drops a message
	// whose xid is not the one of its last exchange.
	XID dhcpv4.TransactionID `json:"xid"`
}

// Reply is what the server answers to one request: the message (nil for
// none), where it goes, and the lease to sync to disk before sending.
type Reply struct {
	Msg    *dhcpv4.DHCPv4
	To     netip.AddrPort
	Commit *ServerLease
	// Forget are keys whose stored rows go in the same transaction as
	// Commit: the server dropped them from memory.
	Forget []string
	// Silence says why Msg is nil, for the server's counters.
	Silence string
}

// Server is the DHCP server's logic: pools, reservations and leases in
// memory. It does no I/O (the runner reads, persists and sends); it is not
// safe for concurrent use.
type Server struct {
	cfg    ServerConfig
	leases map[string]*ServerLease
	byAddr map[netip.Addr]string
	// cursor is where the next free-address scan of a pool (by its start)
	// begins.
	cursor map[netip.Addr]netip.Addr
	// replay hands out the replay detection values of ACKs with a nonce
	// and of FORCERENEWs (see ReplayCounter).
	replay func() (uint64, error)
}

// NewServer returns a server with no leases; Restore loads stored ones.
func NewServer(cfg ServerConfig) *Server {
	if cfg.OfferHold <= 0 {
		cfg.OfferHold = 30 * time.Second
	}
	for i := range cfg.Pools {
		if cfg.Pools[i].LeaseTime <= 0 {
			cfg.Pools[i].LeaseTime = time.Hour
		}
	}
	return &Server{cfg: cfg, leases: map[string]*ServerLease{}, byAddr: map[netip.Addr]string{}, cursor: map[netip.Addr]netip.Addr{},
		replay: clockReplay()}
}

// clockReplay is the replay detection counter of a server without a
// counter file: the clock in nanoseconds, or the last value + 1 when the
// clock is behind (RFC 3118 §2: strictly increasing).
func clockReplay() func() (uint64, error) {
	var last uint64
	return func() (uint64, error) {
		last = max(last+1, uint64(max(time.Now().UnixNano(), 0)))
		return last, nil
	}
}

// UseReplayCounter makes next the source of replay detection values (a
// ReplayCounter's Next, shared with `fieldcon forcerenew`).
func (s *Server) UseReplayCounter(next func() (uint64, error)) { s.replay = next }

// Config returns the configuration.
func (s *Server) Config() ServerConfig { return s.cfg }

// SetConfig replaces the pools and reservations (profile reload); leases stay.
func (s *Server) SetConfig(cfg ServerConfig) {
	n := NewServer(cfg)
	s.cfg = n.cfg
}

// Restore loads a stored lease.
func (s *Server) Restore(l ServerLease) {
	c := l
	s.leases[l.Key] = &c
	if l.Address.IsValid() {
		s.byAddr[l.Address] = l.Key
	}
}

// Leases returns copies of every lease, by address.
func (s *Server) Leases() []ServerLease {
	out := make([]ServerLease, 0, len(s.leases))
	for _, l := range s.leases {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address.Less(out[j].Address) })
	return out
}

// Lease returns one lease by key.
func (s *Server) Lease(key string) (ServerLease, bool) {
	l, ok := s.leases[key]
	if !ok {
		return ServerLease{}, false
	}
	return *l, true
}

// Sweep marks bound and offered leases past their expiry as expired and
// returns them (to persist); their addresses become free.
func (s *Server) Sweep(now time.Time) []ServerLease {
	var out []ServerLease
	for _, l := range s.leases {
		if (l.State == LeaseBound || l.State == LeaseOffered) && now.After(l.Expiry) {
			l.State = LeaseExpired
			out = append(out, *l)
		}
	}
	return out
}

// Forget deletes the leases of departed clients: released, expired or
// declined, and not seen for grace (their expiry, which a release or a
// decline sets to when it happened, is older). Without it every client
// that ever asked keeps a row, and clients that rotate their MACs grow the
// store without bound. A reserved client's row stays: the reservation
// names it. Forget returns the keys to delete from the store.
func (s *Server) Forget(now time.Time, grace time.Duration) []string {
	var out []string
	for key, l := range s.leases {
		switch l.State {
		case LeaseReleased, LeaseExpired, LeaseDeclined:
		default:
			continue
		}
		if now.Sub(l.Expiry) < grace || s.reserved(l) {
			continue
		}
		delete(s.leases, key)
		if s.byAddr[l.Address] == key {
			delete(s.byAddr, l.Address)
		}
		out = append(out, key)
	}
	sort.Strings(out)
	return out
}

// reserved reports whether a lease is the row of a client with a
// reservation (a declined address's row is nobody's).
func (s *Server) reserved(l *ServerLease) bool {
	if l.State == LeaseDeclined {
		return false
	}
	id, _ := hex.DecodeString(l.ClientID)
	mac, err := net.ParseMAC(l.MAC)
	if err != nil {
		mac = nil
	}
	return s.reservation(id, mac) != nil
}

// free reports whether addr may be given to key (whose reservation is res,
// or nil) at now: not reserved for another client, not held by one.
func (s *Server) free(addr netip.Addr, key string, res *Reservation, now time.Time) bool {
	for i, r := range s.cfg.Reservations {
		if r.Address == addr && &s.cfg.Reservations[i] != res {
			return false
		}
	}
	k, ok := s.byAddr[addr]
	if !ok || k == key {
		return true
	}
	o := s.leases[k]
	switch o.State {
	case LeaseBound, LeaseOffered, LeaseDeclined:
		return now.After(o.Expiry)
	}
	return true // released or expired
}

func (s *Server) reservation(clientID []byte, mac net.HardwareAddr) *Reservation {
	for i, r := range s.cfg.Reservations {
		if len(r.ClientID) > 0 && bytes.Equal(r.ClientID, clientID) {
			return &s.cfg.Reservations[i]
		}
	}
	for i, r := range s.cfg.Reservations {
		if len(r.ClientID) == 0 && r.MAC != nil && bytes.Equal(r.MAC, mac) {
			return &s.cfg.Reservations[i]
		}
	}
	return nil
}

// pool picks the pool for a request: the one whose subnet holds giaddr
// (RFC 2131 §4.3.1), else one holding an address of the receiving link.
func (s *Server) pool(giaddr netip.Addr, link []netip.Prefix) *Pool {
	for i, p := range s.cfg.Pools {
		if giaddr.IsValid() && !giaddr.IsUnspecified() {
			if p.Subnet.Contains(giaddr) {
				return &s.cfg.Pools[i]
			}
			continue
		}
		for _, l := range link {
			if p.Subnet.Contains(l.Addr()) {
				return &s.cfg.Pools[i]
			}
		}
	}
	return nil
}

func (s *Server) poolOf(addr netip.Addr) *Pool {
	for i, p := range s.cfg.Pools {
		if p.Subnet.Contains(addr) {
			return &s.cfg.Pools[i]
		}
	}
	return nil
}

// pick chooses an address for key: its reservation, else the address it
// had, else the requested one, else the first free one of the pool.
func (s *Server) pick(p *Pool, key string, res *Reservation, requested netip.Addr, now time.Time) netip.Addr {
	if res != nil {
		return res.Address
	}
	inPool := func(a netip.Addr) bool {
		return a.IsValid() && p.Subnet.Contains(a) && !a.Less(p.Start) && !p.End.Less(a)
	}
	if l, ok := s.leases[key]; ok && inPool(l.Address) && s.free(l.Address, key, nil, now) {
		return l.Address
	}
	if inPool(requested) && s.free(requested, key, nil, now) {
		return requested
	}
	// Scan from where the last allocation stopped, wrapping once: each new
	// client costs O(1) amortized instead of a walk over every lease.
	start := s.cursor[p.Start]
	if !inPool(start) {
		start = p.Start
	}
	for a, wrapped := start, false; ; {
		if s.free(a, key, nil, now) {
			s.cursor[p.Start] = a.Next()
			return a
		}
		a = a.Next()
		if !a.IsValid() || p.End.Less(a) {
			if wrapped {
				return netip.Addr{}
			}
			a, wrapped = p.Start, true
		}
		if wrapped && !a.Less(start) {
			return netip.Addr{}
		}
	}
}

// Handle answers one request received on a link with the given addresses,
// its IP source unknown.
func (s *Server) Handle(req *dhcpv4.DHCPv4, link []netip.Prefix, now time.Time) Reply {
	return s.HandleFrom(req, link, netip.Addr{}, now)
}

// HandleFrom answers one request received on a link with the given
// addresses from the IP source address src (invalid: unknown).
func (s *Server) HandleFrom(req *dhcpv4.DHCPv4, link []netip.Prefix, src netip.Addr, now time.Time) Reply {
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) == 0 {
		return Reply{Silence: silenceNotRequest}
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		if s.heldElsewhere(req, link, src, now) {
			return Reply{Silence: "client bound on another port"}
		}
		return s.discover(req, link, now)
	case dhcpv4.MessageTypeRequest:
		if s.heldElsewhere(req, link, src, now) {
			if sid := ipFrom(req.ServerIdentifier()); sid.IsValid() && sid != s.cfg.ServerID {
				// RFC 2131 §4.3.2: a REQUEST selecting another server
				// is not ours to answer.
				return Reply{Silence: "another server selected"}
			}
			return s.nak(req, "lease bound on another port")
		}
		return s.request(req, link, now)
	case dhcpv4.MessageTypeDecline:
		if s.heldElsewhere(req, link, src, now) {
			return Reply{Silence: "decline from another port"}
		}
		return s.decline(req, now)
	case dhcpv4.MessageTypeRelease:
		if s.heldElsewhere(req, link, src, now) {
			return Reply{Silence: "release from another port"}
		}
		return s.release(req, now)
	case dhcpv4.MessageTypeInform:
		return s.inform(req, link)
	}
	return Reply{Silence: silenceMessageType}
}

// heldElsewhere reports whether req names a client (by its key) whose lease
// is bound, unexpired, somewhere req does not come from. A binding lives
// where it was made: behind the relay port it was made through (giaddr and
// the option 82 circuit-id and remote-id the relay added, RFC 3046 §2.1),
// or on the server's own link, and with the hardware address it was made
// with. The client-id alone proves nothing: any port can send it. Until the
// lease expires or its holder releases it, a request from elsewhere neither
// takes the lease over nor learns its RFC 6704 nonce (docs/protocols/dhcp.md).
func (s *Server) heldElsewhere(req *dhcpv4.DHCPv4, link []netip.Prefix, src netip.Addr, now time.Time) bool {
	l, ok := s.leases[keyOf(req)]
	if !ok || l.State != LeaseBound || now.After(l.Expiry) {
		return false
	}
	return !s.fromHolder(l, req, link, src)
}

// fromHolder reports whether req comes from where the bound lease l lives.
func (s *Server) fromHolder(l *ServerLease, req *dhcpv4.DHCPv4, link []netip.Prefix, src netip.Addr) bool {
	if !strings.EqualFold(l.MAC, req.ClientHWAddr.String()) {
		return false
	}
	gi, ci := giaddrOf(req), ipFrom(req.ClientIPAddr)
	circuit, remote := relayInfoOf(req)
	// The holder's own unicast from its bound address (RENEWING, RELEASE:
	// RFC 2131 §4.4.5, §4.4.6) reaches the server without the relay, which
	// only relays broadcasts: giaddr zero, or the address itself when the
	// client is its own relay (RHCP+DHCP). The reply goes to that address,
	// not to the sender.
	if ci == l.Address && (!gi.IsValid() || (gi == l.Address && circuit == "")) && (!src.IsValid() || src == l.Address) {
		return true
	}
	if l.GIAddr.IsValid() {
		return gi == l.GIAddr && circuit == l.CircuitID && remote == l.RemoteID
	}
	// Bound on the server's own link: not relayed, and received on the link
	// whose pool holds the address.
	return !gi.IsValid() && s.pool(netip.Addr{}, link) == s.poolOf(l.Address)
}

// giaddrOf is the relay address of req, invalid when not relayed.
func giaddrOf(req *dhcpv4.DHCPv4) netip.Addr {
	if gi := ipFrom(req.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
		return gi
	}
	return netip.Addr{}
}

// relayInfoOf is the circuit-id and remote-id of req's option 82.
func relayInfoOf(req *dhcpv4.DHCPv4) (circuit, remote string) {
	if rai := req.RelayAgentInfo(); rai != nil {
		return string(rai.Get(dhcpv4.AgentCircuitIDSubOption)), string(rai.Get(dhcpv4.AgentRemoteIDSubOption))
	}
	return "", ""
}

func clientIDOf(req *dhcpv4.DHCPv4) []byte { return req.GetOneOption(dhcpv4.OptionClientIdentifier) }

func keyOf(req *dhcpv4.DHCPv4) string { return ClientKey(clientIDOf(req), req.ClientHWAddr) }

func (s *Server) discover(req *dhcpv4.DHCPv4, link []netip.Prefix, now time.Time) Reply {
	key := keyOf(req)
	p := s.pool(ipFrom(req.GatewayIPAddr), link)
	res := s.reservation(clientIDOf(req), req.ClientHWAddr)
	if res != nil {
		p = s.poolOf(res.Address)
	}
	if p == nil {
		return Reply{Silence: "no pool for the link"}
	}
	addr := s.pick(p, key, res, ipFrom(req.RequestedIPAddress()), now)
	if !addr.IsValid() {
		return Reply{Silence: "pool exhausted"} // RFC 2131 §4.3.1
	}
	if s.cfg.RapidCommit && req.Options.Has(dhcpv4.OptionRapidCommit) {
		return s.ack(req, p, res, addr, now, true)
	}
	l := s.record(req, key, addr)
	if l.State != LeaseBound || l.Address != addr {
		l.State = LeaseOffered
		l.Expiry = now.Add(s.cfg.OfferHold)
	}
	l.Address = addr
	s.byAddr[addr] = key
	m := s.reply(req, dhcpv4.MessageTypeOffer, p, res, addr)
	return Reply{Msg: m, To: replyTo(req, m)}
}

// record returns the lease of key, creating it.
func (s *Server) record(req *dhcpv4.DHCPv4, key string, addr netip.Addr) *ServerLease {
	l, ok := s.leases[key]
	if !ok {
		l = &ServerLease{Key: key}
		s.leases[key] = l
	}
	l.MAC = req.ClientHWAddr.String()
	if id := clientIDOf(req); len(id) > 0 {
		l.ClientID = hex.EncodeToString(id)
	}
	if l.Address.IsValid() && l.Address != addr && s.byAddr[l.Address] == key {
		delete(s.byAddr, l.Address)
	}
	return l
}

func (s *Server) request(req *dhcpv4.DHCPv4, link []netip.Prefix, now time.Time) Reply {
	key := keyOf(req)
	sid := ipFrom(req.ServerIdentifier())
	ci := ipFrom(req.ClientIPAddr)
	requested := ipFrom(req.RequestedIPAddress())
	res := s.reservation(clientIDOf(req), req.ClientHWAddr)
	var want netip.Addr
	switch {
	case sid.IsValid():
		// SELECTING (RFC 2131 §4.3.2): the client chose a server.
		if sid != s.cfg.ServerID {
			if l, ok := s.leases[key]; ok && l.State == LeaseOffered {
				l.State = LeaseReleased
			}
			return Reply{Silence: "another server selected"}
		}
		want = requested
	case ci.IsValid() && !ci.IsUnspecified():
		want = ci // RENEWING or REBINDING
	default:
		want = requested // INIT-REBOOT
	}
	if !want.IsValid() || want.IsUnspecified() {
		return Reply{Silence: silenceNoAddress}
	}
	p := s.poolOf(want)
	// The address must be on the client's subnet (giaddr or link) and be
	// free for it; a reservation pins it.
	if gp := s.pool(ipFrom(req.GatewayIPAddr), link); p == nil || (gp != nil && gp != p && res == nil) {
		return s.nak(req, "address not on this subnet")
	}
	if res != nil && res.Address != want {
		if l, ok := s.leases[key]; ok && l.State == LeaseBound && l.Address == want && !sid.IsValid() {
			// IP sync (DESIGN.md §4): the client's reservation moved while
			// it was bound. Its renewal (or INIT-REBOOT) asks for an
			// address it may no longer have, which RFC 2131 §4.3.2 NAKs:
			// the client drops it and rediscovers (§4.4.1), so it gets the
			// new one from INIT. An ACK with another yiaddr would leave a
			// standard client with both addresses (dhcpcd keeps the old).
			return s.nak(req, "reservation moved to "+res.Address.String()+"; rediscover")
		}
		return s.nak(req, "address reserved for another client")
	}
	if !s.free(want, key, res, now) {
		return s.nak(req, "address in use")
	}
	return s.ack(req, p, res, want, now, false)
}

func (s *Server) ack(req *dhcpv4.DHCPv4, p *Pool, res *Reservation, addr netip.Addr, now time.Time, rapid bool) Reply {
	key := keyOf(req)
	// A renewal (RENEWING or REBINDING with the bound address as ciaddr)
	// extends the binding its holder made; anything else makes a new one.
	prev, had := s.leases[key]
	extends := had && prev.State == LeaseBound && !now.After(prev.Expiry) && prev.Address.IsValid() &&
		ipFrom(req.ClientIPAddr) == prev.Address
	withNonce := s.cfg.ForceRenewNonce && nonceCapable(req)
	giveKey := withNonce && (!extends || len(prev.Nonce) != nonceLen)
	var replay uint64
	if giveKey {
		// Taken first: without a value no promise is made (the client
		// retransmits).
		var err error
		if replay, err = s.replay(); err != nil {
			return Reply{Silence: "replay counter unavailable"}
		}
	}
	l := s.record(req, key, addr)
	l.Address, l.State, l.Start, l.Expiry = addr, LeaseBound, now, now.Add(p.LeaseTime)
	l.Hostname = req.HostName()
	// RFC 6704 §3.2 / dhcpcd: a FORCERENEW carries the xid of the client's
	// last exchange, so the xid of every ACK is kept with the lease.
	l.XID = req.TransactionID
	if gi := giaddrOf(req); !extends || (gi.IsValid() && gi != l.Address) {
		// Where the binding lives is where it was made; the holder's own
		// unicast renewals, which bypass the relay, do not move it.
		l.GIAddr = giaddrOf(req)
		l.CircuitID, l.RemoteID = relayInfoOf(req)
	}
	l.CloudServer = p.CloudServer
	if res != nil && res.CloudServer.IsValid() {
		l.CloudServer = res.CloudServer
	}
	s.byAddr[addr] = key
	m := s.reply(req, dhcpv4.MessageTypeAck, p, res, addr)
	if rapid {
		m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil))
	}
	// RFC 6704 §3.2's key is a secret between the server and the client it
	// was given to: it goes out once, in the ACK that makes the binding
	// (a new key for every new binding, so a previous holder's key stops
	// working), and never again; renewals' ACKs carry none and the client
	// keeps the key it has. A binding that has no key yet (FORCERENEW just
	// enabled) gets its first one in a renewal, sent to its address.
	switch {
	case !withNonce:
		if !extends {
			l.Nonce = nil
		}
	case giveKey:
		l.Nonce = make([]byte, nonceLen)
		rand.Read(l.Nonce)
		// A fresh value from the shared counter, above the last
		// FORCERENEW's: a client (dhcpcd) checks the ACK's value too.
		l.Replay = replay
		m.UpdateOption(NonceOption(l.Replay, l.Nonce))
	}
	c := *l
	return Reply{Msg: m, To: replyTo(req, m), Commit: &c}
}

// nonceCapable reports whether the client offered RFC 6704 HMAC-MD5.
func nonceCapable(req *dhcpv4.DHCPv4) bool {
	return bytes.IndexByte(req.GetOneOption(OptionForceRenewNonceCapable), authAlgHMACMD5) >= 0
}

func (s *Server) nak(req *dhcpv4.DHCPv4, why string) Reply {
	m, _ := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithServerIP(net.IPv4zero))
	m.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(s.cfg.ServerID.AsSlice())))
	m.UpdateOption(dhcpv4.OptMessage(why))
	m.YourIPAddr, m.ClientIPAddr = net.IPv4zero, net.IPv4zero
	// RFC 2131 §4.1 broadcasts a NAK without giaddr. A RENEWING or
	// REBINDING client (ciaddr set) still holds ciaddr and may listen only
	// there: dhcpcd, once bound, reads a socket bound to its address, which
	// no broadcast reaches. Its NAK goes to ciaddr, as its ACK would.
	to := netip.AddrPortFrom(bcast4, ClientPort)
	if ci := ipFrom(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
		to = netip.AddrPortFrom(ci, ClientPort)
	}
	if gi := ipFrom(req.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
		to = netip.AddrPortFrom(gi, ServerPort)
		m.SetBroadcast()
	}
	return Reply{Msg: m, To: to}
}

func (s *Server) decline(req *dhcpv4.DHCPv4, now time.Time) Reply {
	key := keyOf(req)
	addr := ipFrom(req.RequestedIPAddress())
	l, ok := s.leases[key]
	if !ok || l.Address != addr {
		return Reply{Silence: "decline of an unknown lease"}
	}
	// RFC 2131 §4.3.3: mark the address as not available; hold it for a
	// while under its own key so the client can get another one.
	delete(s.leases, key)
	dk := "declined:" + addr.String()
	d := &ServerLease{Key: dk, Address: addr, State: LeaseDeclined, Start: now, Expiry: now.Add(10 * time.Minute), MAC: l.MAC}
	s.leases[dk] = d
	s.byAddr[addr] = dk
	c := *d
	// The client's own row goes too, or a restarted server would find it
	// still bound to the address it declined.
	return Reply{Commit: &c, Forget: []string{key}}
}

func (s *Server) release(req *dhcpv4.DHCPv4, now time.Time) Reply {
	l, ok := s.leases[keyOf(req)]
	if !ok || l.Address != ipFrom(req.ClientIPAddr) || l.State != LeaseBound {
		return Reply{Silence: "release of an unknown lease"}
	}
	l.State, l.Expiry = LeaseReleased, now
	c := *l
	return Reply{Commit: &c}
}

func (s *Server) inform(req *dhcpv4.DHCPv4, link []netip.Prefix) Reply {
	ci := ipFrom(req.ClientIPAddr)
	p := s.poolOf(ci)
	if p == nil {
		return Reply{Silence: "inform from outside the pools"}
	}
	m := s.reply(req, dhcpv4.MessageTypeAck, p, nil, netip.Addr{})
	m.DeleteOption(dhcpv4.OptionIPAddressLeaseTime)
	m.DeleteOption(dhcpv4.OptionRenewTimeValue)
	m.DeleteOption(dhcpv4.OptionRebindingTimeValue)
	return Reply{Msg: m, To: replyTo(req, m)}
}

func ips(as []netip.Addr) []net.IP {
	out := make([]net.IP, len(as))
	for i, a := range as {
		out[i] = net.IP(a.AsSlice())
	}
	return out
}

// reply builds an OFFER or ACK with the pool's options (RFC 2131 §4.3.1
// table 3): the relay's option 82 and the client identifier are echoed.
func (s *Server) reply(req *dhcpv4.DHCPv4, t dhcpv4.MessageType, p *Pool, res *Reservation, addr netip.Addr) *dhcpv4.DHCPv4 {
	m, _ := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(t))
	m.Flags = req.Flags
	m.ServerIPAddr = net.IPv4zero
	if addr.IsValid() {
		m.YourIPAddr = net.IP(addr.AsSlice())
	}
	m.ClientIPAddr = req.ClientIPAddr
	m.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(s.cfg.ServerID.AsSlice())))
	lt := p.LeaseTime
	m.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lt))
	m.UpdateOption(dhcpv4.OptRenewTimeValue(lt / 2))
	m.UpdateOption(dhcpv4.OptRebindingTimeValue(lt * 7 / 8))
	m.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(p.Subnet.Bits(), 32)))
	if len(p.Routers) > 0 {
		m.UpdateOption(dhcpv4.OptRouter(ips(p.Routers)...))
	}
	if len(p.DNS) > 0 {
		m.UpdateOption(dhcpv4.OptDNS(ips(p.DNS)...))
	}
	if p.Domain != "" {
		m.UpdateOption(dhcpv4.OptDomainName(p.Domain))
	}
	cloud := p.CloudServer
	if res != nil && res.CloudServer.IsValid() {
		cloud = res.CloudServer
	}
	if cloud.IsValid() {
		m.UpdateOption(dhcpv4.OptGeneric(OptionCloudServer, cloud.AsSlice()))
	}
	return m
}

// replyTo is where a reply goes (RFC 2131 §4.1): to the relay's giaddr on
// port 67, to ciaddr when the client has one, else broadcast (a server
// without ARP injection cannot unicast to an address nobody owns yet).
func replyTo(req, m *dhcpv4.DHCPv4) netip.AddrPort {
	if gi := ipFrom(req.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
		return netip.AddrPortFrom(gi, ServerPort)
	}
	if ci := ipFrom(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
		return netip.AddrPortFrom(ci, ClientPort)
	}
	return netip.AddrPortFrom(bcast4, ClientPort)
}

// Entitled is the address and cloud server a bound lease should have under
// the current configuration (its reservation's, else its own address and its
// pool's cloud server).
func (s *Server) Entitled(l ServerLease) (netip.Addr, netip.Addr) {
	id, _ := hex.DecodeString(l.ClientID)
	mac, _ := net.ParseMAC(l.MAC)
	addr, cloud := l.Address, netip.Addr{}
	if p := s.poolOf(l.Address); p != nil {
		cloud = p.CloudServer
	}
	if res := s.reservation(id, mac); res != nil {
		addr = res.Address
		if p := s.poolOf(addr); p != nil {
			cloud = p.CloudServer
		}
		if res.CloudServer.IsValid() {
			cloud = res.CloudServer
		}
	}
	return addr, cloud
}

// ForceRenew builds a signed FORCERENEW for a bound lease (RFC 3203 §4,
// RFC 6704 §3.3) and returns the raw message, the address to send it to and
// the lease with the replay value it carries.
func (s *Server) ForceRenew(key string) ([]byte, netip.AddrPort, *ServerLease, error) {
	l, ok := s.leases[key]
	if !ok {
		return nil, netip.AddrPort{}, nil, errNotBound(key)
	}
	replay, err := s.replay()
	if err != nil {
		return nil, netip.AddrPort{}, nil, err
	}
	raw, to, err := BuildForceRenew(*l, s.cfg.ServerID, replay)
	if err != nil {
		return nil, netip.AddrPort{}, nil, err
	}
	l.Replay = replay
	c := *l
	return raw, to, &c, nil
}

// BuildForceRenew signs a FORCERENEW for a stored lease: unicast to the
// client's address, port 68, with the xid of the lease's last ACK, keyed by
// the lease's nonce, with the replay detection value replay (the next
// value of the server's ReplayCounter).
func BuildForceRenew(l ServerLease, serverID netip.Addr, replay uint64) ([]byte, netip.AddrPort, error) {
	if l.State != LeaseBound {
		return nil, netip.AddrPort{}, errNotBound(l.Key)
	}
	if len(l.Nonce) != nonceLen {
		return nil, netip.AddrPort{}, errNoNonce(l.Key)
	}
	mac, err := net.ParseMAC(l.MAC)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("lease %s: %w", l.Key, err)
	}
	m, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(MessageTypeForceRenew),
		dhcpv4.WithTransactionID(l.XID))
	m.OpCode = dhcpv4.OpcodeBootReply
	m.ClientIPAddr = net.IP(l.Address.AsSlice())
	m.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(serverID.AsSlice())))
	if id, err := hex.DecodeString(l.ClientID); err == nil && len(id) > 0 {
		m.UpdateOption(dhcpv4.OptClientIdentifier(id))
	}
	raw, err := SignForceRenew(m, replay, l.Nonce)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return raw, netip.AddrPortFrom(l.Address, ClientPort), nil
}

type errNotBound string

func (e errNotBound) Error() string { return "client " + string(e) + " has no bound lease" }

type errNoNonce string

func (e errNoNonce) Error() string {
	return "client " + string(e) + " did not negotiate RFC 6704 nonce authentication; a FORCERENEW would be rejected"
}
