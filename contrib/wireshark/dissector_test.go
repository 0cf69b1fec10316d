// Package wireshark holds the Lua dissectors for fieldcon's protocols; this
// test runs them in tshark on a capture exported by engine/trace.
package wireshark

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/rhcp"
	"github.com/fieldcon/fieldcon/engine/trace"
	"github.com/fieldcon/fieldcon/engine/tunnel"
)

var key = []byte("wireshark-test-site-key-0123456")

func marshal(t *testing.T, m rhcp.Message) []byte {
	t.Helper()
	b, err := m.Marshal(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// capture exports a pcapng (raw IP link type, as on a TUN or PPP link) with
// an RHCP probe, stop, release and ack and a tunnel handshake and heartbeat,
// all encoded by the protocol packages themselves.
func capture(t *testing.T) string {
	t.Helper()
	server, device := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.21")
	ap := func(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
	issued := time.Unix(1_800_000_000, 0)
	probe := marshal(t, rhcp.Message{Type: rhcp.TypeProbe, ClientID: "ESN-0001",
		Address: netip.MustParsePrefix("203.0.113.21/24"), Gateway: netip.MustParseAddr("192.0.2.1"),
		Routes: []rhcp.Route{{Dst: netip.MustParsePrefix("198.51.100.0/24")}, {Dst: netip.MustParsePrefix("198.18.0.0/15"), Via: netip.MustParseAddr("192.0.2.1")}},
		Server: server, DHCPServer: netip.MustParseAddr("198.51.100.3"), Sequence: 1_800_000_000_000_000_001,
		Issued: issued, Lifetime: 300 * time.Second})
	stop := marshal(t, rhcp.Message{Type: rhcp.TypeStop, ClientID: "ESN-0001",
		Address: netip.MustParsePrefix("203.0.113.21/24"), Sequence: 5, AckSeq: 1_800_000_000_000_000_001})
	release := marshal(t, rhcp.Message{Type: rhcp.TypeRelease, ClientID: "ESN-0001",
		Address: netip.MustParsePrefix("203.0.113.21/24"), Formal: netip.MustParsePrefix("198.51.100.50/24"), Sequence: 6})
	ack := marshal(t, rhcp.Message{Type: rhcp.TypeAck, ClientID: "ESN-0001", Sequence: 7, AckSeq: 6})

	sk, _ := tunnel.GenerateKey()
	ck, _ := tunnel.GenerateKey()
	req, in, err := tunnel.Initiate(ck, tunnel.PublicKey(sk.Public), 77, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	acc, _, err := tunnel.NewResponder(sk, 0).Accept(req, netip.MustParseAddrPort("203.0.113.9:4000"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err := acc.Respond(3, tunnel.Assignment{Address: netip.MustParsePrefix("198.19.0.2/24"), Gateway: netip.MustParseAddr("198.19.0.1"), MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	sess, _, err := in.Complete(resp, ck.Public)
	if err != nil {
		t.Fatal(err)
	}
	hb := sess.Seal(nil, tunnel.TypeHeartbeat, nil)
	hb2 := sess.Seal(nil, tunnel.TypeHeartbeat, nil)

	client, tserver := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("203.0.113.1")
	frames := [][]byte{
		rhcp.BuildPacket(ap(server, rhcp.Port), ap(device, rhcp.Port), probe),
		rhcp.BuildPacket(ap(device, rhcp.Port), ap(server, rhcp.Port), stop),
		rhcp.BuildPacket(ap(device, 7000), ap(server, 7000), release), // off the default port
		rhcp.BuildPacket(ap(server, rhcp.Port), ap(device, rhcp.Port), ack),
		rhcp.BuildPacket(ap(client, 40000), ap(tserver, 51900), req),
		rhcp.BuildPacket(ap(tserver, 51900), ap(client, 40000), resp),
		rhcp.BuildPacket(ap(client, 40000), ap(tserver, 51900), hb),
		rhcp.BuildPacket(ap(client, 40000), ap(tserver, 51900), hb2),
	}
	r := trace.NewRing(trace.RingConfig{Summaries: 64, RawBytes: 1 << 16})
	idx := r.AddInterface(trace.Interface{Node: "device", Name: "ppp0", LinkType: layers.LinkTypeRaw})
	d := trace.NewDecoder(trace.DecoderOptions{TunnelPorts: []uint16{51900}})
	for i, f := range frames {
		s := trace.Summary{Time: time.Now().UnixNano() + int64(i), Iface: idx, Dir: uint8(engine.DirIn), Len: uint32(len(f))}
		d.Decode(layers.LinkTypeRaw, f, &s)
		r.Add(s, f)
	}
	path := filepath.Join(t.TempDir(), "fieldcon.pcapng")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := r.WritePcapng(out, nil); err != nil || res.Packets != len(frames) {
		t.Fatalf("export: %+v %v", res, err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func tshark(t *testing.T, args ...string) []string {
	t.Helper()
	bin, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("skipping: requires tshark (install the Debian package tshark)")
	}
	script, _ := filepath.Abs("fieldcon.lua")
	args = append([]string{"-X", "lua_script:" + script, "-o", "tntunnel.port:51900"}, args...)
	cmd := exec.Command(bin, args...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}

func TestLuaDissectorsDecodeRHCP(t *testing.T) {
	path := capture(t)
	lines := tshark(t, "-r", path, "-Y", "rhcp", "-T", "fields", "-E", "separator=|", "-E", "aggregator=,",
		"-e", "rhcp.type", "-e", "rhcp.client_id", "-e", "rhcp.address", "-e", "rhcp.prefix_len",
		"-e", "rhcp.gateway", "-e", "rhcp.route", "-e", "rhcp.server", "-e", "rhcp.dhcp_server",
		"-e", "rhcp.sequence", "-e", "rhcp.validity.lifetime", "-e", "rhcp.formal_address", "-e", "rhcp.ack_sequence")
	want := []string{
		"1|ESN-0001|203.0.113.21|24|192.0.2.1|198.51.100.0/24,198.18.0.0/15 via 192.0.2.1|198.51.100.1|198.51.100.3|1800000000000000001|300||",
		"2|ESN-0001|203.0.113.21|24|||||5|||1800000000000000001",
		"3|ESN-0001|203.0.113.21|24|||||6||198.51.100.50/24|",
		"4|ESN-0001|||||||7|||6",
	}
	if len(lines) != len(want) {
		t.Fatalf("tshark decoded %d RHCP packets, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i := range want {
		if strings.TrimSpace(lines[i]) != want[i] {
			t.Errorf("RHCP packet %d:\n got %s\nwant %s", i, lines[i], want[i])
		}
	}
	// Display filters work on the fields, and the info column names them.
	info := tshark(t, "-r", path, "-Y", `rhcp.type == 1 && rhcp.client_id == "ESN-0001"`, "-T", "fields", "-e", "_ws.col.Info")
	if len(info) != 1 || !strings.Contains(info[0], "RHCP probe client ESN-0001 address 203.0.113.21/24") {
		t.Errorf("probe info column: %q", info)
	}
}

func TestLuaDissectorsDecodeTunnel(t *testing.T) {
	path := capture(t)
	lines := tshark(t, "-r", path, "-Y", "tntunnel", "-T", "fields", "-E", "separator=|",
		"-e", "tntunnel.type", "-e", "tntunnel.sender_index", "-e", "tntunnel.receiver_index",
		"-e", "tntunnel.index", "-e", "tntunnel.counter")
	want := []string{"1|77|||", "2|3|77|3|", "5||3|3|0", "5||3|3|1"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("tunnel fields:\n got %s\nwant %s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	// Nothing sealed is ever printed: the verbose tree shows sizes only.
	tree := strings.Join(tshark(t, "-r", path, "-Y", "tntunnel || rhcp", "-V"), "\n")
	for _, w := range []string{"Noise IK message 1", "HMAC-SHA256", "(32 bytes, not shown)"} {
		if !strings.Contains(tree, w) {
			t.Errorf("verbose tree lacks %q", w)
		}
	}
}
