package rhcp

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Datagram is a UDP datagram lifted from a frame seen on a packet socket.
type Datagram struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

var errNotUDP = errors.New("not an IPv4 UDP datagram")

// ParseFrame extracts an IPv4/UDP datagram from what an AF_PACKET socket
// read: a whole Ethernet frame when ethernet is true (raw socket, link type
// 1), else the IP packet (cooked socket). It is a pure function over
// attacker-controlled bytes, fuzzed by FuzzParseFrame. Fragments are not
// reassembled: a probe fits one packet (docs/protocols/rhcp.md, MaxLen).
func ParseFrame(b []byte, ethernet bool) (Datagram, error) {
	if ethernet {
		if len(b) < 14 {
			return Datagram{}, errNotUDP
		}
		et := binary.BigEndian.Uint16(b[12:14])
		b = b[14:]
		if et == 0x8100 { // one 802.1Q tag
			if len(b) < 4 {
				return Datagram{}, errNotUDP
			}
			et = binary.BigEndian.Uint16(b[2:4])
			b = b[4:]
		}
		if et != 0x0800 {
			return Datagram{}, errNotUDP
		}
	}
	// RFC 791 §3.1: version 4, IHL ≥ 5 words, total length covers the header.
	if len(b) < 20 || b[0]>>4 != 4 {
		return Datagram{}, errNotUDP
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || total < ihl+8 || total > len(b) || b[9] != 17 {
		return Datagram{}, errNotUDP
	}
	if frag := binary.BigEndian.Uint16(b[6:8]); frag&0x3fff != 0 { // MF set or offset ≠ 0
		return Datagram{}, errNotUDP
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	u := b[ihl:total]
	ulen := int(binary.BigEndian.Uint16(u[4:6]))
	if ulen < 8 || ulen > len(u) {
		return Datagram{}, errNotUDP
	}
	return Datagram{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(u[0:2])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:4])),
		Payload: u[8:ulen],
	}, nil
}

// BuildPacket builds an IPv4/UDP packet (no link header) carrying payload,
// with a valid header checksum and no UDP checksum (RFC 768 allows zero over
// IPv4). Used to inject probes in tests and benchmarks.
func BuildPacket(src, dst netip.AddrPort, payload []byte) []byte {
	total := 28 + len(payload)
	b := make([]byte, total)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(total))
	b[8] = 64
	b[9] = 17
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:12], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:22], src.Port())
	binary.BigEndian.PutUint16(b[22:24], dst.Port())
	binary.BigEndian.PutUint16(b[24:26], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}
