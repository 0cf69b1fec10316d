package tunnel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/site"
	"github.com/fieldcon/fieldcon/engine/tunnel"
	"github.com/fieldcon/fieldcon/profiles"
)

// tunnelLab is the embedded `tunnel` profile running in a fresh lab.
type tunnelLab struct {
	lab    *lab.Lab
	site   *site.Site
	sub    *engine.Subscription
	cancel context.CancelFunc
	done   chan error

	events []engine.Event // backlog of events no wait has returned
	// capture is a pcap of the first datagrams the client sent to the
	// server (as they left the NAT), for replay.
	capture string
}

// capture records the first tunnel datagrams leaving the NAT.
func capture(t *testing.T, ns string) string {
	t.Helper()
	labtest.RequireBinary(t, "tcpdump")
	path := filepath.Join(t.TempDir(), "tunnel.pcap")
	cmd := exec.Command("ip", "netns", "exec", ns, "tcpdump", "-i", "eth1", "-nn", "-U", "-c", "6", "-w", path, "udp dst port 51820")
	var stderr syncWriter
	stderr.w = new(bytes.Buffer)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 50; i++ {
		stderr.mu.Lock()
		listening := strings.Contains(stderr.w.String(), "listening on")
		stderr.mu.Unlock()
		if listening {
			return path
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("tcpdump did not start")
	return ""
}

// capturedPayloads reads the UDP payloads of the capture, by tunnel message
// type (their first byte).
func capturedPayloads(t *testing.T, path string) map[byte][]byte {
	t.Helper()
	out, err := exec.Command("tcpdump", "-r", path, "-nn", "-x").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	var packets [][]byte
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "\t0x") {
			if strings.TrimSpace(line) != "" {
				packets = append(packets, nil)
			}
			continue
		}
		_, hexes, _ := strings.Cut(line, ":")
		for _, h := range strings.Fields(hexes) {
			for i := 0; i+2 <= len(h); i += 2 {
				b, _ := strconv.ParseUint(h[i:i+2], 16, 8)
				packets[len(packets)-1] = append(packets[len(packets)-1], byte(b))
			}
		}
	}
	got := map[byte][]byte{}
	for _, p := range packets {
		if len(p) < 28 {
			continue
		}
		payload := p[int(p[0]&0x0f)*4+8:] // past the IPv4 and UDP headers
		if len(payload) > 0 {
			if _, seen := got[payload[0]]; !seen {
				got[payload[0]] = payload
			}
		}
	}
	return got
}

// sendFrom sends each datagram, whole, from a UDP socket of a namespace to
// the tunnel server.
func sendFrom(t *testing.T, ns string, datagrams ...[]byte) {
	t.Helper()
	h, err := linux.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := h.ListenUDP(netip.MustParseAddrPort("0.0.0.0:0"), engine.UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, b := range datagrams {
		if _, err := c.WriteToUDPAddrPort(b, netip.MustParseAddrPort("203.0.113.1:51820")); err != nil {
			t.Fatalf("send from %s: %v", ns, err)
		}
	}
}

func (l *tunnelLab) ns(node string) string { return l.lab.Netns(node) }

// startTunnelLab brings the lab up under a unique name, with keys in a
// temporary directory, and runs every node's roles.
func startTunnelLab(t *testing.T) *tunnelLab {
	t.Helper()
	labtest.RequireRoot(t)
	labtest.RequireBinary(t, "iperf3")
	labtest.RequireBinary(t, "nft")
	p, err := profiles.Load("tunnel")
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	for i := range p.Nodes {
		n := &p.Nodes[i]
		if c := n.TunnelClient; c != nil {
			c.PrivateKeyFile = filepath.Join(keys, "client.key")
			c.ServerPublicKeyFile = filepath.Join(keys, "server.key.pub")
		}
		if s := n.TunnelServer; s != nil {
			s.PrivateKeyFile = filepath.Join(keys, "server.key")
			s.Clients[0].PublicKeyFile = filepath.Join(keys, "client.key.pub")
		}
	}
	l := &tunnelLab{lab: labtest.Up(t, p), done: make(chan error, 1)}
	l.capture = capture(t, l.ns("nat"))
	// Short TCP/UDP conntrack timeouts on the server, so NAT rows of ended
	// flows go within the test (the defaults keep TIME_WAIT for 2 minutes).
	for k, v := range map[string]string{
		"net.netfilter.nf_conntrack_tcp_timeout_time_wait": "2", "net.netfilter.nf_conntrack_tcp_timeout_fin_wait": "2",
		"net.netfilter.nf_conntrack_tcp_timeout_close_wait": "2", "net.netfilter.nf_conntrack_tcp_timeout_last_ack": "2",
		"net.netfilter.nf_conntrack_udp_timeout": "3", "net.netfilter.nf_conntrack_udp_timeout_stream": "3",
	} {
		labtest.Exec(t, l.ns("server"), "sysctl", "-qw", k+"="+v)
	}
	bus := engine.NewBus(10000)
	l.sub = bus.Subscribe(10000, true)
	l.site, err = site.Build(p, site.Options{
		Bus: bus, StateDir: t.TempDir(),
		Netns:    func(node string) string { return l.lab.Netns(node) },
		OpenHost: func(ns string) (engine.Host, error) { return linux.Open(ns) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() { l.done <- l.site.Engine.Run(ctx) }()
	t.Cleanup(func() {
		l.stop(t)
		l.site.Close()
	})
	return l
}

func (l *tunnelLab) stop(t *testing.T) {
	if l.cancel == nil {
		return
	}
	l.cancel()
	l.cancel = nil
	select {
	case err := <-l.done:
		if err != nil {
			t.Errorf("engine stop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("engine did not stop within 30s")
	}
}

// waitEvent returns the first event of kind on node that satisfies ok and
// was not returned before; other events wait in a backlog for later calls.
func (l *tunnelLab) waitEvent(t *testing.T, node, kind string, d time.Duration, ok func(engine.Event) bool) engine.Event {
	t.Helper()
	match := func(e engine.Event) bool { return e.Node == node && e.Kind == kind && (ok == nil || ok(e)) }
	for i, e := range l.events {
		if match(e) {
			l.events = append(l.events[:i], l.events[i+1:]...)
			return e
		}
	}
	timeout := time.After(d)
	for {
		select {
		case e := <-l.sub.C:
			if e.Kind == engine.KindError {
				t.Logf("error event on %s: %v", e.Node, e.Fields)
			}
			if match(e) {
				return e
			}
			l.events = append(l.events, e)
		case <-timeout:
			t.Fatalf("no %s on %s within %s", kind, node, d)
		}
	}
}

// drain returns the backlog and the pending events, and empties both.
func (l *tunnelLab) drain() []engine.Event {
	out := l.events
	l.events = nil
	for {
		select {
		case e := <-l.sub.C:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (l *tunnelLab) server(t *testing.T) *tunnel.Server {
	r, ok := l.site.Engine.Role("server", "tunnel_server")
	if !ok {
		t.Fatal("no tunnel_server role")
	}
	return r.(*tunnel.Server)
}

// run runs a command in a namespace and returns its output and error.
func run(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// iperfServer starts iperf3 -s on the destination and returns its output.
func iperfServer(t *testing.T, l *tunnelLab) *syncWriter {
	t.Helper()
	// One writer, one lock, for both streams and for reading it while
	// iperf3 runs (go test -race).
	out := &syncWriter{w: new(bytes.Buffer)}
	cmd := exec.Command("ip", "netns", "exec", l.ns("dest"), "iperf3", "-s", "-B", "198.51.100.2", "--forceflush")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(300 * time.Millisecond)
	return out
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

type iperfResult struct {
	End struct {
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		Sum struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
			LostPercent   float64 `json:"lost_percent"`
		} `json:"sum"`
	} `json:"end"`
	Intervals []struct {
		Sum struct {
			Bytes float64 `json:"bytes"`
		} `json:"sum"`
	} `json:"intervals"`
}

func iperf(t *testing.T, ns string, args ...string) iperfResult {
	t.Helper()
	r, err := iperfRun(ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// iperfRun runs iperf3 toward the destination; safe off the test goroutine.
func iperfRun(ns string, args ...string) (iperfResult, error) {
	var r iperfResult
	out, err := run(ns, append([]string{"iperf3", "-J", "-c", "198.51.100.2", "--connect-timeout", "3000"}, args...)...)
	if err != nil {
		return r, fmt.Errorf("iperf3 %v: %v\n%s", args, err, out)
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return r, fmt.Errorf("iperf3 output: %v\n%s", err, out)
	}
	return r, nil
}

func mappings(l *tunnelLab, proto string) []engine.MappingRow {
	s := l.site.Engine.Snapshot()
	var out []engine.MappingRow
	for _, m := range s.Node("server").Mappings {
		if m.Protocol == proto && strings.HasPrefix(m.Destination, "198.51.100.2:") {
			out = append(out, m)
		}
	}
	return out
}

func TestLabTunnel(t *testing.T) {
	l := startTunnelLab(t)
	l.waitEvent(t, "server", engine.KindTunnelUp, 20*time.Second, nil)
	l.waitEvent(t, "client", engine.KindTunnelUp, 10*time.Second, nil)
	// A response can be lost while the lab comes up (the NAT's rules are
	// not in yet) and the client establishes again: settle, then take the
	// server's one tunnel.
	time.Sleep(1500 * time.Millisecond)
	rows := l.server(t).Tunnels()
	if len(rows) != 1 {
		t.Fatalf("tunnel index table: %+v", rows)
	}
	index := rows[0].Index
	// The client's public endpoint, as the server sees it, is the NAT's.
	if ep := rows[0].Endpoint; !strings.HasPrefix(ep, "203.0.113.2:") {
		t.Fatalf("tunnel endpoint %s, want the NAT's public address 203.0.113.2", ep)
	}
	iperfOut := iperfServer(t, l)

	t.Run("destination only through the tunnel", func(t *testing.T) {
		if out, _ := run(l.ns("client"), "ip", "route", "get", "198.51.100.2"); !strings.Contains(out, "dev tn0") {
			t.Fatalf("client route to the destination: %s", out)
		}
		// The NAT/firewall knows no route there, and lets nothing but UDP to
		// the tunnel port out: a direct TCP connection to the server fails.
		if out, err := run(l.ns("nat"), "ip", "route", "get", "198.51.100.2"); err == nil {
			t.Fatalf("the NAT node reaches the destination without the tunnel: %s", out)
		}
		if out, err := run(l.ns("client"), "iperf3", "-c", "203.0.113.1", "-t", "1", "--connect-timeout", "1500"); err == nil {
			t.Fatalf("TCP from the private network passed the firewall:\n%s", out)
		}
	})

	t.Run("tcp", func(t *testing.T) {
		var seen []engine.MappingRow
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 12; i++ {
				time.Sleep(300 * time.Millisecond)
				seen = append(seen, mappings(l, "tcp")...)
			}
		}()
		r := iperf(t, l.ns("client"), "-t", "4")
		wg.Wait()
		if r.End.SumReceived.Bytes == 0 {
			t.Fatal("iperf3 TCP moved no data")
		}
		t.Logf("TCP through the tunnel: %.0f Mbit/s", r.End.SumReceived.BitsPerSecond/1e6)
		if !strings.Contains(iperfOut.String(), "Accepted connection from 198.51.100.1") {
			t.Fatalf("the destination did not see the tunnel server's address:\n%s", iperfOut)
		}
		var first, last engine.MappingRow
		for _, m := range seen {
			if m.TunnelIndex != index || !strings.HasPrefix(m.Virtual, "198.19.0.2:") || !strings.HasPrefix(m.Translated, "198.51.100.1:") {
				t.Fatalf("NAT row %+v: want tunnel index %d, virtual 198.19.0.2, translated 198.51.100.1", m, index)
			}
			if m.Destination == "198.51.100.2:5201" && m.BytesOut > 0 {
				if first.BytesOut == 0 {
					first = m
				}
				last = m
			}
		}
		if first.BytesOut == 0 || last.BytesOut <= first.BytesOut {
			t.Fatalf("NAT table counters did not move: first %+v last %+v (rows seen: %d)", first, last, len(seen))
		}
		t.Logf("NAT row: %+v", last)
		l.waitEvent(t, "server", engine.KindNATRemoved, 20*time.Second, func(e engine.Event) bool { return e.Fields["protocol"] == "tcp" })
	})

	t.Run("udp", func(t *testing.T) {
		r := iperf(t, l.ns("client"), "-u", "-b", "20M", "-t", "2")
		if r.End.Sum.Bytes == 0 {
			t.Fatal("iperf3 UDP moved no data")
		}
		added := l.waitEvent(t, "server", engine.KindNATAdded, 5*time.Second, func(e engine.Event) bool { return e.Fields["protocol"] == "udp" })
		if added.Fields["index"] != index {
			t.Fatalf("UDP NAT row index %v, want %d", added.Fields["index"], index)
		}
		l.waitEvent(t, "server", engine.KindNATRemoved, 20*time.Second, func(e engine.Event) bool { return e.Fields["protocol"] == "udp" })
	})

	t.Run("heartbeats outlive the NAT's UDP timeout", func(t *testing.T) {
		// The NAT's conntrack entry of the tunnel flow keeps its id while
		// heartbeats refresh it; an expired one would come back with another.
		flowID := func() string {
			out := labtest.Exec(t, l.ns("nat"), "conntrack", "-L", "-p", "udp", "--dport", "51820", "-o", "id")
			for _, f := range strings.Fields(out) {
				if strings.HasPrefix(f, "id=") {
					return f
				}
			}
			t.Fatalf("no conntrack entry for the tunnel flow in the NAT:\n%s", out)
			return ""
		}
		l.drain()
		id := flowID()
		time.Sleep(12 * time.Second) // the NAT forgets idle UDP flows after 5 s
		for _, e := range l.drain() {
			switch e.Kind {
			case engine.KindTunnelDown, engine.KindTunnelAged, engine.KindTunnelUp, engine.KindTunnelRoamed:
				t.Fatalf("tunnel changed while idle with heartbeats: %s %v", e.Kind, e.Fields)
			}
		}
		if again := flowID(); again != id {
			t.Fatalf("the NAT mapping expired and was recreated (%s, then %s)", id, again)
		}
		if r := iperf(t, l.ns("client"), "-t", "1"); r.End.SumReceived.Bytes == 0 {
			t.Fatal("no data through the tunnel after 12 s idle")
		}
		rows := l.server(t).Tunnels()
		if len(rows) != 1 || rows[0].Index != index {
			t.Fatalf("tunnel index table after idle: %+v", rows)
		}
	})

	t.Run("junk is dropped and counted", func(t *testing.T) {
		before := l.server(t).Drops()
		// Truncated and forged datagrams from the public side.
		sendFrom(t, l.ns("nat"), []byte("xx"), []byte("\x04\x01\x00\x00AAAABBBBBBBBCCCCCCCCCCCCCCCCCCCCCCCCCCCC"))
		time.Sleep(500 * time.Millisecond)
		after := l.server(t).Drops()
		if after[tunnel.DropTruncated] <= before[tunnel.DropTruncated] || after[tunnel.DropUnknownIndex] <= before[tunnel.DropUnknownIndex] {
			t.Fatalf("drops before %v after %v", before, after)
		}
		if n := len(l.server(t).Tunnels()); n != 1 {
			t.Fatalf("junk changed the tunnel table: %d tunnels", n)
		}
	})

	t.Run("replayed datagrams are dropped and counted", func(t *testing.T) {
		got := capturedPayloads(t, l.capture)
		req, hb := got[tunnel.TypeRequest], got[tunnel.TypeHeartbeat]
		if len(req) != tunnel.RequestLen || len(hb) != tunnel.TransportOverhead {
			t.Fatalf("capture lacks a request (%d bytes) or a heartbeat (%d bytes)", len(req), len(hb))
		}
		before := l.server(t).Drops()
		rowsBefore := l.server(t).Tunnels()
		// Replayed from another source port: neither may re-establish,
		// count as traffic, nor move the tunnel's endpoint (roaming).
		sendFrom(t, l.ns("nat"), req, hb)
		time.Sleep(500 * time.Millisecond)
		after := l.server(t).Drops()
		replayed := after[tunnel.DropReplayed] - before[tunnel.DropReplayed]
		badAuth := after[tunnel.DropBadAuth] - before[tunnel.DropBadAuth]
		// The request's timestamp is old; the heartbeat's counter is behind
		// the replay window, or its session was replaced by a rekey.
		if replayed < 1 || replayed+badAuth < 2 {
			t.Fatalf("replays not counted: before %v after %v", before, after)
		}
		rows := l.server(t).Tunnels()
		if len(rows) != 1 || rows[0].Index != rowsBefore[0].Index || rows[0].Endpoint != rowsBefore[0].Endpoint {
			t.Fatalf("a replay changed the tunnel: %+v, was %+v", rows, rowsBefore)
		}
		for _, e := range l.drain() {
			if e.Kind == engine.KindTunnelRoamed || e.Kind == engine.KindTunnelUp {
				t.Fatalf("a replay made %s %v", e.Kind, e.Fields)
			}
		}
	})

	t.Run("roaming keeps an iperf3 stream going", func(t *testing.T) {
		l.drain()
		type result struct {
			r   iperfResult
			err error
		}
		done := make(chan result, 1)
		go func() {
			r, err := iperfRun(l.ns("client"), "-t", "6", "-i", "1")
			done <- result{r, err}
		}()
		time.Sleep(2 * time.Second)
		// The NAT changes its external mapping: another address, and the
		// old translation is forgotten.
		nat := l.ns("nat")
		labtest.Exec(t, nat, "nft", "flush", "chain", "ip", "fieldcon-natgw", "postrouting")
		labtest.Exec(t, nat, "nft", "add", "rule", "ip", "fieldcon-natgw", "postrouting", "ip", "saddr", "198.18.0.0/24", "oifname", "eth1", "snat", "to", "203.0.113.3")
		run(nat, "conntrack", "-D", "-p", "udp", "-s", "198.18.0.2")
		roamed := l.waitEvent(t, "server", engine.KindTunnelRoamed, 5*time.Second, nil)
		if to := roamed.Fields["to"].(string); !strings.HasPrefix(to, "203.0.113.3:") {
			t.Fatalf("roamed to %s, want 203.0.113.3", to)
		}
		res := <-done
		if res.err != nil {
			t.Fatalf("the stream broke across the roam: %v", res.err)
		}
		r := res.r
		var per []string
		for _, iv := range r.Intervals {
			per = append(per, fmt.Sprintf("%.1f", iv.Sum.Bytes/1e6))
		}
		t.Logf("MB per interval across the roam: %s", strings.Join(per, " "))
		// The roam happens 2 s in: the stream must still carry data after it.
		if len(r.Intervals) < 3 || r.Intervals[len(r.Intervals)-1].Sum.Bytes == 0 {
			t.Fatalf("no data after the roam: %s", strings.Join(per, " "))
		}
		t.Logf("TCP across the roam: %.0f Mbit/s", r.End.SumReceived.BitsPerSecond/1e6)
		if rows := l.server(t).Tunnels(); len(rows) != 1 || rows[0].Index != index || !strings.HasPrefix(rows[0].Endpoint, "203.0.113.3:") {
			t.Fatalf("tunnel after roaming: %+v", rows)
		}
	})

	t.Run("silence ages the tunnel out and frees the address", func(t *testing.T) {
		nat := l.ns("nat")
		labtest.Exec(t, nat, "nft", "add", "table", "ip", "fctest")
		labtest.Exec(t, nat, "nft", "add", "chain", "ip", "fctest", "blk", "{ type filter hook forward priority -10; }")
		labtest.Exec(t, nat, "nft", "add", "rule", "ip", "fctest", "blk", "udp", "dport", "51820", "drop")
		aged := l.waitEvent(t, "server", engine.KindTunnelAged, 20*time.Second, nil)
		if aged.Fields["index"] != index || aged.Fields["virtual"] != "198.19.0.2" {
			t.Fatalf("aged %v", aged.Fields)
		}
		if rows := l.server(t).Tunnels(); len(rows) != 0 {
			t.Fatalf("tunnels after aging: %+v", rows)
		}
		labtest.Exec(t, nat, "nft", "delete", "table", "ip", "fctest")
		again := l.waitEvent(t, "server", engine.KindTunnelUp, 40*time.Second, nil)
		if again.Fields["index"] == index {
			t.Fatal("a new tunnel reused the aged index")
		}
	})

	t.Run("a request captured before a restart is refused after it", func(t *testing.T) {
		req := capturedPayloads(t, l.capture)[tunnel.TypeRequest]
		if len(req) != tunnel.RequestLen {
			t.Fatalf("capture lacks a request (%d bytes)", len(req))
		}
		// The client's requests are lost at the NAT while the server
		// restarts, so the replay is the first request the new server sees.
		nat := l.ns("nat")
		labtest.Exec(t, nat, "nft", "add", "table", "ip", "fcreplay")
		labtest.Exec(t, nat, "nft", "add", "chain", "ip", "fcreplay", "blk", "{ type filter hook forward priority -10; }")
		labtest.Exec(t, nat, "nft", "add", "rule", "ip", "fcreplay", "blk", "udp", "dport", "51820", "drop")
		defer run(nat, "nft", "delete", "table", "ip", "fcreplay")
		restarted := time.Now()
		if err := l.site.Engine.RestartRole(context.Background(), "server", "tunnel_server"); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(15 * time.Second); !serverServing(l, restarted); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the restarted server did not come up")
			}
		}
		l.drain()
		before := l.server(t).Drops()[tunnel.DropReplayed]
		h, err := linux.Open(nat)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		c, err := h.ListenUDP(netip.MustParseAddrPort("0.0.0.0:0"), engine.UDPOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.WriteToUDPAddrPort(req, netip.MustParseAddrPort("203.0.113.1:51820")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
			t.Fatalf("the restarted server answered the captured request with a %d-byte type %d message", n, buf[0])
		}
		if got := l.server(t).Drops()[tunnel.DropReplayed] - before; got != 1 {
			t.Fatalf("the captured request counted %d times as replayed, want 1", got)
		}
		if rows := l.server(t).Tunnels(); len(rows) != 0 {
			t.Fatalf("the captured request made a tunnel: %+v", rows)
		}
		l.waitEvent(t, "server", engine.KindTunnelHandshakeDropped, time.Second, func(e engine.Event) bool {
			return e.Fields["reason"] == tunnel.DropReplayed && e.Fields["client"] == "client"
		})
		// The real client, let through again, connects.
		labtest.Exec(t, nat, "nft", "delete", "table", "ip", "fcreplay")
		up := l.waitEvent(t, "server", engine.KindTunnelUp, 20*time.Second, nil)
		if ep, _ := up.Fields["endpoint"].(string); !strings.HasPrefix(ep, "203.0.113.") || up.Fields["virtual"] != "198.19.0.2/24" {
			t.Fatalf("after the replay: %v", up.Fields)
		}
		l.waitEvent(t, "client", engine.KindTunnelUp, 10*time.Second, nil)
	})

	t.Run("a restarted server gives the client its address back", func(t *testing.T) {
		l.drain()
		if err := l.site.Engine.RestartRole(context.Background(), "server", "tunnel_server"); err != nil {
			t.Fatal(err)
		}
		l.waitEvent(t, "client", engine.KindTunnelDown, 10*time.Second, nil)
		up := l.waitEvent(t, "server", engine.KindTunnelUp, 30*time.Second, nil)
		if up.Fields["virtual"] != "198.19.0.2/24" {
			t.Fatalf("after the restart the client got %v, want its stored 198.19.0.2/24", up.Fields["virtual"])
		}
		l.waitEvent(t, "client", engine.KindTunnelUp, 10*time.Second, nil)
		for _, e := range l.drain() {
			if e.Node == "client" && e.Kind == engine.KindAddressRemoved {
				t.Fatalf("the client's virtual address was reconfigured: %v", e.Fields)
			}
		}
		if r := iperf(t, l.ns("client"), "-t", "1"); r.End.SumReceived.Bytes == 0 {
			t.Fatal("no data through the tunnel after the server restarted")
		}
	})

	t.Run("stopping removes rules, routes and TUNs", func(t *testing.T) {
		l.stop(t)
		for _, node := range []string{"server", "nat", "client"} {
			out := labtest.Exec(t, l.ns(node), "nft", "list", "tables")
			if strings.Contains(out, "fieldcon-") {
				t.Errorf("%s: nft tables left: %s", node, out)
			}
			links := labtest.Exec(t, l.ns(node), "ip", "-o", "link")
			if strings.Contains(links, "tn0") || strings.Contains(links, "tns0") {
				t.Errorf("%s: TUN left: %s", node, links)
			}
			routes := labtest.Exec(t, l.ns(node), "ip", "route")
			if strings.Contains(routes, "198.19.0.") || strings.Contains(routes, "tn0") {
				t.Errorf("%s: tunnel routes left: %s", node, routes)
			}
		}
	})
}

// serverServing says whether the tunnel server finished starting after since.
func serverServing(l *tunnelLab, since time.Time) bool {
	snap := l.site.Engine.Snapshot()
	for _, r := range snap.Node("server").Roles {
		for _, st := range r.Steps {
			if r.Kind == "tunnel_server" && st.Name == "serving" && st.Done && st.At.After(since) {
				return true
			}
		}
	}
	return false
}
