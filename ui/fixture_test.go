package ui

import (
	"encoding/binary"
	"io"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/gopacket/gopacket/layers"
	"github.com/muesli/termenv"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/rhcp"
	"github.com/fieldcon/fieldcon/engine/trace"
)

// t0 is the recorded state's clock.
var t0 = time.Date(2026, 11, 21, 7, 0, 0, 0, time.UTC)

// staticSource replays one recorded snapshot.
type staticSource struct{ snap engine.Snapshot }

func (s staticSource) Snapshot() engine.Snapshot { return s.snap }

// recordedSnapshot is an engine state written by hand: the demo site with
// an RHCP client part-way through RHCP+DHCP, a tunnel server with NAT
// mappings, DHCP leases and a cascade.
func recordedSnapshot() engine.Snapshot {
	step := func(name string, done bool, ago time.Duration) engine.Step {
		s := engine.Step{Name: name, Done: done}
		if done {
			s.At = t0.Add(-ago)
		}
		return s
	}
	return engine.Snapshot{Time: t0, Nodes: []engine.NodeSnapshot{
		{
			Name: "server", Netns: "fc-demo-server", Winner: "static",
			Roles: []engine.RoleSnapshot{
				{Kind: "static", Status: engine.StatusDone, Steps: []engine.Step{step("addresses", true, time.Minute), step("routes", true, time.Minute)}},
				{Kind: "rhcp_server", Status: engine.StatusRunning, Steps: []engine.Step{step("listening", true, time.Minute)}},
				{Kind: "dhcp_server", Status: engine.StatusRunning},
				{Kind: "tunnel_server", Status: engine.StatusRunning},
			},
			Addresses: []engine.AddressRow{{Iface: "eth0", Address: "198.51.100.1/24", Source: "static"}},
			Leases: []engine.LeaseRow{
				{Role: "server", Address: "203.0.113.20", ClientID: "ESN-0001", MAC: "02:00:00:00:06:01", State: "bound", Expiry: t0.Add(55 * time.Minute)},
				{Role: "server", Address: "203.0.113.21", ClientID: "0045534e2d30303032", MAC: "02:00:00:00:06:02", State: "offered", Expiry: t0.Add(40 * time.Second)},
			},
			Probes: []engine.ProbeRow{{ClientID: "ESN-0001", Address: "203.0.113.10/32", State: "confirmed", Sent: 3, LastSent: t0.Add(-12 * time.Second)}},
			Mappings: []engine.MappingRow{
				{TunnelIndex: 1, Protocol: "udp", Virtual: "198.18.0.2:40001", Translated: "198.51.100.1:61001", Destination: "198.51.100.7:53", State: "ASSURED", PacketsOut: 12, BytesOut: 900, PacketsIn: 12, BytesIn: 1800},
				{TunnelIndex: 2, Protocol: "tcp", Virtual: "198.18.0.3:51514", Translated: "198.51.100.1:61002", Destination: "198.51.100.9:443", State: "ESTABLISHED", PacketsOut: 2400, BytesOut: 180000, PacketsIn: 3100, BytesIn: 4200000},
				{TunnelIndex: 1, Protocol: "icmp", Virtual: "198.18.0.2", Translated: "198.51.100.1", Destination: "198.51.100.7", PacketsOut: 4, BytesOut: 336, PacketsIn: 4, BytesIn: 336},
			},
			Tunnels: []engine.TunnelRow{
				{Index: 1, Endpoint: "203.0.113.77:40000", Virtual: "198.18.0.2/24", LastHeartbeat: t0.Add(-3 * time.Second), PacketsIn: 20, PacketsOut: 18, BytesIn: 2300, BytesOut: 2100},
				{Index: 2, Endpoint: "203.0.113.78:40000", Virtual: "198.18.0.3/24", LastHeartbeat: t0.Add(-9 * time.Second), PacketsIn: 3104, PacketsOut: 2404, BytesIn: 4300000, BytesOut: 190000},
			},
		},
		{
			Name: "router", Netns: "fc-demo-router", Winner: "static",
			Roles: []engine.RoleSnapshot{
				{Kind: "static", Status: engine.StatusDone, Steps: []engine.Step{step("addresses", true, time.Minute), step("routes", true, time.Minute), step("forwarding", true, time.Minute)}},
			},
			Addresses: []engine.AddressRow{
				{Iface: "eth0", Address: "198.51.100.2/24", Source: "static"},
				{Iface: "eth1", Address: "192.0.2.1/32", Source: "static"},
			},
			Cascade: []engine.CascadeRow{{Downstream: "device", Kind: "ppp", Link: "eth1", Address: "192.0.2.2", State: "up"}},
		},
		{
			Name: "device", Netns: "fc-demo-device", Winner: "rhcp",
			Roles: []engine.RoleSnapshot{
				{Kind: "rhcp_client", Status: engine.StatusRunning, Steps: []engine.Step{
					step("link up", true, 50*time.Second), step("probe received", true, 40*time.Second),
					step("address configured", true, 40*time.Second), step("stop sent", true, 39*time.Second),
					step("DHCP formal", false, 0)}},
				{Kind: "dhcp_client", Status: engine.StatusFailed, Error: "dhcp: bind udp 0.0.0.0:68: address already in use"},
			},
			Addresses: []engine.AddressRow{
				{Iface: "eth0", Address: "192.0.2.2/32", Source: "ipcp"},
				{Iface: "eth0", Address: "203.0.113.10/32", Source: "rhcp", Temporary: true, Preferred: 90 * time.Second, Valid: 120 * time.Second},
			},
			Leases: []engine.LeaseRow{{Role: "client", Address: "203.0.113.20/24", Server: "198.51.100.1", State: "bound",
				T1: t0.Add(25 * time.Minute), T2: t0.Add(47*time.Minute + 30*time.Second), Expiry: t0.Add(55 * time.Minute)}},
			Cascade: []engine.CascadeRow{{Downstream: "sensor", Kind: "ethernet", Link: "eth1", Address: "203.0.113.40/28", State: "configuring"}},
		},
	}}
}

// recordedEvents is the event stream that led there.
func recordedEvents() []engine.Event {
	at := func(s int) time.Time { return t0.Add(time.Duration(s-60) * time.Second) }
	return []engine.Event{
		{Time: at(0), Node: "server", Kind: engine.KindRoleStarted, Fields: engine.Fields{"role": "static"}},
		{Time: at(0), Node: "server", Kind: engine.KindAddressAdded, Fields: engine.Fields{"iface": "eth0", "address": "198.51.100.1/24", "source": "static"}},
		{Time: at(1), Node: "router", Kind: engine.KindAddressAdded, Fields: engine.Fields{"iface": "eth0", "address": "198.51.100.2/24", "source": "static"}},
		{Time: at(1), Node: "router", Kind: engine.KindRouteAdded, Fields: engine.Fields{"dst": "203.0.113.10/32", "via": "192.0.2.2", "source": "cascade"}},
		{Time: at(2), Node: "device", Kind: engine.KindRoleStarted, Fields: engine.Fields{"role": "rhcp_client"}},
		{Time: at(10), Node: "server", Kind: engine.KindRHCPProbeSent, Fields: engine.Fields{"client_id": "ESN-0001", "address": "203.0.113.10/32", "seq": 1}},
		{Time: at(20), Node: "device", Kind: engine.KindRHCPProbeReceived, Fields: engine.Fields{"address": "203.0.113.10/32", "seq": 2}},
		{Time: at(20), Node: "device", Kind: engine.KindAddressAdded, Fields: engine.Fields{"iface": "eth0", "address": "203.0.113.10/32", "source": "rhcp"}},
		{Time: at(21), Node: "device", Kind: engine.KindRHCPStopSent, Fields: engine.Fields{"address": "203.0.113.10/32"}},
		{Time: at(21), Node: "server", Kind: engine.KindRHCPStopReceived, Fields: engine.Fields{"client_id": "ESN-0001"}},
		{Time: at(22), Node: "device", Kind: engine.KindError, Fields: engine.Fields{"role": "dhcp_client", "message": "dhcp: bind udp 0.0.0.0:68: address already in use"}},
		{Time: at(30), Node: "server", Kind: engine.KindTunnelUp, Fields: engine.Fields{"index": 1, "endpoint": "203.0.113.77:40000"}},
		{Time: at(31), Node: "server", Kind: engine.KindNATAdded, Fields: engine.Fields{"index": 1, "virtual": "198.18.0.2:40001"}},
	}
}

var testKey = []byte("fieldcon-demo-site-key-0123456789")

// ether prepends an Ethernet header to an IPv4 packet.
func ether(src, dst byte, ip []byte) []byte {
	f := make([]byte, 14, 14+len(ip))
	copy(f[0:6], []byte{2, 0, 0, 0, 0, dst})
	copy(f[6:12], []byte{2, 0, 0, 0, 0, src})
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	return append(f, ip...)
}

func arpRequest(sender, target netip.Addr) []byte {
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(f[12:14], 0x0806)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], 0x0800)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], 1)
	copy(a[8:14], f[6:12])
	s4, t4 := sender.As4(), target.As4()
	copy(a[14:18], s4[:])
	copy(a[24:28], t4[:])
	return f
}

func rhcpFrame(t testing.TB, m rhcp.Message, src, dst string) []byte {
	t.Helper()
	b, err := m.Marshal(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return ether(1, 2, rhcp.BuildPacket(netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst), b))
}

func udpFrame(src, dst string, payload []byte) []byte {
	return ether(1, 2, rhcp.BuildPacket(netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst), payload))
}

// recordedRing is a real trace ring holding frames of the demo, decoded by
// the trace package's summary decoder as a capture would.
func recordedRing(t testing.TB) *trace.Ring {
	r := trace.NewRing(trace.RingConfig{Summaries: 1024, RawBytes: 1 << 20})
	dec := trace.NewDecoder(trace.DecoderOptions{})
	ifs := []uint16{
		r.AddInterface(trace.Interface{Node: "router", Name: "eth1", LinkType: layers.LinkTypeEthernet}),
		r.AddInterface(trace.Interface{Node: "device", Name: "eth0", LinkType: layers.LinkTypeEthernet}),
	}
	probe := rhcp.Message{Type: rhcp.TypeProbe, ClientID: "ESN-0001", Address: netip.MustParsePrefix("203.0.113.10/32"),
		Gateway: netip.MustParseAddr("192.0.2.1"), Server: netip.MustParseAddr("198.51.100.1"), Sequence: 2,
		Issued: t0.Add(-41 * time.Second), Lifetime: time.Minute}
	stop := rhcp.Message{Type: rhcp.TypeStop, ClientID: "ESN-0001", Address: netip.MustParsePrefix("203.0.113.10/32"),
		Sequence: 3, AckSeq: 2, Issued: t0.Add(-40 * time.Second), Lifetime: time.Minute}
	port := int(rhcp.Port)
	frames := []struct {
		ifc uint16
		dir engine.Direction
		b   []byte
	}{
		{ifs[0], engine.DirOut, arpRequest(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"))},
		{ifs[0], engine.DirOut, rhcpFrame(t, probe, "198.51.100.1:"+strconv.Itoa(port), "203.0.113.10:"+strconv.Itoa(port))},
		{ifs[1], engine.DirIn, rhcpFrame(t, probe, "198.51.100.1:"+strconv.Itoa(port), "203.0.113.10:"+strconv.Itoa(port))},
		{ifs[1], engine.DirOut, rhcpFrame(t, stop, "203.0.113.10:"+strconv.Itoa(port), "198.51.100.1:"+strconv.Itoa(port))},
		{ifs[1], engine.DirOut, udpFrame("203.0.113.10:5353", "198.51.100.1:514", []byte("<13>device up"))},
	}
	for i, f := range frames {
		var s trace.Summary
		dec.Decode(layers.LinkTypeEthernet, f.b, &s)
		s.Time = t0.Add(time.Duration(i-50) * time.Second).UnixNano()
		s.Iface, s.Dir, s.Len = f.ifc, uint8(f.dir), uint32(len(f.b))
		r.Add(s, f.b)
	}
	return r
}

// asciiRenderer renders without colour, as NO_COLOR does: goldens are plain text.
func asciiRenderer() *lipgloss.Renderer {
	r := lipgloss.NewRenderer(io.Discard)
	r.SetColorProfile(termenv.Ascii)
	return r
}

func recordedOptions(t testing.TB) Options {
	bus := engine.NewBus(1000)
	for _, e := range recordedEvents() {
		bus.Publish(e)
	}
	return Options{
		Profile: "demo", Host: "fieldbox", Lab: true,
		Links: []LabLink{{"server:eth0", "router:eth0"}, {"router:eth1", "device:eth0"}},
		LinkStates: func() (map[string]bool, error) {
			return map[string]bool{"server:eth0": true, "router:eth0": true, "router:eth1": true, "device:eth0": false}, nil
		},
		Engine:    staticSource{recordedSnapshot()},
		Bus:       bus,
		Trace:     recordedRing(t),
		Renderer:  asciiRenderer(),
		Now:       func() time.Time { return t0 },
		Tick:      20 * time.Millisecond,
		ExportDir: t.TempDir(),
	}
}
