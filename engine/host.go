package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"time"

	"golang.org/x/net/bpf"
)

// Host is what the engine needs from one machine (or one network namespace of
// it). Every method acts inside that namespace only. Implementations:
// drivers/linux (the real kernel through netlink) and drivers/fake (an
// in-memory transcript for unit tests).
//
// Mutating methods are undoable through Tracked, which records the inverse of
// every change so a role can remove what it added when it stops.
type Host interface {
	// Name names the host: the network namespace, or "" for the current one.
	Name() string

	// Links lists the host's network interfaces.
	Links() ([]Link, error)
	// LinkByName returns one interface.
	LinkByName(name string) (Link, error)
	// SetLinkUp brings an interface up or down.
	SetLinkUp(name string, up bool) error
	// WatchLinks reports link state changes until ctx ends.
	WatchLinks(ctx context.Context) (<-chan Link, error)

	// Addresses lists the addresses on iface ("" for all interfaces).
	Addresses(iface string) ([]Address, error)
	// AddAddress adds (or replaces) an address on iface.
	AddAddress(iface string, a Address) error
	// DelAddress removes an address from iface.
	DelAddress(iface string, a Address) error

	// Routes lists the main table's routes.
	Routes() ([]Route, error)
	// AddRoute adds (or replaces) a route.
	AddRoute(r Route) error
	// DelRoute removes a route.
	DelRoute(r Route) error

	// Neighbors lists neighbour (ARP/NDP) entries on iface ("" for all).
	Neighbors(iface string) ([]Neighbor, error)
	// SetNeighbor adds or replaces a neighbour entry.
	SetNeighbor(n Neighbor) error
	// DelNeighbor removes a neighbour entry.
	DelNeighbor(n Neighbor) error

	// Sysctl reads a sysctl of the namespace, e.g. "net/ipv4/ip_forward".
	Sysctl(key string) (string, error)
	// SetSysctl writes a sysctl of the namespace.
	SetSysctl(key, value string) error

	// ListenUDP opens a UDP socket inside the host's namespace.
	ListenUDP(laddr netip.AddrPort, opt UDPOptions) (UDPConn, error)
	// OpenPacket opens an AF_PACKET socket bound to iface, which sees frames
	// regardless of the addresses the host owns (a client without an address
	// yet, captures).
	OpenPacket(iface string, opt PacketOptions) (PacketConn, error)
	// CreateTUN creates a TUN device (layer 3 virtual NIC).
	CreateTUN(name string, mtu int) (TUN, error)

	// Command prepares a program to run inside the host's namespace (real
	// peers such as dnsmasq in labs). The caller starts and waits for it.
	Command(ctx context.Context, name string, args ...string) *exec.Cmd

	// Close releases handles. It does not undo changes; see Tracked.
	Close() error
}

// Link is one network interface.
type Link struct {
	Index int
	Name  string
	// Kind is the driver kind: "veth", "tun", "ppp", "loopback", "device", ...
	Kind string
	MAC  net.HardwareAddr
	MTU  int
	// Up is the administrative state (IFF_UP); Running the operational one
	// (carrier, IFF_RUNNING).
	Up      bool
	Running bool
}

// Address is an interface address. Peer is set for point-to-point addresses
// (PPP/IPCP style, `ip addr add 192.0.2.1/32 peer 192.0.2.2/32`).
type Address struct {
	Prefix netip.Prefix
	Peer   netip.Prefix
	// Preferred and Valid are lifetimes; zero means forever.
	Preferred time.Duration
	Valid     time.Duration
	// Label is the address label; the engine marks its addresses with it.
	Label string
}

// Route is a route in the main table.
type Route struct {
	Dst netip.Prefix
	// Gateway is unset for on-link (device) routes.
	Gateway netip.Addr
	Dev     string
	Src     netip.Addr
	Metric  int
	// OnLink marks the gateway as reachable on Dev without a covering prefix
	// (`ip route add ... via GW dev DEV onlink`).
	OnLink bool
}

// String is the address in iproute2's form, without the device:
// "192.0.2.1/32 peer 192.0.2.2/32".
func (a Address) String() string {
	if a.Peer.IsValid() {
		return a.Prefix.String() + " peer " + a.Peer.String()
	}
	return a.Prefix.String()
}

// String is the route in iproute2's form:
// "203.0.113.0/24 via 192.0.2.2 dev eth1 metric 10 onlink".
func (r Route) String() string {
	s := r.Dst.String()
	if r.Gateway.IsValid() {
		s += " via " + r.Gateway.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.Src.IsValid() {
		s += " src " + r.Src.String()
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	if r.OnLink {
		s += " onlink"
	}
	return s
}

// Neighbor is an ARP (IPv4) or NDP (IPv6) entry.
type Neighbor struct {
	Dev       string
	IP        netip.Addr
	MAC       net.HardwareAddr
	Permanent bool
	// State is the kernel's state name ("PERMANENT", "REACHABLE", ...) when listed.
	State string
}

// UDPOptions tunes a UDP socket.
type UDPOptions struct {
	// Device binds the socket to one interface (SO_BINDTODEVICE).
	Device string
	// Broadcast allows sending to broadcast addresses (SO_BROADCAST).
	Broadcast bool
	// ReuseAddr allows several sockets on the same port (SO_REUSEADDR/PORT).
	ReuseAddr bool
}

// UDPConn is a UDP socket. *net.UDPConn satisfies it.
type UDPConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	SetReadDeadline(t time.Time) error
	LocalAddr() net.Addr
	Close() error
}

// Ethernet protocol numbers for PacketOptions.Protocol.
const (
	EthAll  uint16 = 0x0003
	EthIPv4 uint16 = 0x0800
	EthARP  uint16 = 0x0806
	EthIPv6 uint16 = 0x86dd
)

// PacketOptions selects what an AF_PACKET socket sees.
type PacketOptions struct {
	// Protocol is the EtherType to receive (EthAll for every frame).
	Protocol uint16
	// Cooked opens SOCK_DGRAM: frames without the link-layer header.
	Cooked bool
	// Promiscuous puts the interface in promiscuous mode while open.
	Promiscuous bool
	// Filter is a classic BPF program (SO_ATTACH_FILTER, see
	// Documentation/networking/filter.rst) that the kernel runs on every
	// frame before queueing it: a role that wants one protocol is not woken
	// by every other frame on the link. Offsets start at the link-layer
	// header, or at the network header when Cooked. Nil accepts every frame.
	Filter []bpf.RawInstruction
}

// Direction of a packet relative to the host, from the kernel's sll_pkttype.
type Direction uint8

const (
	DirUnknown   Direction = iota
	DirIn                  // PACKET_HOST, to us
	DirOut                 // PACKET_OUTGOING, sent by us
	DirOther               // PACKET_OTHERHOST, seen in promiscuous mode
	DirBroadcast           // PACKET_BROADCAST or PACKET_MULTICAST
)

func (d Direction) String() string {
	return [...]string{"?", "in", "out", "other", "bcast"}[d]
}

// PacketInfo describes a received frame.
type PacketInfo struct {
	Time      time.Time
	Ifindex   int
	Protocol  uint16
	Direction Direction
	// CapLen is the bytes copied into the buffer; Len the frame's length.
	CapLen, Len int
}

// PacketConn is an AF_PACKET socket bound to one interface.
type PacketConn interface {
	// ReadPacket reads one frame; with Cooked it starts at the network header.
	ReadPacket(b []byte) (int, PacketInfo, error)
	// WritePacket sends one frame. Raw sockets take a whole frame and ignore
	// dst; cooked sockets take a network packet and send it to dst (nil for
	// the broadcast address of the link).
	WritePacket(b []byte, protocol uint16, dst net.HardwareAddr) error
	SetReadDeadline(t time.Time) error
	// LinkType is the pcap link type of frames read (1 Ethernet, 101 raw IP).
	LinkType() uint16
	Close() error
}

// TUN is a layer 3 virtual NIC: Read and Write carry one IP packet each.
type TUN interface {
	Name() string
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	Close() error
}

// TUNHeadroom is the room WriteBatch needs in front of each packet, and what
// a caller leaves in front of ReadBatch's: the driver may put a virtio-net
// header there (IFF_VNET_HDR, 10 bytes), and a tunnel its own header, so a
// packet is sealed and opened where it lies instead of being copied.
const TUNHeadroom = 16

// BatchTUN is a TUN that moves several packets per system call. A driver
// offers it in addition to TUN; roles use it when present (see AsBatchTUN)
// and fall back to one packet per Read and Write otherwise.
type BatchTUN interface {
	TUN
	// BatchSize is the most packets one ReadBatch returns; callers pass at
	// least that many buffers.
	BatchSize() int
	// ReadBatch reads one or more packets, the i-th into bufs[i][offset:],
	// and sets sizes[i] to its length; it returns how many it read.
	// len(sizes) must be >= len(bufs), and each buffer must hold a whole IP
	// packet (65535 bytes) after offset: one read of a GSO super-packet is
	// split into many.
	ReadBatch(bufs [][]byte, sizes []int, offset int) (int, error)
	// WriteBatch writes the packets bufs[i][offset:]. offset must be at
	// least TUNHeadroom; the driver may write in front of it, and may merge
	// packets of one flow into the first one's buffer (GRO) within its
	// capacity, so the buffers' contents are undefined afterwards. It
	// returns how many packets were written.
	WriteBatch(bufs [][]byte, offset int) (int, error)
}

// AsBatchTUN returns t's batch interface when its driver offers one,
// looking through the engine's own wrappers (Tracked's).
func AsBatchTUN(t TUN) (BatchTUN, bool) {
	if o, ok := t.(*onceTUN); ok {
		t = o.TUN
	}
	b, ok := t.(BatchTUN)
	return b, ok
}

// UDPMessage is one datagram of a batch.
type UDPMessage struct {
	// Buf is the datagram to send, or the buffer to receive into.
	Buf []byte
	// N is the received datagram's length.
	N int
	// Addr is the destination to send to, or the sender received from.
	Addr netip.AddrPort
	// Segment, when set on a received message, says Buf[:N] holds several
	// datagrams from Addr that the kernel coalesced (UDP_GRO), each Segment
	// bytes long but the last, which may be shorter.
	Segment int
}

// BatchUDPConn is a UDP socket that moves several datagrams per system call
// (recvmmsg/sendmmsg). Roles use it when the driver's socket offers it.
type BatchUDPConn interface {
	UDPConn
	// ReadBatch receives at least one message (waiting until the read
	// deadline) and as many more as are queued, up to len(ms); it returns
	// how many it filled. A message may carry several coalesced datagrams
	// (see Segment), so give each a 65535-byte buffer; and once a socket
	// is read with ReadBatch, read it only so: a single read could then
	// return coalesced datagrams as one.
	ReadBatch(ms []UDPMessage) (int, error)
	// WriteBatch sends the datagrams and returns how many were sent; fewer
	// than len(ms) comes with an error. Runs of datagrams to one address
	// may leave as one segmentation-offload send (UDP_SEGMENT).
	WriteBatch(ms []UDPMessage) (int, error)
}
