package dhcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/fieldcon/fieldcon/engine"
)

// clientIO is a client's sockets. Without an address the client talks
// through a raw packet socket and builds the IPv4/UDP headers itself; acting
// as its own relay it uses a UDP socket on giaddr:67.
type clientIO struct {
	iface  string
	mac    net.HardwareAddr
	pkt    engine.PacketConn
	drain  engine.UDPConn
	relay  engine.UDPConn
	server netip.Addr
	src    netip.Addr // source address for unicast before a lease
	buf    []byte
}

func openClientIO(ctx context.Context, env *engine.Env, iface string, giaddr, server netip.Addr) (*clientIO, error) {
	l, err := env.Host.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("dhcp client: interface %s: %w", iface, err)
	}
	if !l.Up {
		if err := env.Host.SetLinkUp(iface, true); err != nil {
			return nil, fmt.Errorf("dhcp client: bring %s up: %w", iface, err)
		}
	}
	cio := &clientIO{iface: iface, mac: l.MAC, server: server, buf: make([]byte, 65536)}
	if server.IsValid() && !giaddr.IsValid() {
		// Linux drops a unicast datagram from 0.0.0.0 as a martian
		// source: unicast to a named server goes from the address the
		// interface already has (RHCP's temporary address).
		if ps, err := WaitIPv4(ctx, env, iface, 5*time.Second); err == nil && len(ps) > 0 {
			cio.src = ps[0].Addr()
		}
		if !cio.src.IsValid() {
			return nil, fmt.Errorf("dhcp client: unicast to %s needs an IPv4 address on %s to send from (set giaddr or broadcast instead)", server, iface)
		}
	}
	if giaddr.IsValid() {
		if !server.IsValid() {
			return nil, errors.New("dhcp client: acting as relay (giaddr) needs a server address")
		}
		cio.relay, err = env.Host.ListenUDP(netip.AddrPortFrom(giaddr, ServerPort), engine.UDPOptions{ReuseAddr: true})
		if err != nil {
			return nil, fmt.Errorf("dhcp client: listen on %s:%d as relay: %w", giaddr, ServerPort, err)
		}
		return cio, nil
	}
	cio.pkt, err = env.Host.OpenPacket(iface, engine.PacketOptions{Protocol: engine.EthIPv4, Filter: ClientFilter()})
	if err != nil {
		return nil, fmt.Errorf("dhcp client: packet socket on %s (needs CAP_NET_RAW): %w", iface, err)
	}
	// Once bound, replies and FORCERENEW come unicast to port 68; a socket
	// there keeps the kernel from answering them with port unreachable.
	// The packet socket reads them; this one is only drained.
	if d, err := env.Host.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), ClientPort),
		engine.UDPOptions{Device: iface, ReuseAddr: true}); err == nil {
		cio.drain = d
		go func() {
			b := make([]byte, 1500)
			for {
				if _, _, err := d.ReadFromUDPAddrPort(b); errors.Is(err, net.ErrClosed) {
					return
				}
			}
		}()
	}
	return cio, nil
}

func (c *clientIO) close() {
	if c.pkt != nil {
		c.pkt.Close()
	}
	if c.drain != nil {
		c.drain.Close()
	}
	if c.relay != nil {
		c.relay.Close()
	}
}

// send transmits a client action's message.
func (c *clientIO) send(a Action) error {
	raw := a.Msg.ToBytes()
	if c.relay != nil {
		_, err := c.relay.WriteToUDPAddrPort(raw, netip.AddrPortFrom(c.server, ServerPort))
		return err
	}
	src := netip.IPv4Unspecified()
	if c.src.IsValid() && a.To != bcast4 {
		src = c.src
	}
	if ci := ipFrom(a.Msg.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
		src = ci
	}
	f := BuildFrame(Frame{SrcMAC: c.mac, DstMAC: a.ToMAC, Src: netip.AddrPortFrom(src, ClientPort),
		Dst: netip.AddrPortFrom(a.To, ServerPort), Payload: raw})
	return c.pkt.WritePacket(f, engine.EthIPv4, nil)
}

var errTimeout = errors.New("timeout")

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &t) && t.Timeout())
}

// read returns the next DHCP payload for the client, or errTimeout at the
// deadline.
func (c *clientIO) read(deadline time.Time) ([]byte, Source, error) {
	for {
		if c.relay != nil {
			c.relay.SetReadDeadline(deadline)
			n, from, err := c.relay.ReadFromUDPAddrPort(c.buf)
			if err != nil {
				if isTimeout(err) {
					return nil, Source{}, errTimeout
				}
				return nil, Source{}, err
			}
			return c.buf[:n], Source{IP: from.Addr().Unmap()}, nil
		}
		c.pkt.SetReadDeadline(deadline)
		n, info, err := c.pkt.ReadPacket(c.buf)
		if err != nil {
			if isTimeout(err) {
				return nil, Source{}, errTimeout
			}
			return nil, Source{}, err
		}
		if info.Direction == engine.DirOut {
			continue
		}
		f, err := ParseFrame(c.buf[:n])
		if err != nil || f.Dst.Port() != ClientPort || f.Src.Port() != ServerPort {
			continue
		}
		return f.Payload, Source{MAC: append(net.HardwareAddr(nil), f.SrcMAC...), IP: f.Src.Addr()}, nil
	}
}

// ProbeConfig is the RFC 5227 §2.1.1 probe: Count probes Interval apart,
// then Wait for answers. The RFC's 1–2s intervals are too slow for
// commissioning, so they are configurable and default short.
type ProbeConfig struct {
	Count    int
	Interval time.Duration
	Wait     time.Duration
}

func (p *ProbeConfig) defaults() {
	if p.Count <= 0 {
		p.Count = 2
	}
	if p.Interval <= 0 {
		p.Interval = 100 * time.Millisecond
	}
	if p.Wait <= 0 {
		p.Wait = 200 * time.Millisecond
	}
}

// arpProbe sends ARP probes for addr (sender IP 0.0.0.0, RFC 5227 §2.1.1)
// and reports whether another station answered for it or claimed it.
func arpProbe(ctx context.Context, env *engine.Env, iface string, mac net.HardwareAddr, addr netip.Addr, pc ProbeConfig) (bool, net.HardwareAddr, error) {
	pc.defaults()
	s, err := env.Host.OpenPacket(iface, engine.PacketOptions{Protocol: engine.EthARP, Filter: ARPFilter(addr)})
	if err != nil {
		return false, nil, fmt.Errorf("arp probe on %s: %w", iface, err)
	}
	defer s.Close()
	probe := BuildARP(ARP{Op: 1, EthSrc: mac, SenderMAC: mac, TargetMAC: make(net.HardwareAddr, 6), TargetIP: addr})
	buf := make([]byte, 1500)
	end := time.Now().Add(time.Duration(pc.Count-1)*pc.Interval + pc.Wait)
	next := time.Now()
	sent := 0
	for time.Now().Before(end) && ctx.Err() == nil {
		if sent < pc.Count && !time.Now().Before(next) {
			if err := s.WritePacket(probe, engine.EthARP, nil); err != nil {
				return false, nil, fmt.Errorf("arp probe on %s: %w", iface, err)
			}
			sent++
			next = time.Now().Add(pc.Interval)
		}
		dl := end
		if sent < pc.Count && next.Before(dl) {
			dl = next
		}
		s.SetReadDeadline(dl)
		n, info, err := s.ReadPacket(buf)
		if err != nil {
			if isTimeout(err) {
				continue
			}
			return false, nil, fmt.Errorf("arp probe on %s: %w", iface, err)
		}
		if info.Direction == engine.DirOut {
			continue
		}
		a, err := ParseARP(buf[:n])
		if err != nil || bytes.Equal(a.SenderMAC, mac) {
			continue
		}
		// RFC 5227 §2.1.1: a packet whose sender IP is the address, or a
		// probe for it from another host, is a conflict.
		if a.SenderIP == addr || (a.Op == 1 && a.SenderIP.IsUnspecified() && a.TargetIP == addr) {
			return true, append(net.HardwareAddr(nil), a.SenderMAC...), nil
		}
	}
	return false, nil, ctx.Err()
}

// loop drives c until handle says stop or ctx ends. handle sees every action
// except sends and probes, which loop carries out.
func loop(ctx context.Context, env *engine.Env, cio *clientIO, c *Client, pc ProbeConfig, acts []Action, handle func(Action) (bool, error)) error {
	for {
		for len(acts) > 0 {
			a := acts[0]
			acts = acts[1:]
			switch a.Kind {
			case ActSend:
				if err := cio.send(a); err != nil {
					env.Log.Warn("dhcp send failed", "iface", cio.iface, "err", err)
				}
			case ActProbe:
				conflict, by, err := arpProbe(ctx, env, cio.iface, cio.mac, a.Lease.Address.Addr(), pc)
				if err != nil {
					return err
				}
				acts = append(acts, c.ProbeDone(time.Now(), conflict, by)...)
			default:
				stop, err := handle(a)
				if stop || err != nil {
					return err
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// Wake at the client's next deadline, and at least every 200ms to
		// notice ctx.
		dl := time.Now().Add(200 * time.Millisecond)
		if d := c.Deadline(); !d.IsZero() && d.Before(dl) {
			dl = d
		}
		payload, src, err := cio.read(dl)
		now := time.Now()
		switch {
		case err == nil:
			acts = c.Receive(now, payload, src)
		case errors.Is(err, errTimeout):
		default:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("dhcp client on %s: %w", cio.iface, err)
		}
		acts = append(acts, c.Tick(now)...)
	}
}

// AcquireConfig configures a one-shot acquisition (RHCP+DHCP, DESIGN.md §1).
type AcquireConfig struct {
	Iface    string
	ClientID []byte
	// Server is the unicast target; zero broadcasts.
	Server netip.Addr
	// GIAddr makes the client its own relay: it sends from GIAddr to the
	// server's port 67 and gets the reply on GIAddr:67. Needed when the
	// server is behind a router (DESIGN.md "Notes from the field").
	GIAddr netip.Addr
	// Timeout bounds the whole acquisition (default 30s).
	Timeout      time.Duration
	VendorClass  string
	Hostname     string
	Backoff      Backoff
	RapidCommit  bool
	NonceCapable bool
}

func (cfg AcquireConfig) client(mac net.HardwareAddr) ClientConfig {
	return ClientConfig{MAC: mac, ClientID: cfg.ClientID, VendorClass: cfg.VendorClass, Hostname: cfg.Hostname,
		Server: cfg.Server, GIAddr: cfg.GIAddr, Backoff: cfg.Backoff, RapidCommit: cfg.RapidCommit, NonceCapable: cfg.NonceCapable}
}

// Acquire runs DISCOVER/OFFER/REQUEST/ACK once and returns the lease. It
// does not configure the host: the caller decides (ApplyLease does the
// usual). It does not renew; a caller that keeps the address runs Keep
// with the lease (RHCP+DHCP does), or the dhcp_client role.
func Acquire(ctx context.Context, env *engine.Env, cfg AcquireConfig) (*Lease, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cio, err := openClientIO(ctx, env, cfg.Iface, cfg.GIAddr, cfg.Server)
	if err != nil {
		return nil, err
	}
	defer cio.close()
	c := NewClient(cfg.client(cio.mac))
	var lease *Lease
	err = loop(ctx, env, cio, c, ProbeConfig{}, c.Start(time.Now()), func(a Action) (bool, error) {
		switch a.Kind {
		case ActBind:
			lease = a.Lease
			return true, nil
		case ActEmit:
			env.Emit.Emit(a.Event, a.Fields)
		}
		return false, nil
	})
	if lease != nil {
		lease.Iface = cfg.Iface
		return lease, nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		target := "broadcast"
		if cfg.Server.IsValid() {
			target = cfg.Server.String()
		}
		return nil, fmt.Errorf("dhcp: no lease on %s from %s within %s (is a server answering? is a pool covering the subnet?)", cfg.Iface, target, cfg.Timeout)
	}
	if err == nil {
		err = errors.New("dhcp: acquisition ended without a lease")
	}
	return nil, err
}

// Release gives a lease from Acquire back to its server (RFC 2131 §4.4.6),
// through the same path it was acquired. It does not touch the host.
func Release(ctx context.Context, env *engine.Env, cfg AcquireConfig, l *Lease) error {
	if l == nil {
		return nil
	}
	cio, err := openClientIO(ctx, env, cfg.Iface, cfg.GIAddr, cfg.Server)
	if err != nil {
		return err
	}
	defer cio.close()
	c := NewClient(cfg.client(cio.mac))
	c.SetLease(l)
	for _, a := range c.Release(time.Now()) {
		if a.Kind == ActSend {
			if err := cio.send(a); err != nil {
				return fmt.Errorf("dhcp: release %s: %w", l.Address.Addr(), err)
			}
		}
	}
	env.Emit.Emit(engine.KindDHCPReleased, engine.Fields{"iface": cfg.Iface, "address": l.Address.String(), "server": l.Server.String()})
	return nil
}

// ApplyLease configures a lease's address on its interface with the lease's
// lifetime, and with routes a default route through its first router.
// The dhcp_client role applies its leases the same way (ClientRole.bind).
func ApplyLease(env *engine.Env, l *Lease, routes bool) error {
	if err := applyAddress(env, l, nil); err != nil {
		return fmt.Errorf("dhcp: add %s to %s: %w", l.Address, l.Iface, err)
	}
	if routes {
		if err := applyRoute(env, l, nil); err != nil {
			return fmt.Errorf("dhcp: default route via %s: %w", l.Routers[0], err)
		}
	}
	return nil
}

// applyAddress configures l's address on l.Iface with the lease's lifetimes.
// old is the lease l renews, or nil: a renewal of the same address refreshes
// its lifetimes without a new event.
func applyAddress(env *engine.Env, l, old *Lease) error {
	a := engine.Address{Prefix: l.Address, Valid: l.LeaseTime, Preferred: l.LeaseTime}
	if old == nil || old.Address != l.Address {
		return env.AddAddress(l.Iface, a, "dhcp")
	}
	return env.Host.AddAddress(l.Iface, a)
}

// applyRoute adds a default route through l's first router, unless l has
// none or old (the lease l renews, or nil) had the same address and router.
func applyRoute(env *engine.Env, l, old *Lease) error {
	if len(l.Routers) == 0 {
		return nil
	}
	if old != nil && old.Address == l.Address && len(old.Routers) > 0 && old.Routers[0] == l.Routers[0] {
		return nil
	}
	return env.AddRoute(engine.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: l.Routers[0], Dev: l.Iface}, "dhcp")
}

// WaitIPv4 waits up to timeout for iface to have IPv4 addresses (a static
// role of the same node configures them concurrently) and returns them,
// none if it still has none after timeout.
func WaitIPv4(ctx context.Context, env *engine.Env, iface string, timeout time.Duration) ([]netip.Prefix, error) {
	end := time.Now().Add(timeout)
	for {
		as, err := env.Host.Addresses(iface)
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", iface, err)
		}
		var out []netip.Prefix
		for _, a := range as {
			if a.Prefix.Addr().Is4() {
				out = append(out, a.Prefix)
			}
		}
		if len(out) > 0 || time.Now().After(end) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
