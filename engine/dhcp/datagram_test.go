package dhcp

import (
	"bytes"
	"net/netip"
	"testing"
)

// A datagram for a send-only raw socket is the frame without its Ethernet
// header, checksums included.
func TestBuildDatagramIsFrameWithoutEthernet(t *testing.T) {
	src, dst := netip.MustParseAddrPort("198.51.100.1:67"), netip.MustParseAddrPort("192.0.2.21:68")
	payload := []byte("forcerenew")
	d := BuildDatagram(src, dst, payload)
	f := BuildFrame(Frame{SrcMAC: cliMAC, DstMAC: cliMAC, Src: src, Dst: dst, Payload: payload})
	if !bytes.Equal(d, f[ethHeaderLen:]) {
		t.Fatalf("datagram\n% x\nframe without ethernet\n% x", d, f[ethHeaderLen:])
	}
	g, err := ParseFrame(f)
	if err != nil || g.Src != src || g.Dst != dst || !bytes.Equal(g.Payload, payload) {
		t.Errorf("parsed %+v, %v", g, err)
	}
	if checksum(d[ipv4HeaderLen:], 0x11+uint32(len(d)-ipv4HeaderLen)+0xc633+0x6401+0xc000+0x0215) != 0 {
		t.Errorf("udp checksum does not verify")
	}
}
