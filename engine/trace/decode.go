package trace

import (
	"encoding/binary"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/fieldcon/fieldcon/engine/tunnel"
)

// Decoder turns captured frames into Summaries on the fast path: one
// gopacket.DecodingLayerParser per link type, decoding into layer values it
// owns and reuses, so a summary costs no allocation. A Decoder is not safe
// for concurrent use; each capture goroutine has its own.
type Decoder struct {
	eth   layers.Ethernet
	dot1q layers.Dot1Q
	sll   layers.LinuxSLL
	arp   layers.ARP
	ip4   layers.IPv4
	ip6   layers.IPv6
	udp   layers.UDP
	tcp   layers.TCP
	icmp4 layers.ICMPv4
	icmp6 layers.ICMPv6
	dhcp  layers.DHCPv4
	rhcp  RHCP
	tun   Tunnel

	byLink  map[layers.LinkType]*gopacket.DecodingLayerParser
	ip4p    *gopacket.DecodingLayerParser
	ip6p    *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
	opt     DecoderOptions

	// tunnelIndex maps a tunnel client's own index to the server's tunnel
	// index, learnt from establishment responses (which carry both), so
	// messages to the client, which name the client's index, are summarised
	// with the tunnel index too (docs/protocols/tunnel.md "Tunnel index").
	tunnelIndex map[uint32]uint32
}

// maxTunnelIndexes bounds the learnt index pairs; the table starts over
// when full.
const maxTunnelIndexes = 4096

// DecoderOptions says where fieldcon's own protocols run when a profile
// moves them off their default ports.
type DecoderOptions struct {
	// RHCPPorts are UDP ports carrying RHCP besides rhcp.Port. RHCP is also
	// recognised on any port by its magic and length.
	RHCPPorts []uint16
	// TunnelPorts are UDP ports carrying the TN tunnel. Handshake messages
	// are recognised on any port by their header and exact size; data,
	// heartbeat and close only on these ports.
	TunnelPorts []uint16
}

// NewDecoder returns a decoder for Ethernet, Linux cooked, PPP and raw IP
// (TUN) frames.
func NewDecoder(opt DecoderOptions) *Decoder {
	d := &Decoder{byLink: map[layers.LinkType]*gopacket.DecodingLayerParser{}, opt: opt}
	all := []gopacket.DecodingLayer{
		&d.eth, &d.dot1q, &d.sll, &d.arp, &d.ip4, &d.ip6,
		&d.udp, &d.tcp, &d.icmp4, &d.icmp6, &d.dhcp, &d.rhcp, &d.tun,
	}
	mk := func(first gopacket.LayerType) *gopacket.DecodingLayerParser {
		p := gopacket.NewDecodingLayerParser(first, all...)
		// The summary keeps what decoded before an unknown layer; a layer
		// we cannot decode is not an error of the frame.
		p.IgnoreUnsupported = true
		return p
	}
	d.byLink[layers.LinkTypeEthernet] = mk(layers.LayerTypeEthernet)
	d.byLink[layers.LinkTypeLinuxSLL] = mk(layers.LayerTypeLinuxSLL)
	d.ip4p = mk(layers.LayerTypeIPv4)
	d.ip6p = mk(layers.LayerTypeIPv6)
	d.decoded = make([]gopacket.LayerType, 0, 16)
	return d
}

// isRawIP: link types whose frames start at the IP header (TUN devices,
// point-to-point links without a link header).
func isRawIP(lt layers.LinkType) bool {
	return lt == layers.LinkTypeRaw || lt == 12 || lt == layers.LinkTypeIPv4 || lt == layers.LinkTypeIPv6 || lt == 0
}

// stripPPP removes the PPP header of a DLT_PPP frame (RFC 1662 address and
// control, then the RFC 1661 protocol field), leaving the IP packet.
func stripPPP(b []byte) []byte {
	if len(b) >= 2 && b[0] == 0xff && b[1] == 0x03 {
		b = b[2:]
	}
	if len(b) >= 2 && b[0] == 0x00 && (b[1] == 0x21 || b[1] == 0x57) {
		return b[2:]
	}
	return b
}

// Decode fills s from frame (of link type lt), leaving Seq, Time, Iface, Dir,
// Len and CapLen to the caller. It never panics on malformed input: what
// decoded is kept and Malformed is set.
func (d *Decoder) Decode(lt layers.LinkType, frame []byte, s *Summary) {
	s.Src, s.Dst, s.Aux, s.Name = [16]byte{}, [16]byte{}, [16]byte{}, [16]byte{}
	s.ID, s.SrcPort, s.DstPort, s.Type, s.Code = 0, 0, 0, 0, 0
	s.Flags &= Truncated
	s.Proto = ProtoOther
	p := d.byLink[lt]
	if lt == layers.LinkTypePPP {
		frame = stripPPP(frame)
	}
	if p == nil && (isRawIP(lt) || lt == layers.LinkTypePPP) && len(frame) > 0 {
		if frame[0]>>4 == 6 {
			p = d.ip6p
		} else {
			p = d.ip4p
		}
	}
	if p == nil {
		s.Flags |= Malformed
		return
	}
	err := p.DecodeLayers(frame, &d.decoded)
	if err != nil {
		s.Flags |= Malformed
	}
	for _, t := range d.decoded {
		d.apply(t, s)
	}
	if p.Truncated {
		s.Flags |= Truncated
	}
	if s.Proto == ProtoUDP && err == nil {
		d.decodeUDPApp(s)
	}
}

// decodeUDPApp recognises RHCP and tunnel datagrams on ports other than the
// ones registered with gopacket.
func (d *Decoder) decodeUDPApp(s *Summary) {
	b := d.udp.Payload
	onPort := func(ports []uint16) bool {
		for _, p := range ports {
			if p == s.SrcPort || p == s.DstPort {
				return true
			}
		}
		return false
	}
	switch {
	case looksLikeRHCP(b) || onPort(d.opt.RHCPPorts) && len(b) > 0:
		if d.rhcp.DecodeFromBytes(b, gopacket.NilDecodeFeedback) != nil {
			s.Flags |= Malformed
		}
		d.apply(LayerTypeRHCP, s)
	case looksLikeTunnel(b, onPort(d.opt.TunnelPorts)):
		if d.tun.DecodeFromBytes(b, gopacket.NilDecodeFeedback) != nil {
			s.Flags |= Malformed
		}
		d.apply(LayerTypeTunnel, s)
	}
}

// apply copies the fields of one decoded layer into the summary. Later
// (upper) layers override the protocol.
func (d *Decoder) apply(t gopacket.LayerType, s *Summary) {
	switch t {
	case layers.LayerTypeEthernet:
		s.Flags |= HasEthernet | AddrMAC
		copy(s.Src[:], d.eth.SrcMAC)
		copy(s.Dst[:], d.eth.DstMAC)
	case layers.LayerTypeLinuxSLL:
		s.Flags |= AddrMAC
		copy(s.Src[:], d.sll.Addr)
	case layers.LayerTypeARP:
		s.Flags = s.Flags&^AddrMAC | HasARP
		s.Proto = ProtoARP
		s.Src, s.Dst = [16]byte{}, [16]byte{}
		copy(s.Src[:4], d.arp.SourceProtAddress)
		copy(s.Dst[:4], d.arp.DstProtAddress)
		copy(s.Aux[:6], d.arp.SourceHwAddress)
		s.Type = uint8(d.arp.Operation)
	case layers.LayerTypeIPv4:
		s.Flags = s.Flags&^AddrMAC | HasIPv4
		s.Proto = ProtoIPv4
		s.Src, s.Dst = [16]byte{}, [16]byte{}
		copy(s.Src[:4], d.ip4.SrcIP.To4())
		copy(s.Dst[:4], d.ip4.DstIP.To4())
	case layers.LayerTypeIPv6:
		s.Flags = s.Flags&^AddrMAC | HasIPv6
		s.Proto = ProtoIPv6
		copy(s.Src[:], d.ip6.SrcIP.To16())
		copy(s.Dst[:], d.ip6.DstIP.To16())
	case layers.LayerTypeUDP:
		s.Flags |= HasUDP
		s.Proto = ProtoUDP
		s.SrcPort, s.DstPort = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
	case layers.LayerTypeTCP:
		s.Flags |= HasTCP
		s.Proto = ProtoTCP
		s.SrcPort, s.DstPort = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
		if len(d.tcp.Contents) > 13 {
			s.Type = d.tcp.Contents[13]
		}
	case layers.LayerTypeICMPv4:
		s.Flags |= HasICMPv4
		s.Proto = ProtoICMPv4
		s.Type, s.Code = d.icmp4.TypeCode.Type(), d.icmp4.TypeCode.Code()
		// id and seq of echo go in the port fields, which ICMP does not use.
		s.SrcPort, s.DstPort = d.icmp4.Id, d.icmp4.Seq
	case layers.LayerTypeICMPv6:
		s.Flags |= HasICMPv6
		s.Proto = ProtoICMPv6
		s.Type, s.Code = d.icmp6.TypeCode.Type(), d.icmp6.TypeCode.Code()
	case layers.LayerTypeDHCPv4:
		d.applyDHCP(s)
	case LayerTypeRHCP:
		s.Flags |= HasRHCP
		s.Proto = ProtoRHCP
		d.rhcp.summarize(s)
	case LayerTypeTunnel:
		s.Flags |= HasTunnel
		s.Proto = ProtoTunnel
		d.tun.summarize(s)
		d.learnTunnel(s)
	}
}

func (d *Decoder) learnTunnel(s *Summary) {
	switch d.tun.Type {
	case tunnel.TypeResponse:
		if d.tunnelIndex == nil || len(d.tunnelIndex) >= maxTunnelIndexes {
			d.tunnelIndex = map[uint32]uint32{}
		}
		d.tunnelIndex[d.tun.Receiver] = d.tun.Sender
	case tunnel.TypeRequest:
	default:
		if idx, ok := d.tunnelIndex[d.tun.Receiver]; ok {
			s.ID = idx
		}
	}
}

// applyDHCP: message type from option 53 (RFC 2132 §9.6), the xid, and the
// address the exchange is about: yiaddr when the server hands one out,
// otherwise the requested address (option 50) or ciaddr.
func (d *Decoder) applyDHCP(s *Summary) {
	s.Flags |= HasDHCP
	s.Proto = ProtoDHCP
	s.ID = d.dhcp.Xid
	s.Code = uint8(d.dhcp.Operation)
	if len(d.dhcp.ClientHWAddr) == 6 {
		copy(s.Name[:6], d.dhcp.ClientHWAddr)
	}
	var requested []byte
	for _, o := range d.dhcp.Options {
		switch o.Type {
		case layers.DHCPOptMessageType:
			if len(o.Data) == 1 {
				s.Type = o.Data[0]
			}
		case layers.DHCPOptRequestIP:
			if len(o.Data) == 4 {
				requested = o.Data
			}
		case layers.DHCPOptServerID:
			if len(o.Data) == 4 {
				copy(s.Name[8:12], o.Data)
			}
		case layers.DHCPOptLeaseTime:
			if len(o.Data) == 4 {
				copy(s.Name[12:16], o.Data)
			}
		}
	}
	addr := []byte(d.dhcp.YourClientIP)
	if binary.BigEndian.Uint32(addr) == 0 {
		addr = requested
	}
	if addr == nil || binary.BigEndian.Uint32(addr) == 0 {
		addr = d.dhcp.ClientIP
	}
	if len(addr) == 4 && binary.BigEndian.Uint32(addr) != 0 {
		copy(s.Aux[:4], addr)
		s.Flags |= AuxValid
	}
}
