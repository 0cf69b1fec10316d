package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flynn/noise"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/profiles"
)

// Client is the tunnel_client role: a TUN virtual NIC whose traffic goes
// through one UDP flow to the tunnel server.
type Client struct {
	cfg profiles.TunnelClient

	drops counters
	// sess is the current session; prev the one the last rekey replaced,
	// kept to open what the server sent before it switched.
	sess, prev atomic.Pointer[Session]
	// RekeyAfter is how long a session is used before the client runs a
	// new handshake for fresh keys (WireGuard's REKEY_AFTER_TIME, 2 min).
	RekeyAfter time.Duration
	rekeys     atomic.Uint64

	mu       sync.Mutex
	asg      Assignment
	up       bool
	lastRecv time.Time

	pktsIn, pktsOut, bytesIn, bytesOut atomic.Uint64
}

// NewClient builds the role from its profile section.
func NewClient(cfg profiles.TunnelClient) *Client {
	return &Client{cfg: cfg, RekeyAfter: DefaultRekeyAfter,
		drops: newCounters(DropTruncated, DropMalformed, DropBadMAC, DropBadAuth, DropReplayed, DropUnknownIndex, DropNoTunnel, CookieSent)}
}

// DefaultRekeyAfter is the age of a session at which the client rekeys.
const DefaultRekeyAfter = 2 * time.Minute

// Kind implements engine.Role.
func (c *Client) Kind() string { return "tunnel_client" }

// Rekeys counts the sessions replaced by a rekey.
func (c *Client) Rekeys() uint64 { return c.rekeys.Load() }

// Drops returns the drop counters.
func (c *Client) Drops() map[string]uint64 { return c.drops.snapshot() }

// Assignment returns the virtual NIC's configuration and whether the tunnel is up.
func (c *Client) Assignment() (Assignment, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.asg, c.up
}

func (c *Client) tunName() string {
	if c.cfg.TUN != "" {
		return c.cfg.TUN
	}
	return "tn0"
}

// clientIO is what one Run holds.
type clientIO struct {
	env       *engine.Env
	key       noise.DHKey
	serverPub PublicKey
	conn      engine.UDPConn
	tun       engine.TUN
	routed    bool
	// in reads the socket for both the handshake and the tunnel: once
	// read in batches, it is read only so (engine.BatchUDPConn).
	in *udpReader
}

// Run implements engine.Role.
func (c *Client) Run(ctx context.Context, env *engine.Env) error {
	env.Progress.Plan("key", "tun", "established", "routes")
	io := &clientIO{env: env}
	var err error
	if io.key, err = (KeySource{File: c.cfg.PrivateKeyFile, Env: c.cfg.PrivateKeyEnv, Generate: c.cfg.GenerateKey}).Load(); err != nil {
		return fmt.Errorf("tunnel client: %w", err)
	}
	if io.serverPub, err = c.serverKey(ctx, env.Log); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	env.Progress.Done("key")
	mtu := c.cfg.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if io.tun, err = env.Host.CreateTUN(c.tunName(), mtu); err != nil {
		return fmt.Errorf("tunnel client: %w", err)
	}
	defer io.tun.Close()
	quietIPv6(env, io.tun.Name())
	if err := env.Host.SetLinkUp(io.tun.Name(), true); err != nil {
		return fmt.Errorf("tunnel client: bring %s up: %w", io.tun.Name(), err)
	}
	env.Progress.Done("tun")
	laddr := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	if !c.cfg.Server.Addr().Is4() {
		laddr = netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
	}
	if io.conn, err = env.Host.ListenUDP(laddr, engine.UDPOptions{}); err != nil {
		return fmt.Errorf("tunnel client: open UDP socket: %w", err)
	}
	defer io.conn.Close()
	growBuffers(io.conn)
	io.in = newUDPReader(io.conn)

	// Either loop ending ends the other: a client that cannot read its TUN
	// must say so, not keep a tunnel up that carries nothing.
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var tunErr error
	wg.Add(1)
	go func() { defer wg.Done(); tunErr = c.tunLoop(lctx, io); stop() }()
	err = c.loop(lctx, io)
	if s := c.sess.Load(); s != nil {
		// Tell the server so it frees the address now rather than at aging.
		io.conn.WriteToUDPAddrPort(s.Seal(nil, TypeClose, nil), c.cfg.Server.AddrPort)
	}
	stop()
	io.tun.Close() // unblocks tunLoop's read; closing again on return is harmless
	wg.Wait()
	if tunErr != nil && ctx.Err() == nil {
		return tunErr
	}
	return err
}

// serverKey reads the server's public key, waiting for a lab server to
// write its key file.
func (c *Client) serverKey(ctx context.Context, log *slog.Logger) (PublicKey, error) {
	if c.cfg.ServerPublicKey != "" {
		k, err := ParsePublicKey(c.cfg.ServerPublicKey)
		if err != nil {
			return k, fmt.Errorf("tunnel client: server_public_key: %w", err)
		}
		return k, nil
	}
	warned := time.Now().Add(3 * time.Second)
	for {
		k, err := ReadPublicKeyFile(c.cfg.ServerPublicKeyFile)
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return k, fmt.Errorf("tunnel client: %w", err)
		}
		if time.Now().After(warned) {
			log.Warn("waiting for the server's public key file", "path", c.cfg.ServerPublicKeyFile)
			warned = time.Now().Add(time.Minute)
		}
		select {
		case <-ctx.Done():
			return k, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Client) heartbeat() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.asg.Heartbeat > 0 {
		return time.Duration(c.asg.Heartbeat) * time.Second
	}
	return c.cfg.Heartbeat.Or(DefaultHeartbeat)
}

// loop is the client's state machine: establish (with backoff), then keep
// the tunnel alive with heartbeats until the server falls silent.
func (c *Client) loop(ctx context.Context, io *clientIO) error {
	backoff := time.Second
	for ctx.Err() == nil {
		if err := c.establish(ctx, io, &backoff); err != nil {
			return err
		}
		if ctx.Err() != nil {
			break
		}
		c.keepAlive(ctx, io)
	}
	return nil // stopped: the normal end
}

// establish sends establishment requests until a response arrives,
// waiting longer after each unanswered one (1 s doubling to 30 s).
func (c *Client) establish(ctx context.Context, io *clientIO, backoff *time.Duration) error {
	var cookie []byte
	r := io.in
	for ctx.Err() == nil {
		sender := randomIndex()
		req, in, err := Initiate(io.key, io.serverPub, sender, time.Now(), cookie)
		if err != nil {
			return err
		}
		if _, err := io.conn.WriteToUDPAddrPort(req, c.cfg.Server.AddrPort); err != nil {
			io.env.Log.Debug("establishment request not sent", "err", err)
		}
		deadline := time.Now().Add(*backoff)
		for ctx.Err() == nil && time.Now().Before(deadline) {
			io.conn.SetReadDeadline(minTime(deadline, time.Now().Add(250*time.Millisecond)))
			n, err := r.read()
			if err != nil {
				continue
			}
			for i := range n {
				b, from := r.datagram(i)
				if from != c.cfg.Server.AddrPort {
					c.drops.inc(DropMalformed)
					continue
				}
				typ, err := MessageType(b)
				if err != nil {
					c.drops.countError(err)
					continue
				}
				switch typ {
				case TypeCookie:
					if ck, err := in.OpenCookie(b); err == nil {
						cookie = ck
						c.drops.inc(CookieSent)
						deadline = time.Now() // resend at once with the cookie
					} else {
						c.drops.countError(err)
					}
				case TypeResponse:
					sess, asg, err := in.Complete(b, io.key.Public)
					if err != nil {
						c.drops.countError(err)
						continue
					}
					*backoff = time.Second
					return c.established(io, sess, asg)
				default:
					c.drops.inc(DropUnknownIndex) // transport for an old session
				}
			}
		}
		*backoff = min(*backoff*2, 30*time.Second)
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func randomIndex() uint32 {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err)
		}
		if i := binary.BigEndian.Uint32(b[:]); i != 0 {
			return i
		}
	}
}

// established configures the virtual NIC from the assignment (only what
// changed since the last tunnel) and installs the routes once.
func (c *Client) established(io *clientIO, sess *Session, asg Assignment) error {
	c.mu.Lock()
	prev, hadPrev := c.asg, c.asg.Address.IsValid()
	c.asg, c.up, c.lastRecv = asg, true, time.Now()
	c.mu.Unlock()
	c.sess.Store(sess)
	name := io.tun.Name()
	if !hadPrev || prev.Address != asg.Address {
		if hadPrev {
			io.env.DelAddress(name, engine.Address{Prefix: prev.Address}, "tunnel")
		}
		if err := io.env.AddAddress(name, engine.Address{Prefix: asg.Address}, "tunnel"); err != nil {
			return fmt.Errorf("tunnel client: address %s on %s: %w", asg.Address, name, err)
		}
	}
	io.env.Progress.Done("established")
	if !io.routed {
		for _, r := range c.cfg.Routes {
			if err := io.env.AddRoute(engine.Route{Dst: r.Prefix, Dev: name}, "tunnel"); err != nil {
				return fmt.Errorf("tunnel client: route %s dev %s: %w", r, name, err)
			}
		}
		io.routed = true
		io.env.Progress.Done("routes")
	}
	io.env.Emit.Emit(engine.KindTunnelUp, engine.Fields{
		"index": sess.Remote, "server": c.cfg.Server.String(), "virtual": asg.Address.String(), "gateway": asg.Gateway.String(),
	})
	return nil
}

// rekeying is a handshake run while the current session carries traffic.
type rekeying struct {
	in     *Initiation
	sent   time.Time
	cookie []byte
}

// keepAlive receives from the server, sends heartbeats and rekeys until the
// server has been silent for three heartbeat intervals.
func (c *Client) keepAlive(ctx context.Context, io *clientIO) {
	r, tw := io.in, newTUNWriter(io.tun)
	defer tw.flush()
	hb := c.heartbeat()
	dead := 3*hb + time.Second
	next := time.Now() // heartbeat at once: the server learns our endpoint
	born := time.Now() // of the current session
	var rk rekeying
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(next) {
			c.sendTransport(io, TypeHeartbeat, nil)
			next = now.Add(hb)
		}
		if now.Sub(born) > c.RekeyAfter && now.Sub(rk.sent) >= time.Second {
			c.startRekey(io, &rk, now)
		}
		c.mu.Lock()
		silent := now.Sub(c.lastRecv)
		c.mu.Unlock()
		if silent > dead {
			c.down(io, fmt.Sprintf("server silent for %s", silent.Round(time.Second)))
			return
		}
		io.conn.SetReadDeadline(minTime(next, now.Add(250*time.Millisecond)))
		n, err := r.read()
		if err != nil {
			continue // a timeout, or the socket closed as ctx ended
		}
		for i := range n {
			b, from := r.datagram(i)
			if from != c.cfg.Server.AddrPort {
				c.drops.inc(DropMalformed)
				continue
			}
			switch typ, _ := MessageType(b); typ {
			case TypeResponse, TypeCookie:
				if c.finishRekey(io, &rk, b) {
					born = time.Now()
				}
			default:
				if closed := c.receive(io, b, tw); closed {
					c.down(io, "closed by server")
					return
				}
			}
		}
		tw.flush()
		if tw.err != nil {
			io.env.Log.Debug("tun write failed", "tun", io.tun.Name(), "err", tw.err)
			tw.err = nil
		}
	}
}

// startRekey sends (or, after a second without answer, resends) an
// establishment request; the current session keeps carrying traffic.
func (c *Client) startRekey(io *clientIO, rk *rekeying, now time.Time) {
	req, in, err := Initiate(io.key, io.serverPub, randomIndex(), now, rk.cookie)
	if err != nil {
		io.env.Log.Warn("rekey request not built", "err", err)
		return
	}
	rk.in, rk.sent = in, now
	io.conn.WriteToUDPAddrPort(req, c.cfg.Server.AddrPort)
}

// finishRekey handles a response or cookie to the pending rekey; it reports
// whether the new session is in use.
func (c *Client) finishRekey(io *clientIO, rk *rekeying, b []byte) bool {
	if rk.in == nil {
		c.drops.inc(DropUnknownIndex)
		return false
	}
	if b[0] == TypeCookie {
		ck, err := rk.in.OpenCookie(b)
		if err != nil {
			c.drops.countError(err)
			return false
		}
		rk.cookie, rk.sent = ck, time.Time{} // resend at once with it
		return false
	}
	sess, asg, err := rk.in.Complete(b, io.key.Public)
	if err != nil {
		c.drops.countError(err)
		return false
	}
	*rk = rekeying{}
	c.prev.Store(c.sess.Swap(sess))
	c.rekeys.Add(1)
	c.mu.Lock()
	changed := asg.Address != c.asg.Address
	c.lastRecv = time.Now()
	c.mu.Unlock()
	if changed {
		// The server gave another address (it restarted without its
		// store): configure it as a new tunnel.
		if err := c.established(io, sess, asg); err != nil {
			io.env.Error(err)
		}
	}
	return true
}

// receive handles one transport message from the server, queueing a data
// packet on tw; it reports a close.
func (c *Client) receive(io *clientIO, b []byte, tw *tunWriter) bool {
	tr, err := ParseTransport(b)
	if err != nil {
		c.drops.countError(err)
		return false
	}
	s := c.sess.Load()
	if s == nil || tr.Receiver != s.Local {
		if p := c.prev.Load(); p != nil && tr.Receiver == p.Local {
			s = p
		} else {
			c.drops.inc(DropUnknownIndex)
			return false
		}
	}
	pt, err := s.Open(tw.next(), tr)
	if err != nil {
		c.drops.countError(err)
		return false
	}
	c.mu.Lock()
	c.lastRecv = time.Now()
	c.mu.Unlock()
	c.pktsIn.Add(1)
	c.bytesIn.Add(uint64(len(pt)))
	switch tr.Type {
	case TypeData:
		tw.push(pt)
	case TypeClose:
		return true
	}
	return false
}

func (c *Client) down(io *clientIO, reason string) {
	s := c.sess.Swap(nil)
	c.prev.Store(nil)
	c.mu.Lock()
	c.up = false
	c.mu.Unlock()
	idx := uint32(0)
	if s != nil {
		idx = s.Remote
	}
	io.env.Emit.Emit(engine.KindTunnelDown, engine.Fields{"index": idx, "server": c.cfg.Server.String(), "reason": reason})
}

func (c *Client) sendTransport(io *clientIO, typ byte, pt []byte) {
	s := c.sess.Load()
	if s == nil {
		return
	}
	io.conn.WriteToUDPAddrPort(s.Seal(make([]byte, 0, len(pt)+TransportOverhead), typ, pt), c.cfg.Server.AddrPort)
	c.pktsOut.Add(1)
	c.bytesOut.Add(uint64(len(pt)))
}

// tunLoop carries packets from the virtual NIC into the tunnel: each is
// sealed where the TUN read put it and sent with the others of its read.
// It returns nil once the TUN is closed or ctx ends, and a read error
// otherwise.
func (c *Client) tunLoop(ctx context.Context, io *clientIO) error {
	r, w := newTUNReader(io.tun), newUDPWriter(io.conn)
	for {
		n, err := r.read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return nil // closed on stop
			}
			return fmt.Errorf("tunnel client: read %s: %w", io.tun.Name(), err)
		}
		s := c.sess.Load()
		for i := range n {
			pkt := r.packet(i)
			if s == nil {
				c.drops.inc(DropNoTunnel)
				continue
			}
			w.send(s.SealInPlace(pkt, TypeData), c.cfg.Server.AddrPort)
			c.pktsOut.Add(1)
			c.bytesOut.Add(uint64(len(pkt) - transportHeaderLen))
		}
		w.flush()
		if w.err != nil {
			io.env.Log.Debug("tunnel send failed", "err", w.err)
			w.err = nil
		}
	}
}

// Report implements engine.Reporter: the client's own tunnel.
func (c *Client) Report(ns *engine.NodeSnapshot) {
	s := c.sess.Load()
	if s == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ns.Tunnels = append(ns.Tunnels, engine.TunnelRow{
		Index: s.Remote, Endpoint: c.cfg.Server.String(), Virtual: c.asg.Address.Addr().String(), LastHeartbeat: c.lastRecv,
		PacketsIn: c.pktsIn.Load(), PacketsOut: c.pktsOut.Load(), BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
	})
}
