package trace_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/rhcp"
	"github.com/fieldcon/fieldcon/engine/site"
	"github.com/fieldcon/fieldcon/engine/trace"
	"github.com/fieldcon/fieldcon/profiles"
)

// TestTraceRHCPLab runs the embedded rhcp lab with a trace on every
// interface of every node: the trace shows the probe travel server → router
// → device, the address appear on the device, and the stop travel back, each
// decoded with its fields; the pcapng export is read by tshark with the same
// packet count and timestamps, and the Lua dissector decodes the RHCP fields.
func TestTraceRHCPLab(t *testing.T) {
	labtest.RequireRoot(t)
	p, err := profiles.Load("rhcp")
	if err != nil {
		t.Fatal(err)
	}
	l := labtest.Up(t, p)
	s, err := site.Build(p, site.Options{
		Netns:    l.Netns,
		OpenHost: func(ns string) (engine.Host, error) { return linux.Open(ns) },
		StateDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := trace.NewSession(trace.SessionConfig{Decoder: trace.OptionsFromProfile(p)})
	for _, n := range p.Nodes {
		if err := ts.StartAll(ctx, s.Hosts[n.Name], n.Name); err != nil {
			t.Fatal(err)
		}
	}
	defer ts.StopAll()
	if got := len(ts.Capturing()); got != 4 {
		t.Fatalf("capturing on %d interfaces (%v), want 4", got, ts.Capturing())
	}
	sub := s.Engine.Bus().Subscribe(4096, true)
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Engine.Run(runCtx) }()

	r := ts.Ring()
	stopAtServer := mustFilter(t, "rhcp.type==stop and node=server and dir==in")
	var addrEvent engine.Event
	for addrEvent.Kind == "" || r.Count(stopAtServer) == 0 {
		select {
		case e := <-sub.C:
			if e.Kind == engine.KindAddressAdded && e.Node == "device" && e.Fields["source"] == "rhcp" {
				addrEvent = e
			}
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("no address on the device and stop at the server within 30s; trace:\n%s", dump(r, nil))
		}
	}
	time.Sleep(200 * time.Millisecond) // let the last frames of the exchange arrive
	stopRun()
	if err := <-done; err != nil {
		t.Logf("engine undo: %v", err)
	}
	ts.StopAll()
	if err := ts.Err(); err != nil {
		t.Errorf("capture errors: %v", err)
	}
	t.Logf("trace of the run:\n%s", dump(r, mustFilter(t, "rhcp or dhcp")))

	// The probe on each hop, in order, with its fields.
	var probeTimes []int64
	for _, hop := range []string{"node=server and dir==out", "node=router and iface==eth0", "node=router and iface==eth1 and dir==out", "node=device"} {
		got := r.RangeFiltered(mustFilter(t, "rhcp.type==probe and "+hop), 0, 1)
		if len(got) == 0 {
			t.Fatalf("no probe seen at %s", hop)
		}
		pr := got[0]
		if pr.ClientID() != "ESN-0001" || pr.AuxAddr() != netip.MustParseAddr("203.0.113.10") || pr.Code != 24 ||
			pr.DstAddr() != netip.MustParseAddr("203.0.113.10") || pr.SrcAddr() != netip.MustParseAddr("198.51.100.1") {
			t.Errorf("probe at %s: %s", hop, r.Line(&pr))
		}
		probeTimes = append(probeTimes, pr.Time)
	}
	for i := 1; i < len(probeTimes); i++ {
		if probeTimes[i] < probeTimes[i-1] {
			t.Errorf("probe hop %d seen at %d, before hop %d at %d", i, probeTimes[i], i-1, probeTimes[i-1])
		}
	}
	// The address appears between the probe reaching the device and the stop
	// leaving it.
	firstProbe := r.RangeFiltered(mustFilter(t, "rhcp.type==probe and node=device"), 0, 1)[0]
	stop := r.RangeFiltered(mustFilter(t, "rhcp.type==stop and node=device and dir==out"), 0, 1)
	if len(stop) == 0 {
		t.Fatal("no stop leaving the device")
	}
	if at := addrEvent.Time.UnixNano(); at < firstProbe.Time || at > stop[0].Time {
		t.Errorf("address.added at %d, not between the probe (%d) and the stop (%d)", at, firstProbe.Time, stop[0].Time)
	}
	if stop[0].SrcAddr() != netip.MustParseAddr("203.0.113.10") || stop[0].ClientID() != "ESN-0001" {
		t.Errorf("stop: %s", r.Line(&stop[0]))
	}

	// Full dissection of the probe, and its HMAC checked with the site key.
	d, ok := r.Detail(firstProbe.Seq, trace.OptionsFromProfile(p))
	if !ok {
		t.Fatal("probe bytes gone from the ring")
	}
	last := d.Layers[len(d.Layers)-1]
	if last.Name != "RHCP" || !hasField(last, "client-id", `"ESN-0001"`) || !hasField(last, "address", "203.0.113.10/24") ||
		!hasField(last, "gateway", "192.0.2.1") || !hasField(last, "server", "198.51.100.1") {
		t.Errorf("probe detail: %+v", d.Layers)
	}
	key, err := rhcp.KeySource{File: p.Node("server").RHCPServer.KeyFile}.Load()
	if err != nil {
		t.Logf("site key not readable, HMAC not checked: %v", err)
	} else {
		_, frame, _ := r.Get(firstProbe.Seq)
		var m trace.RHCP
		if err := m.DecodeFromBytes(frame[14+28:], gopacket.NilDecodeFeedback); err != nil {
			t.Fatal(err)
		}
		if err := m.Verify(key); err != nil {
			t.Errorf("captured probe does not verify with the site key: %v", err)
		}
	}

	exportAndCheckWithTshark(t, r)
}

func exportAndCheckWithTshark(t *testing.T, r *trace.Ring) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Log("tshark not installed: export not checked")
		return
	}
	path := filepath.Join(t.TempDir(), "rhcp.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.WritePcapng(f, nil)
	f.Close()
	if err != nil || res.Missing != 0 || res.Packets != r.Len() {
		t.Fatalf("export: %+v, ring holds %d: %v", res, r.Len(), err)
	}
	out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "separator=|",
		"-e", "frame.time_epoch", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
		"-e", "udp.srcport", "-e", "udp.dstport", "-e", "arp.src.proto_ipv4").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	rows := strings.Split(strings.TrimSpace(string(out)), "\n")
	sums := r.Range(0, r.Len())
	if len(rows) != len(sums) {
		t.Fatalf("tshark read %d packets, the ring holds %d", len(rows), len(sums))
	}
	for i, s := range sums {
		f := strings.Split(rows[i], "|")
		if want := fmt.Sprintf("%d.%09d", s.Time/1e9, s.Time%1e9); f[0] != want {
			t.Errorf("packet %d: tshark time %s, captured %s", i, f[0], want)
		}
		// The summary decoder agrees with tshark on addresses and ports.
		src, dst := f[1]+f[3], f[2]+f[4]
		if s.Proto == trace.ProtoARP {
			src = f[7]
		}
		if got := s.SrcAddr(); src != "" && (!got.IsValid() || got.String() != strings.Split(src, ",")[0]) {
			t.Errorf("packet %d: source %v, tshark %s: %s", i, got, src, r.Line(&s))
		}
		if got := s.DstAddr(); dst != "" && s.Proto != trace.ProtoARP && got.String() != strings.Split(dst, ",")[0] {
			t.Errorf("packet %d: destination %v, tshark %s: %s", i, got, dst, r.Line(&s))
		}
		if f[5] != "" && s.Has(trace.HasUDP) && fmt.Sprint(s.SrcPort, s.DstPort) != strings.Split(f[5], ",")[0]+" "+strings.Split(f[6], ",")[0] {
			t.Errorf("packet %d: ports %d %d, tshark %s %s", i, s.SrcPort, s.DstPort, f[5], f[6])
		}
	}
	script, _ := filepath.Abs("../../contrib/wireshark/fieldcon.lua")
	out, err = exec.Command(tshark, "-X", "lua_script:"+script, "-r", path, "-Y", "rhcp.type == 1 && !icmp", // not the probes quoted in ICMP errors
		"-T", "fields", "-E", "separator=|", "-e", "rhcp.client_id", "-e", "rhcp.address", "-e", "rhcp.prefix_len", "-e", "rhcp.server").Output()
	if err != nil {
		t.Fatalf("tshark with the lua dissector: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if want := r.Count(mustFilter(nil, "rhcp.type==probe")); len(lines) != want {
		t.Errorf("lua dissector found %d probes, the trace %d", len(lines), want)
	}
	for _, l := range lines {
		if l != "ESN-0001|203.0.113.10|24|198.51.100.1" {
			t.Errorf("lua dissector probe fields %q", l)
		}
	}
}

func mustFilter(t *testing.T, expr string) *trace.Filter {
	f, err := trace.ParseFilter(expr)
	if err != nil {
		panic(err)
	}
	return f
}

func hasField(l trace.Layer, k, v string) bool {
	for _, kv := range l.Fields {
		if kv[0] == k && kv[1] == v {
			return true
		}
	}
	return false
}

func dump(r *trace.Ring, f *trace.Filter) string {
	var b strings.Builder
	for _, s := range r.RangeFiltered(f, 0, 200) {
		b.WriteString(r.Line(&s))
		b.WriteByte('\n')
	}
	return b.String()
}

// TestTraceTunnelLab runs the embedded tunnel lab with a trace on every
// interface, following the TUN devices the tunnel roles create: the
// handshake and heartbeats are decoded with the tunnel index in both
// directions, and a ping through the tunnel appears as data messages on the
// NAT's outside link and as plain ICMP on the client's TUN (raw IP).
func TestTraceTunnelLab(t *testing.T) {
	labtest.RequireRoot(t)
	p, err := profiles.Load("tunnel")
	if err != nil {
		t.Fatal(err)
	}
	l := labtest.Up(t, p)
	s, err := site.Build(p, site.Options{
		Netns:    l.Netns,
		OpenHost: func(ns string) (engine.Host, error) { return linux.Open(ns) },
		StateDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := trace.NewSession(trace.SessionConfig{Decoder: trace.OptionsFromProfile(p)})
	defer ts.StopAll()
	startAll := func() {
		for _, n := range p.Nodes {
			ts.StartAll(ctx, s.Hosts[n.Name], n.Name)
		}
	}
	startAll()
	sub := s.Engine.Bus().Subscribe(4096, true)
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Engine.Run(runCtx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopRun()
			<-done
		}
	}
	defer stop()

	var index string
	for index == "" {
		select {
		case e := <-sub.C:
			if e.Kind == engine.KindTunnelUp && e.Node == "client" {
				index = fmt.Sprint(e.Fields["index"])
			}
		case <-ctx.Done():
			t.Fatalf("no tunnel.up from the client within 30s; trace:\n%s", dump(ts.Ring(), mustFilter(t, "tunnel")))
		}
	}
	startAll() // the TUN devices exist now
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.Netns("client"),
		"ping", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.2").CombinedOutput()
	pinged := err == nil
	if !pinged {
		t.Logf("ping through the tunnel failed (%v): data checks skipped\n%s", err, out)
	}
	time.Sleep(2500 * time.Millisecond) // a heartbeat each way
	stop()
	ts.StopAll()
	r := ts.Ring()
	t.Logf("tunnel trace on nat eth1:\n%s", dump(r, mustFilter(t, "tunnel and node=nat and iface==eth1")))

	resp := r.RangeFiltered(mustFilter(t, "tunnel.type==response and node=nat and iface==eth1"), 0, 10)
	if len(resp) == 0 || fmt.Sprint(resp[len(resp)-1].ID) != index {
		t.Fatalf("responses on nat eth1 %v, want the last with tunnel index %s", resp, index)
	}
	both := mustFilter(t, "tunnel.index=="+index+" and tunnel.type==heartbeat and node=nat and iface==eth1")
	var toServer, toClient int
	for _, s := range r.RangeFiltered(both, 0, 1000) {
		switch {
		case s.DstAddr() == netip.MustParseAddr("203.0.113.1"):
			toServer++
		case s.SrcAddr() == netip.MustParseAddr("203.0.113.1"):
			toClient++
		}
	}
	if toServer == 0 || toClient == 0 {
		t.Errorf("heartbeats with tunnel index %s: %d to the server, %d to the client; want both ways", index, toServer, toClient)
	}
	if !pinged {
		return
	}
	if n := r.Count(mustFilter(t, "tunnel.type==data and tunnel.index=="+index)); n < 6 {
		t.Errorf("%d data messages of tunnel %s for 3 echo requests and replies", n, index)
	}
	var tun *trace.Interface
	for _, i := range r.Interfaces() {
		if i.Node == "client" && i.LinkType == 101 {
			tun = &i
		}
	}
	if tun == nil {
		t.Fatalf("the client's TUN was not captured: %v", r.Interfaces())
	}
	echo := r.RangeFiltered(mustFilter(t, "icmp.type==8 and node=client and iface=="+tun.Name+" and ip.dst==198.51.100.2"), 0, 10)
	if len(echo) != 3 || echo[0].SrcAddr() != netip.MustParseAddr("198.19.0.2") {
		t.Errorf("echo requests on client %s: %d (%v)", tun.Name, len(echo), echo)
	}
}
