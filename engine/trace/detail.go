package trace

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Layer is one protocol layer of a dissected frame, for the detail pane.
type Layer struct {
	Name   string
	Fields [][2]string // name, value
}

// Detail is the full dissection of one frame: the layer tree and a hex dump.
// It is built only for the packet being looked at (gopacket.NewPacket
// allocates), never on the capture path.
type Detail struct {
	Layers []Layer
	Hex    string
	// Err says why decoding stopped early, if it did.
	Err string
}

// Detail dissects the held frame with sequence number seq; ok is false when
// the ring no longer has its bytes.
func (r *Ring) Detail(seq uint64, opt DecoderOptions) (d Detail, ok bool) {
	s, frame, ok := r.Get(seq)
	if !ok || frame == nil {
		return Detail{}, false
	}
	lt := layers.LinkTypeEthernet
	if ifs := r.Interfaces(); int(s.Iface) < len(ifs) {
		lt = ifs[s.Iface].LinkType
	}
	return Dissect(lt, frame, opt), true
}

// Dissect decodes frame of link type lt into its full layer tree. RHCP and
// tunnel payloads on the ports of opt (or recognised by content) are decoded
// by name like the layers gopacket knows.
func Dissect(lt layers.LinkType, frame []byte, opt DecoderOptions) Detail {
	first := gopacket.Decoder(lt)
	if lt == layers.LinkTypePPP {
		frame = stripPPP(frame)
	}
	if isRawIP(lt) || lt == layers.LinkTypePPP {
		first = layers.LayerTypeIPv4
		if len(frame) > 0 && frame[0]>>4 == 6 {
			first = layers.LayerTypeIPv6
		}
	}
	pkt := gopacket.NewPacket(frame, first, gopacket.DecodeOptions{NoCopy: true})
	var d Detail
	var udp *layers.UDP
	app := false
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.UDP:
			udp = l
		case *RHCP, *Tunnel:
			app = true
		}
		d.Layers = append(d.Layers, layerFields(l))
	}
	if udp != nil && !app && len(udp.Payload) > 0 {
		// A port gopacket does not map to our layers: decode by hand.
		var s Summary
		s.SrcPort, s.DstPort = uint16(udp.SrcPort), uint16(udp.DstPort)
		dec := NewDecoder(opt)
		dec.udp.Payload = udp.Payload
		dec.decodeUDPApp(&s)
		switch s.Proto {
		case ProtoRHCP:
			d.Layers = dropPayload(d.Layers)
			d.Layers = append(d.Layers, Layer{Name: "RHCP", Fields: dec.rhcp.Fields()})
		case ProtoTunnel:
			d.Layers = dropPayload(d.Layers)
			d.Layers = append(d.Layers, Layer{Name: "TNTunnel", Fields: dec.tun.Fields()})
		}
	}
	if el := pkt.ErrorLayer(); el != nil {
		d.Err = el.Error().Error()
	}
	d.Hex = hex.Dump(frame)
	return d
}

func dropPayload(ls []Layer) []Layer {
	if n := len(ls); n > 0 && ls[n-1].Name == "Payload" {
		return ls[:n-1]
	}
	return ls
}

// layerFields renders one gopacket layer as name/value pairs.
func layerFields(l gopacket.Layer) Layer {
	out := Layer{Name: l.LayerType().String()}
	add := func(k string, v any) { out.Fields = append(out.Fields, [2]string{k, fmt.Sprint(v)}) }
	switch l := l.(type) {
	case *RHCP:
		out.Fields = l.Fields()
	case *Tunnel:
		out.Fields = l.Fields()
	case *layers.Ethernet:
		add("src", l.SrcMAC)
		add("dst", l.DstMAC)
		add("type", l.EthernetType)
	case *layers.ARP:
		add("operation", map[uint16]string{1: "request", 2: "reply"}[l.Operation])
		add("sender-mac", fmtMAC(l.SourceHwAddress))
		add("sender-ip", fmtIP(l.SourceProtAddress))
		add("target-mac", fmtMAC(l.DstHwAddress))
		add("target-ip", fmtIP(l.DstProtAddress))
	case *layers.IPv4:
		add("src", l.SrcIP)
		add("dst", l.DstIP)
		add("protocol", l.Protocol)
		add("ttl", l.TTL)
		add("id", l.Id)
		add("length", l.Length)
		add("flags", l.Flags)
		add("tos", fmt.Sprintf("0x%02x", l.TOS))
	case *layers.IPv6:
		add("src", l.SrcIP)
		add("dst", l.DstIP)
		add("next-header", l.NextHeader)
		add("hop-limit", l.HopLimit)
		add("flow-label", l.FlowLabel)
		add("length", l.Length)
	case *layers.UDP:
		add("src-port", uint16(l.SrcPort))
		add("dst-port", uint16(l.DstPort))
		add("length", l.Length)
		add("checksum", fmt.Sprintf("0x%04x", l.Checksum))
	case *layers.TCP:
		add("src-port", uint16(l.SrcPort))
		add("dst-port", uint16(l.DstPort))
		add("seq", l.Seq)
		add("ack", l.Ack)
		if len(l.Contents) > 13 {
			add("flags", tcpFlags(l.Contents[13]))
		}
		add("window", l.Window)
	case *layers.ICMPv4:
		add("type", l.TypeCode)
		add("id", l.Id)
		add("seq", l.Seq)
	case *layers.ICMPv6:
		add("type", l.TypeCode)
	case *layers.DHCPv4:
		add("op", l.Operation)
		add("xid", fmt.Sprintf("0x%08x", l.Xid))
		add("flags", fmt.Sprintf("0x%04x", l.Flags))
		add("ciaddr", l.ClientIP)
		add("yiaddr", l.YourClientIP)
		add("siaddr", l.NextServerIP)
		add("giaddr", l.RelayAgentIP)
		add("chaddr", l.ClientHWAddr)
		for _, o := range l.Options {
			add(fmt.Sprintf("option %d %s", uint8(o.Type), o.Type), dhcpOptionValue(o))
		}
	default:
		s := gopacket.LayerString(l)
		if i := strings.IndexByte(s, '{'); i >= 0 {
			s = s[i:]
		}
		add("fields", s)
	}
	return out
}

func fmtMAC(b []byte) string {
	if len(b) == 6 {
		return macString(b)
	}
	return hex.EncodeToString(b)
}

func macString(b []byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

func fmtIP(b []byte) string {
	if len(b) == 4 {
		return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], b[3])
	}
	return hex.EncodeToString(b)
}

// dhcpOptionValue shows an option's value: as text for the text options,
// as addresses for address lists, else in hex. Option 90 (authentication,
// RFC 3118/6704) carries an HMAC: only its size is shown.
func dhcpOptionValue(o layers.DHCPOption) string {
	switch o.Type {
	case layers.DHCPOptMessageType:
		if len(o.Data) == 1 {
			return dhcpTypeName(o.Data[0])
		}
	case layers.DHCPOptHostname, layers.DHCPOptDomainName, layers.DHCPOptMessage, layers.DHCPOptClassID:
		return fmt.Sprintf("%q", o.Data)
	case layers.DHCPOptSubnetMask, layers.DHCPOptRouter, layers.DHCPOptDNS, layers.DHCPOptRequestIP,
		layers.DHCPOptServerID, layers.DHCPOptBroadcastAddr:
		if len(o.Data)%4 == 0 && len(o.Data) > 0 {
			var addrs []string
			for i := 0; i < len(o.Data); i += 4 {
				addrs = append(addrs, fmtIP(o.Data[i:i+4]))
			}
			return strings.Join(addrs, ", ")
		}
	case layers.DHCPOptLeaseTime, layers.DHCPOptT1, layers.DHCPOptT2:
		if len(o.Data) == 4 {
			return fmt.Sprintf("%ds", uint32(o.Data[0])<<24|uint32(o.Data[1])<<16|uint32(o.Data[2])<<8|uint32(o.Data[3]))
		}
	case 90:
		return fmt.Sprintf("%d bytes (authentication, not shown)", len(o.Data))
	}
	return hex.EncodeToString(o.Data)
}
