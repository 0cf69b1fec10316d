package dhcp

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
)

// ARP is an Ethernet/IPv4 ARP packet (RFC 826), what RFC 5227 probes and
// announcements are made of.
type ARP struct {
	Op             uint16 // 1 request, 2 reply
	SenderMAC      net.HardwareAddr
	SenderIP       netip.Addr
	TargetMAC      net.HardwareAddr
	TargetIP       netip.Addr
	EthSrc, EthDst net.HardwareAddr
}

const arpFrameLen = ethHeaderLen + 28

// BuildARP encodes a in an Ethernet II frame; a nil EthDst is broadcast.
func BuildARP(a ARP) []byte {
	b := make([]byte, arpFrameLen)
	dst := a.EthDst
	if dst == nil {
		dst = broadcastMAC
	}
	copy(b[0:6], dst)
	copy(b[6:12], a.EthSrc)
	binary.BigEndian.PutUint16(b[12:14], 0x0806)
	p := b[ethHeaderLen:]
	binary.BigEndian.PutUint16(p[0:2], 1)      // Ethernet
	binary.BigEndian.PutUint16(p[2:4], 0x0800) // IPv4
	p[4], p[5] = 6, 4
	binary.BigEndian.PutUint16(p[6:8], a.Op)
	copy(p[8:14], a.SenderMAC)
	if a.SenderIP.Is4() {
		s := a.SenderIP.As4()
		copy(p[14:18], s[:])
	}
	copy(p[18:24], a.TargetMAC)
	if a.TargetIP.Is4() {
		t := a.TargetIP.As4()
		copy(p[24:28], t[:])
	}
	return b
}

var errNotARP = errors.New("not an Ethernet/IPv4 ARP frame")

// ParseARP decodes an Ethernet II frame carrying ARP for IPv4 over Ethernet.
func ParseARP(b []byte) (ARP, error) {
	if len(b) < arpFrameLen || binary.BigEndian.Uint16(b[12:14]) != 0x0806 {
		return ARP{}, errNotARP
	}
	p := b[ethHeaderLen:]
	if binary.BigEndian.Uint16(p[0:2]) != 1 || binary.BigEndian.Uint16(p[2:4]) != 0x0800 || p[4] != 6 || p[5] != 4 {
		return ARP{}, errNotARP
	}
	return ARP{
		EthDst:    net.HardwareAddr(b[0:6]),
		EthSrc:    net.HardwareAddr(b[6:12]),
		Op:        binary.BigEndian.Uint16(p[6:8]),
		SenderMAC: net.HardwareAddr(p[8:14]),
		SenderIP:  netip.AddrFrom4([4]byte(p[14:18])),
		TargetMAC: net.HardwareAddr(p[18:24]),
		TargetIP:  netip.AddrFrom4([4]byte(p[24:28])),
	}, nil
}
