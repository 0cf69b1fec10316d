// Package fake is an in-memory engine.Host for unit tests without root. It
// keeps links, addresses, routes and neighbours in maps, records every change
// as an iproute2-like transcript (String), delivers UDP datagrams between
// fake hosts on one Network by destination address, and lets a test inject
// frames into packet sockets and read what roles sent.
package fake

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/bpf"

	"github.com/fieldcon/fieldcon/engine"
)

// Network joins fake hosts: a UDP datagram sent to an address is delivered to
// the host that has that address configured (or bound) and a socket on the port.
type Network struct {
	mu    sync.Mutex
	hosts []*Host
}

// NewNetwork returns an empty network.
func NewNetwork() *Network { return &Network{} }

// Host is a fake machine.
type Host struct {
	name string
	net  *Network

	mu         sync.Mutex
	links      map[string]*engine.Link
	addrs      map[string][]engine.Address
	routes     []engine.Route
	neighs     []engine.Neighbor
	sysctl     map[string]string
	transcript []string
	udp        []*udpConn
	packets    []*packetConn
	sent       map[string][][]byte
	watchers   []chan engine.Link
	nextIndex  int
	fault      func(cmd string) error
}

var _ engine.Host = (*Host)(nil)

// NewHost returns a fake host with the given links (all up), joined to n
// (which may be nil for a host on its own).
func NewHost(name string, n *Network, links ...string) *Host {
	h := &Host{
		name: name, net: n,
		links:  map[string]*engine.Link{},
		addrs:  map[string][]engine.Address{},
		sysctl: map[string]string{},
		sent:   map[string][][]byte{},
	}
	for _, l := range links {
		h.nextIndex++
		h.links[l] = &engine.Link{Index: h.nextIndex, Name: l, Kind: "veth", MTU: 1500, Up: true, Running: true,
			MAC: net.HardwareAddr{0x02, 0, 0, 0, byte(len(name)), byte(h.nextIndex)}}
	}
	if n != nil {
		n.mu.Lock()
		n.hosts = append(n.hosts, h)
		n.mu.Unlock()
	}
	return h
}

// SetFault makes the host consult f before each address, route or sysctl
// change, with the command it would record ("ip route add 198.51.100.0/24
// via 192.0.2.1 dev eth0 onlink"); an error from f fails the change, which
// is then neither made nor recorded. Tests use it to fail a later step of a
// role's work. nil removes the fault.
func (h *Host) SetFault(f func(cmd string) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fault = f
}

// failed returns the injected fault for cmd, if any (h.mu held).
func (h *Host) failed(cmd string) error {
	if h.fault == nil {
		return nil
	}
	if err := h.fault(cmd); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}

func (h *Host) record(format string, args ...any) {
	h.transcript = append(h.transcript, fmt.Sprintf(format, args...))
}

// String is the transcript of every change, one command per line.
func (h *Host) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.transcript, "\n")
}

// Transcript returns the recorded commands.
func (h *Host) Transcript() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.transcript...)
}

// Name implements engine.Host.
func (h *Host) Name() string { return h.name }

// Links implements engine.Host.
func (h *Host) Links() ([]engine.Link, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []engine.Link
	for _, l := range h.links {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

// LinkByName implements engine.Host.
func (h *Host) LinkByName(name string) (engine.Link, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l, ok := h.links[name]
	if !ok {
		return engine.Link{}, fmt.Errorf("link %s: %w", name, engine.ErrNotExist)
	}
	return *l, nil
}

// SetLinkUp implements engine.Host.
func (h *Host) SetLinkUp(name string, up bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	l, ok := h.links[name]
	if !ok {
		return fmt.Errorf("link %s: %w", name, engine.ErrNotExist)
	}
	l.Up, l.Running = up, up
	h.record("ip link set %s %s", name, map[bool]string{true: "up", false: "down"}[up])
	for _, w := range h.watchers {
		select {
		case w <- *l:
		default:
		}
	}
	return nil
}

// WatchLinks implements engine.Host.
func (h *Host) WatchLinks(ctx context.Context) (<-chan engine.Link, error) {
	c := make(chan engine.Link, 16)
	h.mu.Lock()
	h.watchers = append(h.watchers, c)
	h.mu.Unlock()
	go func() {
		<-ctx.Done()
		h.mu.Lock()
		defer h.mu.Unlock()
		for i, w := range h.watchers {
			if w == c {
				h.watchers = append(h.watchers[:i], h.watchers[i+1:]...)
				break
			}
		}
		close(c)
	}()
	return c, nil
}

// Addresses implements engine.Host.
func (h *Host) Addresses(iface string) ([]engine.Address, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if iface != "" {
		return append([]engine.Address(nil), h.addrs[iface]...), nil
	}
	var out []engine.Address
	for _, l := range h.sortedLinks() {
		out = append(out, h.addrs[l]...)
	}
	return out, nil
}

func (h *Host) sortedLinks() []string {
	var names []string
	for n := range h.links {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func addrString(iface string, a engine.Address) string {
	s := a.String() + " dev " + iface
	if a.Valid > 0 {
		s += fmt.Sprintf(" valid_lft %d preferred_lft %d", int(a.Valid.Seconds()), int(a.Preferred.Seconds()))
	}
	return s
}

// AddAddress implements engine.Host.
func (h *Host) AddAddress(iface string, a engine.Address) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.links[iface]; !ok {
		return fmt.Errorf("ip addr add %s: link %s: %w", a.Prefix, iface, engine.ErrNotExist)
	}
	if err := h.failed("ip addr add " + addrString(iface, a)); err != nil {
		return err
	}
	list := h.addrs[iface]
	for i, o := range list {
		if o.Prefix.Addr() == a.Prefix.Addr() {
			list[i] = a
			h.record("ip addr replace %s", addrString(iface, a))
			return nil
		}
	}
	h.addrs[iface] = append(list, a)
	h.record("ip addr add %s", addrString(iface, a))
	return nil
}

// DelAddress implements engine.Host.
func (h *Host) DelAddress(iface string, a engine.Address) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.failed(fmt.Sprintf("ip addr del %s dev %s", a.Prefix, iface)); err != nil {
		return err
	}
	list := h.addrs[iface]
	for i, o := range list {
		if o.Prefix == a.Prefix {
			h.addrs[iface] = append(list[:i], list[i+1:]...)
			h.record("ip addr del %s dev %s", a.Prefix, iface)
			return nil
		}
	}
	return fmt.Errorf("ip addr del %s dev %s: %w", a.Prefix, iface, engine.ErrNotExist)
}

// HasAddress reports whether addr is configured on any interface.
func (h *Host) HasAddress(addr netip.Addr) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hasAddressLocked(addr)
}

func (h *Host) hasAddressLocked(addr netip.Addr) bool {
	for _, list := range h.addrs {
		for _, a := range list {
			if a.Prefix.Addr() == addr {
				return true
			}
		}
	}
	return false
}

// Routes implements engine.Host.
func (h *Host) Routes() ([]engine.Route, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]engine.Route(nil), h.routes...), nil
}

// AddRoute implements engine.Host.
func (h *Host) AddRoute(r engine.Route) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Dev != "" {
		if _, ok := h.links[r.Dev]; !ok {
			return fmt.Errorf("ip route add %s: link %s: %w", r.Dst, r.Dev, engine.ErrNotExist)
		}
	}
	if err := h.failed(fmt.Sprintf("ip route add %s", r)); err != nil {
		return err
	}
	for i, o := range h.routes {
		if o.Dst == r.Dst && o.Metric == r.Metric {
			h.routes[i] = r
			h.record("ip route replace %s", r)
			return nil
		}
	}
	h.routes = append(h.routes, r)
	h.record("ip route add %s", r)
	return nil
}

// DelRoute implements engine.Host.
func (h *Host) DelRoute(r engine.Route) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.failed(fmt.Sprintf("ip route del %s", r)); err != nil {
		return err
	}
	for i, o := range h.routes {
		if o.Dst == r.Dst && o.Metric == r.Metric {
			h.routes = append(h.routes[:i], h.routes[i+1:]...)
			h.record("ip route del %s", r)
			return nil
		}
	}
	return fmt.Errorf("ip route del %s: %w", r.Dst, engine.ErrNotExist)
}

// Neighbors implements engine.Host.
func (h *Host) Neighbors(iface string) ([]engine.Neighbor, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []engine.Neighbor
	for _, n := range h.neighs {
		if iface == "" || n.Dev == iface {
			out = append(out, n)
		}
	}
	return out, nil
}

// SetNeighbor implements engine.Host.
func (h *Host) SetNeighbor(n engine.Neighbor) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n.Permanent {
		n.State = "PERMANENT"
	}
	state := "reachable"
	if n.Permanent {
		state = "permanent"
	}
	h.record("ip neigh replace %s lladdr %s dev %s nud %s", n.IP, n.MAC, n.Dev, state)
	for i, o := range h.neighs {
		if o.IP == n.IP && o.Dev == n.Dev {
			h.neighs[i] = n
			return nil
		}
	}
	h.neighs = append(h.neighs, n)
	return nil
}

// DelNeighbor implements engine.Host.
func (h *Host) DelNeighbor(n engine.Neighbor) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, o := range h.neighs {
		if o.IP == n.IP && o.Dev == n.Dev {
			h.neighs = append(h.neighs[:i], h.neighs[i+1:]...)
			h.record("ip neigh del %s dev %s", n.IP, n.Dev)
			return nil
		}
	}
	return fmt.Errorf("ip neigh del %s: %w", n.IP, engine.ErrNotExist)
}

// Sysctl implements engine.Host; unset keys read "0".
func (h *Host) Sysctl(key string) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, ok := h.sysctl[key]; ok {
		return v, nil
	}
	return "0", nil
}

// SetSysctl implements engine.Host.
func (h *Host) SetSysctl(key, value string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.failed(fmt.Sprintf("sysctl -w %s=%s", strings.ReplaceAll(key, "/", "."), value)); err != nil {
		return err
	}
	h.sysctl[key] = value
	h.record("sysctl -w %s=%s", strings.ReplaceAll(key, "/", "."), value)
	return nil
}

// Command implements engine.Host: fake hosts run nothing; the command fails.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "/nonexistent/fake-host-cannot-run", append([]string{name}, args...)...)
}

// Close implements engine.Host.
func (h *Host) Close() error { return nil }

// ---- UDP ----

type datagram struct {
	b    []byte
	from netip.AddrPort
}

type udpConn struct {
	h     *Host
	laddr netip.AddrPort
	in    chan datagram

	mu       sync.Mutex
	deadline time.Time
	closed   bool
	done     chan struct{}
}

// ListenUDP implements engine.Host.
func (h *Host) ListenUDP(laddr netip.AddrPort, opt engine.UDPOptions) (engine.UDPConn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.udp {
		if c.laddr == laddr && !opt.ReuseAddr {
			return nil, fmt.Errorf("listen udp %s: address already in use", laddr)
		}
	}
	c := &udpConn{h: h, laddr: laddr, in: make(chan datagram, 256), done: make(chan struct{})}
	h.udp = append(h.udp, c)
	return c, nil
}

func (c *udpConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.laddr) }

func (c *udpConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return nil
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (c *udpConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.mu.Lock()
	dl := c.deadline
	c.mu.Unlock()
	d, err := receive(c.in, c.done, dl)
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	return copy(b, d.b), d.from, nil
}

// receive waits for the next item on in until the deadline (zero: none) or
// until done closes, with the errors a kernel socket gives.
func receive[T any](in <-chan T, done <-chan struct{}, deadline time.Time) (T, error) {
	var zero T
	var timer <-chan time.Time
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return zero, timeoutError{}
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case v := <-in:
		return v, nil
	case <-timer:
		return zero, timeoutError{}
	case <-done:
		return zero, net.ErrClosed
	}
}

func (c *udpConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	from := c.laddr
	if !from.Addr().IsValid() || from.Addr().IsUnspecified() {
		from = netip.AddrPortFrom(c.h.firstAddr(), c.laddr.Port())
	}
	c.h.mu.Lock()
	c.h.record("udp %s > %s len %d", from, to, len(b))
	c.h.mu.Unlock()
	if c.h.net == nil {
		return len(b), nil
	}
	c.h.net.deliver(datagram{b: append([]byte(nil), b...), from: from}, to)
	return len(b), nil
}

func (c *udpConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
		c.h.mu.Lock()
		for i, o := range c.h.udp {
			if o == c {
				c.h.udp = append(c.h.udp[:i], c.h.udp[i+1:]...)
				break
			}
		}
		c.h.mu.Unlock()
	}
	return nil
}

func (h *Host) firstAddr() netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.sortedLinks() {
		for _, a := range h.addrs[l] {
			return a.Prefix.Addr()
		}
	}
	return netip.IPv4Unspecified()
}

// deliver hands a datagram to every socket on the port of the host that owns
// the destination address (or, for broadcast, of every host).
func (n *Network) deliver(d datagram, to netip.AddrPort) {
	n.mu.Lock()
	hosts := append([]*Host(nil), n.hosts...)
	n.mu.Unlock()
	bcast := to.Addr() == netip.AddrFrom4([4]byte{255, 255, 255, 255})
	for _, h := range hosts {
		h.mu.Lock()
		owns := bcast || h.hasAddressLocked(to.Addr())
		var targets []*udpConn
		for _, c := range h.udp {
			if c.laddr.Port() != to.Port() {
				continue
			}
			if owns && (c.laddr.Addr().IsUnspecified() || !c.laddr.Addr().IsValid() || c.laddr.Addr() == to.Addr()) ||
				c.laddr.Addr() == to.Addr() {
				targets = append(targets, c)
			}
		}
		h.mu.Unlock()
		for _, c := range targets {
			select {
			case c.in <- d:
			default: // a full socket buffer drops, as the kernel does
			}
		}
	}
}

// ---- packet sockets ----

type packetConn struct {
	h     *Host
	iface string
	opt   engine.PacketOptions
	vm    *bpf.VM // opt.Filter, run on each injected frame as the kernel would
	in    chan []byte

	mu       sync.Mutex
	deadline time.Time
	closed   bool
	done     chan struct{}
}

// OpenPacket implements engine.Host.
func (h *Host) OpenPacket(iface string, opt engine.PacketOptions) (engine.PacketConn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.links[iface]; !ok {
		return nil, fmt.Errorf("packet socket on %s: %w", iface, engine.ErrNotExist)
	}
	c := &packetConn{h: h, iface: iface, opt: opt, in: make(chan []byte, 256), done: make(chan struct{})}
	if len(opt.Filter) > 0 {
		// x/net/bpf's VM has no ancillary loads (SKF_AD_*) but ExtLen; a
		// program it cannot run is refused, not silently accepted.
		ins, ok := bpf.Disassemble(opt.Filter)
		vm, err := bpf.NewVM(ins)
		if !ok || err != nil {
			return nil, fmt.Errorf("packet socket on %s: filter the fake cannot run: %v", iface, err)
		}
		c.vm = vm
	}
	h.packets = append(h.packets, c)
	return c, nil
}

// Inject delivers a frame to every packet socket open on iface.
func (h *Host) Inject(iface string, frame []byte) {
	h.mu.Lock()
	var targets []*packetConn
	for _, c := range h.packets {
		if c.iface == iface {
			targets = append(targets, c)
		}
	}
	h.mu.Unlock()
	for _, c := range targets {
		f := frame
		if c.vm != nil {
			n, err := c.vm.Run(frame)
			if err != nil || n == 0 {
				continue
			}
			f = frame[:min(n, len(frame))]
		}
		select {
		case c.in <- append([]byte(nil), f...):
		default:
		}
	}
}

// Sent returns the frames written to packet sockets on iface.
func (h *Host) Sent(iface string) [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.sent[iface]...)
}

func (c *packetConn) ReadPacket(b []byte) (int, engine.PacketInfo, error) {
	c.mu.Lock()
	dl := c.deadline
	c.mu.Unlock()
	f, err := receive(c.in, c.done, dl)
	if err != nil {
		return 0, engine.PacketInfo{}, err
	}
	n := copy(b, f)
	return n, engine.PacketInfo{Time: time.Now(), CapLen: n, Len: len(f), Direction: engine.DirIn}, nil
}

func (c *packetConn) WritePacket(b []byte, protocol uint16, dst net.HardwareAddr) error {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	c.h.sent[c.iface] = append(c.h.sent[c.iface], append([]byte(nil), b...))
	c.h.record("packet %s proto 0x%04x len %d", c.iface, protocol, len(b))
	return nil
}

func (c *packetConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return nil
}

func (c *packetConn) LinkType() uint16 {
	if c.opt.Cooked {
		return 101
	}
	return 1
}

func (c *packetConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
		c.h.mu.Lock()
		for i, o := range c.h.packets {
			if o == c {
				c.h.packets = append(c.h.packets[:i], c.h.packets[i+1:]...)
				break
			}
		}
		c.h.mu.Unlock()
	}
	return nil
}

// ---- TUN ----

// TUN is a fake TUN device: packets written by the role appear on Out;
// packets sent into In are read by the role.
type TUN struct {
	name string
	h    *Host
	In   chan []byte
	Out  chan []byte
	once sync.Once
	done chan struct{}
}

// CreateTUN implements engine.Host.
func (h *Host) CreateTUN(name string, mtu int) (engine.TUN, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.links[name]; ok {
		return nil, fmt.Errorf("create tun %s: file exists", name)
	}
	h.nextIndex++
	h.links[name] = &engine.Link{Index: h.nextIndex, Name: name, Kind: "tun", MTU: mtu}
	h.record("ip tuntap add dev %s mode tun", name)
	t := &TUN{name: name, h: h, In: make(chan []byte, 256), Out: make(chan []byte, 256), done: make(chan struct{})}
	return t, nil
}

// Name implements engine.TUN.
func (t *TUN) Name() string { return t.name }

func (t *TUN) Read(b []byte) (int, error) {
	select {
	case p := <-t.In:
		return copy(b, p), nil
	case <-t.done:
		return 0, net.ErrClosed
	}
}

func (t *TUN) Write(b []byte) (int, error) {
	select {
	case t.Out <- append([]byte(nil), b...):
	default:
	}
	return len(b), nil
}

// Close removes the device.
func (t *TUN) Close() error {
	t.once.Do(func() {
		close(t.done)
		t.h.mu.Lock()
		delete(t.h.links, t.name)
		delete(t.h.addrs, t.name)
		t.h.record("ip link del %s", t.name)
		t.h.mu.Unlock()
	})
	return nil
}
