package trace

import (
	"errors"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/rhcp"
)

// filterCorpus is one frame of each kind, captured on different nodes.
func filterCorpus(t testing.TB) ([]Summary, []Interface) {
	t.Helper()
	ifs := []Interface{{Node: "server", Name: "eth0"}, {Node: "router", Name: "eth1"}, {Node: "device", Name: "eth0"}}
	req, _, hb := tunnelMessages(t, 3)
	frames := []struct {
		name  string
		iface uint16
		dir   engine.Direction
		frame []byte
	}{
		{"arp", 1, engine.DirBroadcast, arpRequest(t, "192.0.2.1", "192.0.2.2")},
		{"dhcp-ack", 0, engine.DirOut, dhcpFrame(t, layers.DHCPMsgTypeAck, 0x1234, "203.0.113.21")},
		{"dhcp-offer", 0, engine.DirOut, dhcpFrame(t, layers.DHCPMsgTypeOffer, 0x1234, "203.0.113.22")},
		{"rhcp-probe-router", 1, engine.DirOut, ethIPv4UDP(t, "198.51.100.1", "203.0.113.21", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpProbe(t, 1)))},
		{"rhcp-stop-device", 2, engine.DirOut, ethIPv4UDP(t, "203.0.113.21", "198.51.100.1", rhcp.Port, rhcp.Port, gopacket.Payload(rhcpStop(t, 2)))},
		{"tunnel-req", 0, engine.DirIn, ethIPv4UDP(t, "198.18.0.2", "203.0.113.1", 40000, testTunnelPort, gopacket.Payload(req))},
		{"tunnel-hb", 0, engine.DirIn, ethIPv4UDP(t, "198.18.0.2", "203.0.113.1", 40000, testTunnelPort, gopacket.Payload(hb))},
		{"tcp6", 2, engine.DirIn, tcpFrame(t)},
		{"icmp", 1, engine.DirIn, icmpEcho(t)},
	}
	d := NewDecoder(DecoderOptions{TunnelPorts: []uint16{testTunnelPort}})
	var out []Summary
	for i, f := range frames {
		s := Summary{Seq: uint64(i), Iface: f.iface, Dir: uint8(f.dir), Len: uint32(len(f.frame))}
		d.Decode(layers.LinkTypeEthernet, f.frame, &s)
		out = append(out, s)
	}
	return out, ifs
}

var corpusNames = []string{"arp", "dhcp-ack", "dhcp-offer", "rhcp-probe-router", "rhcp-stop-device", "tunnel-req", "tunnel-hb", "tcp6", "icmp"}

func TestFilterConstructs(t *testing.T) {
	sums, ifs := filterCorpus(t)
	tests := []struct {
		expr string
		want string // names of the matching frames, space separated
	}{
		// protocols
		{"dhcp", "dhcp-ack dhcp-offer"},
		{"arp", "arp"},
		{"rhcp", "rhcp-probe-router rhcp-stop-device"},
		{"tunnel", "tunnel-req tunnel-hb"},
		{"tcp", "tcp6"},
		{"ipv6", "tcp6"},
		{"icmp", "icmp"},
		{"eth", strings.Join(corpusNames, " ")},
		// not, and, or, parentheses
		{"not arp", "dhcp-ack dhcp-offer rhcp-probe-router rhcp-stop-device tunnel-req tunnel-hb tcp6 icmp"},
		{"!udp", "arp tcp6 icmp"},
		{"rhcp and node=router", "rhcp-probe-router"},
		{"rhcp && node==device", "rhcp-stop-device"},
		{"arp or icmp", "arp icmp"},
		{"arp || tcp", "arp tcp6"},
		{"not (udp or arp)", "tcp6 icmp"},
		{"(dhcp or rhcp) and not node=server", "rhcp-probe-router rhcp-stop-device"},
		{"dhcp or rhcp and node=router", "dhcp-ack dhcp-offer rhcp-probe-router"}, // and binds tighter
		{"not not arp", "arp"},
		// fields
		{"ip.addr==203.0.113.21", "dhcp-ack rhcp-probe-router rhcp-stop-device"},
		{"ip.addr==203.0.113.0/24", "dhcp-ack dhcp-offer rhcp-probe-router rhcp-stop-device tunnel-req tunnel-hb"},
		{"ip.src==203.0.113.21", "rhcp-stop-device"},
		{"ip.dst==203.0.113.21", "dhcp-ack rhcp-probe-router"},
		{"ip.addr==2001:db8::2", "tcp6"},
		{"ip.addr!=203.0.113.21 and udp", "dhcp-offer tunnel-req tunnel-hb"},
		{"udp.port==67", "dhcp-ack dhcp-offer"},
		{"udp.dstport==68", "dhcp-ack dhcp-offer"},
		{"tcp.port==5201", "tcp6"},
		{"port==5201 or port==6655", "rhcp-probe-router rhcp-stop-device tcp6"},
		{"udp.port>=40000", "tunnel-req tunnel-hb"},
		{"tunnel.index==3", "tunnel-hb"},
		{"tunnel.index==77", "tunnel-req"},
		{"tunnel.type==heartbeat", "tunnel-hb"},
		{"dhcp.type==ack", "dhcp-ack"},
		{"dhcp.type==2", "dhcp-offer"},
		{"dhcp.xid==0x1234", "dhcp-ack dhcp-offer"},
		{"dhcp.addr==203.0.113.22", "dhcp-offer"},
		{"dhcp.server==198.51.100.1", "dhcp-ack dhcp-offer"},
		{"dhcp.server==198.51.100.9", ""},
		{"rhcp.type==probe", "rhcp-probe-router"},
		{"rhcp.type!=probe", "rhcp-stop-device"},
		{"rhcp.addr==203.0.113.21", "rhcp-probe-router rhcp-stop-device"},
		{`rhcp.client=="ESN-0001" and dir==out and node=device`, "rhcp-stop-device"},
		{"arp.addr==192.0.2.2", "arp"},
		{"icmp.type==8", "icmp"},
		{"iface==eth1", "arp rhcp-probe-router icmp"},
		{"node!=server", "arp rhcp-probe-router rhcp-stop-device tcp6 icmp"},
		{"dir==bcast", "arp"},
		{"len>200", "dhcp-ack dhcp-offer"},
		{"DHCP AND NOT Node=server", ""},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.expr)
		if err != nil {
			t.Errorf("%q: %v", tt.expr, err)
			continue
		}
		var got []string
		for i := range sums {
			if f.Match(&sums[i], ifs) {
				got = append(got, corpusNames[i])
			}
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("%q matched %q, want %q", tt.expr, g, tt.want)
		}
	}
}

func TestFilterErrors(t *testing.T) {
	tests := []struct {
		expr string
		pos  int
		msg  string
	}{
		{"dhcpp", 0, `unknown protocol "dhcpp"`},
		{"rhcp and", 8, "ends too early"},
		{"rhcp and and", 9, `found "and"`},
		{"(dhcp or arp", 12, "expected ) to close the ( at column 1"},
		{"dhcp)", 4, "unbalanced )"},
		{"ip.addr==203.0.113.300", 9, "wants an IP address"},
		{"udp.port==http", 10, "wants a number"},
		{"udp.port==", 10, "expected a value"},
		{"tunnel.index=>3", 12, "unknown operator"},
		{"node<router", 4, "compares only with == or !="},
		{"ip.adr==1.2.3.4", 0, `unknown field "ip.adr"`},
		{"udp.port", 8, "needs a comparison"},
		{"arp & icmp", 4, "must be doubled"},
		{"arp $", 4, "unexpected character"},
		{`node=="router`, 6, "unterminated string"},
		{"dhcp arp", 5, `expected and, or or the end, found "arp"`},
		{"dhcp.type==acknowledge", 11, "one of ack, decline"},
		{strings.Repeat("(", 200) + "arp" + strings.Repeat(")", 200), 100, "nested too deeply"},
	}
	for _, tt := range tests {
		_, err := ParseFilter(tt.expr)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: error %v, want a *SyntaxError", tt.expr, err)
			continue
		}
		if se.Pos != tt.pos || !strings.Contains(se.Msg, tt.msg) {
			t.Errorf("%q: %v (pos %d), want pos %d and %q", tt.expr, err, se.Pos, tt.pos, tt.msg)
		}
		if !strings.Contains(err.Error(), "column") {
			t.Errorf("%q: message %q does not give the column", tt.expr, err)
		}
	}
}

func TestFilterEmptyMatchesAll(t *testing.T) {
	f, err := ParseFilter("   ")
	if err != nil || f != nil {
		t.Fatalf("blank filter: %v %v", f, err)
	}
	var s Summary
	if !f.Match(&s, nil) {
		t.Error("nil filter must match")
	}
}

// FuzzParseFilter: the parser never panics, every error is a *SyntaxError
// with a position inside the text (or at its end), and a filter that parses
// can be evaluated.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"dhcp", "rhcp and node=router", "ip.addr==203.0.113.21", "udp.port==67",
		"tunnel.index==3", "not arp", "(a", `node=="x"`, "ip.addr==2001:db8::/32 || !(tcp && port>=1024)"} {
		f.Add(s)
	}
	sums, ifs := filterCorpus(f)
	f.Fuzz(func(t *testing.T, src string) {
		flt, err := ParseFilter(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("%q: error %T %v", src, err, err)
			}
			if se.Pos < 0 || se.Pos > len(src) {
				t.Fatalf("%q: position %d outside the text", src, se.Pos)
			}
			return
		}
		for i := range sums {
			flt.Match(&sums[i], ifs)
		}
	})
}
