package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// DHCP's UDP ports (RFC 2131 §4.1).
const (
	ServerPort = 67
	ClientPort = 68
)

// Frame is one Ethernet II frame carrying IPv4/UDP: what a client without an
// address sends and receives on its packet socket, where the kernel's UDP
// stack cannot help it yet (RFC 2131 §4.1: "the client cannot use its IP
// address until it is bound").
type Frame struct {
	DstMAC, SrcMAC net.HardwareAddr
	Src, Dst       netip.AddrPort
	Payload        []byte
}

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

const (
	ethHeaderLen  = 14
	ipv4HeaderLen = 20
	udpHeaderLen  = 8
)

// BuildFrame encodes f as Ethernet II + IPv4 (no options, DF clear, TTL 64)
// + UDP with its checksum. A nil DstMAC is the link broadcast address.
func BuildFrame(f Frame) []byte {
	dst := f.DstMAC
	if dst == nil {
		dst = broadcastMAC
	}
	b := make([]byte, ethHeaderLen, ethHeaderLen+ipv4HeaderLen+udpHeaderLen+len(f.Payload))
	copy(b[0:6], dst)
	copy(b[6:12], f.SrcMAC)
	binary.BigEndian.PutUint16(b[12:14], 0x0800)
	return appendDatagram(b, f.Src, f.Dst, f.Payload)
}

// BuildDatagram encodes an IPv4 packet (no options, DF clear, TTL 64)
// carrying one UDP datagram with its checksum: what a send-only raw socket
// (raw(7), IPPROTO_RAW) takes, e.g. a FORCERENEW sent from port 67 without
// binding it.
func BuildDatagram(src, dst netip.AddrPort, payload []byte) []byte {
	return appendDatagram(make([]byte, 0, ipv4HeaderLen+udpHeaderLen+len(payload)), src, dst, payload)
}

func appendDatagram(b []byte, src, dst netip.AddrPort, payload []byte) []byte {
	off := len(b)
	udpLen := udpHeaderLen + len(payload)
	b = append(b, make([]byte, ipv4HeaderLen+udpLen)...)
	ip := b[off : off+ipv4HeaderLen]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipv4HeaderLen+udpLen))
	ip[8] = 64 // TTL
	ip[9] = 17 // UDP
	src4, dst4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], src4[:])
	copy(ip[16:20], dst4[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip, 0))

	udp := b[off+ipv4HeaderLen:]
	binary.BigEndian.PutUint16(udp[0:2], src.Port())
	binary.BigEndian.PutUint16(udp[2:4], dst.Port())
	binary.BigEndian.PutUint16(udp[4:6], uint16(udpLen))
	copy(udp[8:], payload)
	// RFC 768: the checksum covers a pseudo-header of addresses, protocol
	// and length; a computed zero is sent as all ones.
	var pseudo uint32
	pseudo += uint32(binary.BigEndian.Uint16(src4[0:2])) + uint32(binary.BigEndian.Uint16(src4[2:4]))
	pseudo += uint32(binary.BigEndian.Uint16(dst4[0:2])) + uint32(binary.BigEndian.Uint16(dst4[2:4]))
	pseudo += 17 + uint32(udpLen)
	cs := checksum(udp, pseudo)
	if cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:8], cs)
	return b
}

// checksum is the Internet checksum (RFC 1071) of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ErrNotUDP is returned by ParseFrame for frames that are not unfragmented
// IPv4/UDP; a packet socket sees many and skips them.
var ErrNotUDP = errors.New("not an IPv4/UDP frame")

// ParseFrame decodes an Ethernet II frame carrying IPv4/UDP. It checks
// lengths and the IPv4 header checksum; the UDP checksum is not checked
// because senders on the same host leave it to offload (a veth peer hands
// over frames whose checksum was never filled in).
func ParseFrame(b []byte) (Frame, error) {
	if len(b) < ethHeaderLen+ipv4HeaderLen+udpHeaderLen {
		return Frame{}, fmt.Errorf("frame of %d bytes: %w", len(b), ErrNotUDP)
	}
	if binary.BigEndian.Uint16(b[12:14]) != 0x0800 {
		return Frame{}, ErrNotUDP
	}
	f := Frame{DstMAC: net.HardwareAddr(b[0:6]), SrcMAC: net.HardwareAddr(b[6:12])}
	ip := b[ethHeaderLen:]
	if ip[0]>>4 != 4 {
		return Frame{}, ErrNotUDP
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < ipv4HeaderLen || total < ihl+udpHeaderLen || total > len(ip) {
		return Frame{}, fmt.Errorf("ipv4 header length %d, total %d, have %d: %w", ihl, total, len(ip), ErrNotUDP)
	}
	if ip[9] != 17 {
		return Frame{}, ErrNotUDP
	}
	// More-fragments set or a fragment offset: DHCP messages fit one frame.
	if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
		return Frame{}, fmt.Errorf("fragment: %w", ErrNotUDP)
	}
	if checksum(ip[:ihl], 0) != 0 {
		return Frame{}, fmt.Errorf("bad ipv4 header checksum: %w", ErrNotUDP)
	}
	src := netip.AddrFrom4([4]byte(ip[12:16]))
	dst := netip.AddrFrom4([4]byte(ip[16:20]))
	udp := ip[ihl:total]
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < udpHeaderLen || ulen > len(udp) {
		return Frame{}, fmt.Errorf("udp length %d, have %d: %w", ulen, len(udp), ErrNotUDP)
	}
	f.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp[0:2]))
	f.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:4]))
	f.Payload = udp[udpHeaderLen:ulen]
	return f, nil
}
