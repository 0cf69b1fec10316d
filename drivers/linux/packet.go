package linux

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/fieldcon/fieldcon/engine"
)

// pcap link types (https://www.tcpdump.org/linktypes.html).
const (
	linkTypeEthernet = 1
	linkTypeRaw      = 101
)

// packetConn is an AF_PACKET socket (packet(7)) handed to the Go runtime
// poller, so that read deadlines work and a blocked read ends on Close.
type packetConn struct {
	f        *os.File
	rc       syscall.RawConn
	ifindex  int
	cooked   bool
	linkType uint16
	bcast    net.HardwareAddr // link broadcast address, for cooked writes
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// OpenPacket opens an AF_PACKET socket bound to iface and protocol: it sees
// frames whatever their destination IP (a client that has no address yet,
// a capture), and in promiscuous mode frames to other MACs as well.
//
// Equivalent to: `ip netns exec $ns tcpdump -i $iface [-p] -y EN10MB|RAW`
func (h *Host) OpenPacket(iface string, opt engine.PacketOptions) (engine.PacketConn, error) {
	l, err := h.link(iface)
	if err != nil {
		return nil, fmt.Errorf("open packet socket: %w", err)
	}
	a := l.Attrs()
	typ := unix.SOCK_RAW
	if opt.Cooked {
		typ = unix.SOCK_DGRAM
	}
	proto := opt.Protocol
	if proto == 0 {
		proto = engine.EthAll
	}
	var fd int
	err = h.inNetns(func() error {
		var err error
		// Protocol 0 receives nothing until bind: no frame of another
		// interface slips in between socket() and bind() (packet(7)).
		fd, err = unix.Socket(unix.AF_PACKET, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s in netns %q: %w", iface, h.name, err)
	}
	if err := attachFilter(fd, opt.Filter); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket on %s in netns %q: %w", iface, h.name, err)
	}
	if err := setupPacket(fd, a.Index, proto, opt.Promiscuous); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket on %s in netns %q: %w", iface, h.name, err)
	}
	f := os.NewFile(uintptr(fd), "packet:"+iface)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("packet socket on %s: %w", iface, err)
	}
	return &packetConn{
		f: f, rc: rc, ifindex: a.Index, cooked: opt.Cooked,
		linkType: packetLinkType(l, opt.Cooked),
		bcast:    broadcastAddr(a),
	}, nil
}

// attachFilter attaches a classic BPF program (SO_ATTACH_FILTER) before
// the socket is bound, then reads away whatever was queued before it took
// effect, so that no frame the filter would have dropped is ever read
// (libpcap does the same when it sets a filter on a live socket). Unbound
// with protocol 0 the queue should be empty; the drain makes that a
// guarantee rather than an assumption about the kernel.
//
// Equivalent to: `tcpdump -i $iface 'FILTER'` (tcpdump -d shows the program)
func attachFilter(fd int, prog []bpf.RawInstruction) error {
	if len(prog) == 0 {
		return nil
	}
	if len(prog) > 4096 { // BPF_MAXINSNS
		return fmt.Errorf("SO_ATTACH_FILTER: %d instructions, the kernel takes at most 4096", len(prog))
	}
	ins := make([]unix.SockFilter, len(prog))
	for i, r := range prog {
		ins[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("SO_ATTACH_FILTER: %w", err)
	}
	var b [1]byte
	for {
		// MSG_TRUNC: drop a queued frame whatever its length.
		if _, _, err := unix.Recvfrom(fd, b[:], unix.MSG_DONTWAIT|unix.MSG_TRUNC); err != nil {
			if err == unix.EAGAIN || err == unix.EWOULDBLOCK {
				return nil
			}
			return fmt.Errorf("drain before filter: %w", err)
		}
	}
}

func setupPacket(fd, ifindex int, proto uint16, promisc bool) error {
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifindex}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	// Receive timestamps cost nothing extra and are taken when the kernel
	// queued the frame, not when we got around to reading it.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	if promisc {
		// Membership (not IFF_PROMISC) so the kernel drops it with the socket.
		mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return fmt.Errorf("PACKET_ADD_MEMBERSHIP promisc: %w", err)
		}
	}
	return nil
}

// packetLinkType: raw sockets on Ethernet-like links (including lo, which
// has a zeroed Ethernet header) give Ethernet frames; cooked sockets and
// links without a link-layer header (TUN, PPP) give bare IP packets.
func packetLinkType(l netlink.Link, cooked bool) uint16 {
	if cooked {
		return linkTypeRaw
	}
	switch l.Attrs().EncapType {
	case "ether", "loopback":
		return linkTypeEthernet
	}
	return linkTypeRaw
}

func broadcastAddr(a *netlink.LinkAttrs) net.HardwareAddr {
	if len(a.HardwareAddr) == 6 {
		return net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	return nil
}

var directions = map[uint8]engine.Direction{
	unix.PACKET_HOST:      engine.DirIn,
	unix.PACKET_BROADCAST: engine.DirBroadcast,
	unix.PACKET_MULTICAST: engine.DirBroadcast,
	unix.PACKET_OTHERHOST: engine.DirOther,
	unix.PACKET_OUTGOING:  engine.DirOut,
}

// ReadPacket reads one frame; with a cooked socket it starts at the network
// header. PacketInfo.Len is the frame's full length even when b was shorter.
func (c *packetConn) ReadPacket(b []byte) (int, engine.PacketInfo, error) {
	var (
		n, oobn int
		from    unix.Sockaddr
		rerr    error
		oob     [64]byte
	)
	err := c.rc.Read(func(fd uintptr) bool {
		// MSG_TRUNC: return the real length of a frame longer than b.
		n, oobn, _, from, rerr = unix.Recvmsg(int(fd), b, oob[:], unix.MSG_TRUNC)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, engine.PacketInfo{}, fmt.Errorf("read packet: %w", err)
	}
	info := engine.PacketInfo{Time: rxTime(oob[:oobn]), Len: n, CapLen: min(n, len(b))}
	if sll, ok := from.(*unix.SockaddrLinklayer); ok {
		info.Ifindex = sll.Ifindex
		info.Protocol = htons(sll.Protocol)
		info.Direction = directions[sll.Pkttype]
	}
	return info.CapLen, info, nil
}

// rxTime is the SO_TIMESTAMPNS control message's time, or now.
func rxTime(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS &&
				len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
				ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
				return time.Unix(ts.Unix())
			}
		}
	}
	return time.Now()
}

// WritePacket sends one frame. A raw socket sends b as the whole frame; a
// cooked one prepends the link header for dst (the link's broadcast address
// when dst is nil).
func (c *packetConn) WritePacket(b []byte, protocol uint16, dst net.HardwareAddr) error {
	sa := &unix.SockaddrLinklayer{Ifindex: c.ifindex, Protocol: htons(protocol)}
	if c.cooked {
		if dst == nil {
			dst = c.bcast
		}
		if len(dst) > len(sa.Addr) {
			return fmt.Errorf("write packet: hardware address %s too long", dst)
		}
		sa.Halen = uint8(copy(sa.Addr[:], dst))
	}
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		werr = unix.Sendto(int(fd), b, 0, sa)
		return werr != unix.EAGAIN
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("write packet: %w", err)
	}
	return nil
}

func (c *packetConn) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

func (c *packetConn) LinkType() uint16 { return c.linkType }

func (c *packetConn) Close() error {
	if err := c.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close packet socket: %w", err)
	}
	return nil
}

// SendIPv4 sends one complete IPv4 packet, header included, through a
// send-only raw socket (raw(7): IPPROTO_RAW implies IP_HDRINCL and never
// receives). The kernel routes it and resolves the next hop as for any
// packet, fills in the IP ID and header checksum, and sends the source the
// header names. Because no port is bound, a datagram can leave from a port
// a running server owns (a FORCERENEW from 67) without taking any of that
// server's traffic, as a second socket bound there with SO_REUSEPORT would.
//
// Equivalent to: `ip netns exec $ns nping --udp -S $src -g $sport -p $dport $dst`
func (h *Host) SendIPv4(pkt []byte) error {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return errors.New("send ipv4: not an IPv4 packet")
	}
	var fd int
	err := h.inNetns(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	if err != nil {
		return fmt.Errorf("send ipv4: raw socket in netns %q (needs CAP_NET_RAW): %w", h.name, err)
	}
	defer unix.Close(fd)
	dst := &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])}
	if err := unix.Sendto(fd, pkt, 0, dst); err != nil {
		return fmt.Errorf("send ipv4 to %d.%d.%d.%d in netns %q: %w", dst.Addr[0], dst.Addr[1], dst.Addr[2], dst.Addr[3], h.name, err)
	}
	return nil
}
