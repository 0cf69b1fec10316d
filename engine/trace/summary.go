package trace

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Proto is the topmost protocol the summary decoder recognised in a frame.
type Proto uint8

const (
	ProtoOther Proto = iota // a link-layer frame of an EtherType we do not decode
	ProtoARP
	ProtoIPv4 // IPv4 with a payload we do not decode
	ProtoIPv6
	ProtoICMPv4
	ProtoICMPv6
	ProtoTCP
	ProtoUDP
	ProtoDHCP
	ProtoRHCP
	ProtoTunnel
)

var protoNames = [...]string{"ETH", "ARP", "IPv4", "IPv6", "ICMP", "ICMPv6", "TCP", "UDP", "DHCP", "RHCP", "TUNNEL"}

func (p Proto) String() string {
	if int(p) < len(protoNames) {
		return protoNames[p]
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// Flags say which layers a frame carries (a filter like `udp` matches a DHCP
// packet too) and how to read the address fields.
type Flags uint16

const (
	HasEthernet Flags = 1 << iota
	HasARP
	HasIPv4
	HasIPv6
	HasICMPv4
	HasICMPv6
	HasTCP
	HasUDP
	HasDHCP
	HasRHCP
	HasTunnel
	// AddrMAC: Src and Dst hold MAC addresses (a non-IP frame).
	AddrMAC
	// Malformed: a layer failed to decode; the summary holds what came before.
	Malformed
	// Truncated: the capture holds fewer bytes than the frame had.
	Truncated
	// AuxValid: Aux holds an address (DHCP yiaddr, RHCP probed address).
	AuxValid
	// AuxV6: that address is IPv6 (all 16 bytes), else IPv4 (the first 4).
	AuxV6
)

// Summary is the compact, pointer-free record of one captured frame that the
// ring keeps a million of. Everything the one-line text and the filters need
// is in it, so neither touches the raw bytes. Addresses are kept as 16 bytes
// (IPv4 in the first four, or a MAC in the first six when AddrMAC is set)
// because netip.Addr carries a pointer for IPv6 zones, which would make the
// garbage collector scan the whole ring.
type Summary struct {
	Seq  uint64 // position in the session, from 0
	Time int64  // capture time, Unix nanoseconds

	rawOff uint64 // where the frame's bytes start in the ring's arena

	Src, Dst [16]byte
	// Aux is a protocol's address of interest: the DHCP yiaddr (or ciaddr,
	// requested address), the address an RHCP probe assigns.
	Aux [16]byte
	// Name holds short protocol fields: the RHCP client ID (ESN, cut at 16
	// bytes); for DHCP the client's hardware address (bytes 0-5), the
	// server identifier (option 54, bytes 8-11) and the lease time (option
	// 51, bytes 12-15).
	Name [16]byte

	Len    uint32 // length of the frame on the wire
	CapLen uint32 // bytes captured
	// ID is the DHCP xid, the tunnel index or the RHCP sequence number.
	ID uint32

	SrcPort, DstPort uint16
	Flags            Flags
	// Iface indexes the ring's interface table (node and interface name).
	Iface uint16

	Proto Proto
	Dir   uint8 // engine.Direction
	// Type is the message type: ARP operation, ICMP type, DHCP message type
	// (option 53), RHCP or tunnel message type, TCP flags.
	Type uint8
	// Code is the ICMP code, the prefix length of an RHCP probe, the DHCP op.
	Code uint8
}

// Has reports whether all of f are set.
func (s *Summary) Has(f Flags) bool { return s.Flags&f == f }

// SrcAddr returns the source IP address, if the frame has one.
func (s *Summary) SrcAddr() netip.Addr { return s.addr(&s.Src) }

// DstAddr returns the destination IP address, if the frame has one.
func (s *Summary) DstAddr() netip.Addr { return s.addr(&s.Dst) }

// AuxAddr returns the protocol address of interest (see Aux), if any.
func (s *Summary) AuxAddr() netip.Addr {
	if s.Flags&AuxValid == 0 {
		return netip.Addr{}
	}
	if s.Flags&AuxV6 != 0 {
		return netip.AddrFrom16(s.Aux)
	}
	return netip.AddrFrom4([4]byte(s.Aux[:4]))
}

func (s *Summary) addr(b *[16]byte) netip.Addr {
	switch {
	case s.Flags&AddrMAC != 0:
		return netip.Addr{}
	case s.Flags&HasIPv6 != 0:
		return netip.AddrFrom16(*b)
	case s.Flags&(HasIPv4|HasARP) != 0:
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.Addr{}
}

// DHCPServer returns the server identifier (option 54) of a DHCP message.
func (s *Summary) DHCPServer() netip.Addr {
	if s.Proto != ProtoDHCP || [4]byte(s.Name[8:12]) == ([4]byte{}) {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(s.Name[8:12]))
}

// ClientID returns the RHCP client ID kept in Name (cut at 16 bytes).
func (s *Summary) ClientID() string {
	if s.Proto != ProtoRHCP {
		return ""
	}
	n := 0
	for n < len(s.Name) && s.Name[n] != 0 {
		n++
	}
	return string(s.Name[:n])
}

// Interface is one captured interface of a session: which node, which
// interface, which link type. It becomes one pcapng interface block.
type Interface struct {
	Node     string
	Name     string
	LinkType layers.LinkType
}

func (i Interface) String() string {
	if i.Node == "" {
		return i.Name
	}
	return i.Node + " " + i.Name
}

var dirNames = [...]string{"  ", "in", "out", "oth", "bc"}

// Format writes the one-line text of a summary: time, node and interface,
// direction, protocol, endpoints and the protocol's fields. It reads only the
// summary, so the TUI can draw a screenful of lines without decoding again.
func Format(s *Summary, ifs []Interface) string {
	var b strings.Builder
	b.Grow(120)
	b.WriteString(time.Unix(0, s.Time).UTC().Format("15:04:05.000000"))
	b.WriteByte(' ')
	if int(s.Iface) < len(ifs) {
		b.WriteString(ifs[s.Iface].String())
	} else {
		b.WriteString("if" + strconv.Itoa(int(s.Iface)))
	}
	b.WriteByte(' ')
	if int(s.Dir) < len(dirNames) {
		b.WriteString(dirNames[s.Dir])
	}
	b.WriteByte(' ')
	b.WriteString(s.Proto.String())
	b.WriteByte(' ')
	writeEndpoints(&b, s)
	writeDetail(&b, s)
	fmt.Fprintf(&b, " len %d", s.Len)
	if s.Flags&Malformed != 0 {
		b.WriteString(" [malformed]")
	}
	if s.Flags&Truncated != 0 {
		b.WriteString(" [truncated]")
	}
	return b.String()
}

// String formats the summary without an interface table.
func (s Summary) String() string { return Format(&s, nil) }

func writeEndpoints(b *strings.Builder, s *Summary) {
	if s.Flags&AddrMAC != 0 {
		b.WriteString(net.HardwareAddr(s.Src[:6]).String())
		b.WriteString(" > ")
		b.WriteString(net.HardwareAddr(s.Dst[:6]).String())
		return
	}
	if s.Proto == ProtoARP {
		return // the ARP text names the addresses itself
	}
	src, dst := s.SrcAddr(), s.DstAddr()
	if !src.IsValid() {
		return
	}
	if s.Flags&(HasUDP|HasTCP) != 0 {
		b.WriteString(netip.AddrPortFrom(src, s.SrcPort).String())
		b.WriteString(" > ")
		b.WriteString(netip.AddrPortFrom(dst, s.DstPort).String())
		return
	}
	b.WriteString(src.String())
	b.WriteString(" > ")
	b.WriteString(dst.String())
}

func writeDetail(b *strings.Builder, s *Summary) {
	switch s.Proto {
	case ProtoARP:
		src, dst := s.SrcAddr(), s.DstAddr()
		if s.Type == layers.ARPReply {
			fmt.Fprintf(b, "reply %s is-at %s", src, net.HardwareAddr(s.Aux[:6]))
		} else {
			fmt.Fprintf(b, "who-has %s tell %s", dst, src)
		}
	case ProtoICMPv4:
		fmt.Fprintf(b, " %s", layers.CreateICMPv4TypeCode(s.Type, s.Code))
		if s.Type == layers.ICMPv4TypeEchoRequest || s.Type == layers.ICMPv4TypeEchoReply {
			fmt.Fprintf(b, " id %d seq %d", s.SrcPort, s.DstPort)
		}
	case ProtoICMPv6:
		if n, ok := icmpv6Names[s.Type]; ok {
			b.WriteString(" " + n)
		} else {
			fmt.Fprintf(b, " %s", layers.CreateICMPv6TypeCode(s.Type, s.Code))
		}
	case ProtoTCP:
		b.WriteString(" [")
		b.WriteString(tcpFlags(s.Type))
		b.WriteByte(']')
	case ProtoDHCP:
		fmt.Fprintf(b, " %s xid 0x%08x", dhcpTypeName(s.Type), s.ID)
		if [6]byte(s.Name[:6]) != ([6]byte{}) {
			fmt.Fprintf(b, " chaddr %s", net.HardwareAddr(s.Name[:6]))
		}
		if a := s.AuxAddr(); a.IsValid() {
			fmt.Fprintf(b, " addr %s", a)
		}
		if srv := s.DHCPServer(); srv.IsValid() {
			fmt.Fprintf(b, " server %s", srv)
		}
		if lt := binary.BigEndian.Uint32(s.Name[12:16]); lt != 0 {
			fmt.Fprintf(b, " lease %ds", lt)
		}
	case ProtoRHCP:
		fmt.Fprintf(b, " %s", rhcpTypeName(s.Type))
		if id := s.ClientID(); id != "" {
			fmt.Fprintf(b, " client %q", id)
		}
		if a := s.AuxAddr(); a.IsValid() {
			fmt.Fprintf(b, " addr %s/%d", a, s.Code)
		}
	case ProtoTunnel:
		fmt.Fprintf(b, " %s index %d", tunnelTypeName(s.Type), s.ID)
	}
}

// icmpv6Names names the ICMPv6 types gopacket leaves as numbers: MLD
// (RFC 2710, RFC 3810 §5.2), which every IPv6 interface sends when it comes up.
var icmpv6Names = map[uint8]string{130: "MLDQuery", 131: "MLDReport", 132: "MLDDone", 143: "MLDv2Report"}

// tcpFlags renders the TCP flag byte the way tcpdump does (S, F, R, P, ., U, E, W).
func tcpFlags(f uint8) string {
	const names = "FSRP.UEW"
	var out []byte
	for i := 0; i < 8; i++ {
		if f&(1<<i) != 0 {
			out = append(out, names[i])
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return string(out)
}

// dhcpTypeName names a DHCP message type. gopacket knows types 1–8; 9 is
// FORCERENEW (RFC 3203 §4), which fieldcon's IP sync sends.
func dhcpTypeName(t uint8) string {
	if t == 9 {
		return "ForceRenew"
	}
	return layers.DHCPMsgType(t).String()
}
