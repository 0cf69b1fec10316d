package bench

// RHCP benchmarks (bench/rhcp.md has the figures and the commands):
//   - the server's probe rate with 10,000 clients in its allocation table:
//     schedule (heap) + probe encoding + HMAC, and the same with a sendto per
//     probe on a loopback socket;
//   - on the device, in namespaces: from a probe's arrival on the link to the
//     address being configured and to the stop leaving, measured on the wire
//     with tcpdump in the device's namespace.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/rhcp"
	"github.com/fieldcon/fieldcon/engine/site"
	"github.com/fieldcon/fieldcon/profiles"
)

var rhcpBenchKey = []byte("0123456789abcdef0123456789abcdef")

// rhcpServer10k returns a server with 10,000 clients from a pool and a
// prober that finds all of them due on every round.
func rhcpServer10k(b *testing.B) (*rhcp.Server, *rhcp.Prober, []rhcp.Allocation) {
	cfg := profiles.RHCPServer{
		Address: profiles.Addr{Addr: netip.MustParseAddr("198.51.100.1")},
		Gateway: &profiles.Addr{Addr: netip.MustParseAddr("192.0.2.1")},
		Routes:  []profiles.RHCPRoute{{Dst: profiles.Prefix{Prefix: netip.MustParsePrefix("198.51.100.0/24")}}},
	}
	s := rhcp.NewServer(cfg)
	p := rhcp.NewProber(rhcp.Backoff{Interval: time.Nanosecond, Max: time.Nanosecond}, 1)
	base := netip.MustParseAddr("198.18.0.0") // 198.18.0.0/15 holds 10,000 clients
	t0 := time.Unix(1_800_000_000, 0)
	var allocs []rhcp.Allocation
	a := base
	for i := 0; i < 10_000; i++ {
		a = a.Next()
		al := rhcp.Allocation{ClientID: fmt.Sprintf("ESN-%05d", i), Address: netip.PrefixFrom(a, 15), State: rhcp.StateProbing}
		p.Add(al, t0)
		allocs = append(allocs, al)
	}
	return s, p, allocs
}

// BenchmarkRHCPServerProbes10k: one op is one round over 10,000 due clients.
func BenchmarkRHCPServerProbes10k(b *testing.B) {
	s, p, _ := rhcpServer10k(b)
	var seq rhcp.Sequencer
	now := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	probes := 0
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Millisecond)
		for _, a := range p.Due(now) {
			if _, err := s.ProbeFor(a, seq.Next(now), now).Marshal(rhcpBenchKey); err != nil {
				b.Fatal(err)
			}
			probes++
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(probes)/b.Elapsed().Seconds(), "probes/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(probes), "allocs/probe")
}

// BenchmarkRHCPServerProbes10kUDP adds a sendto per probe, to a loopback
// sink (the maintenance addresses are not reachable outside a lab).
func BenchmarkRHCPServerProbes10kUDP(b *testing.B) {
	s, p, _ := rhcpServer10k(b)
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Skip("no loopback UDP:", err)
	}
	defer sink.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := sink.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	dst := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	var seq rhcp.Sequencer
	now := time.Unix(1_800_000_000, 0)
	b.ResetTimer()
	probes := 0
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Millisecond)
		for _, a := range p.Due(now) {
			m, err := s.ProbeFor(a, seq.Next(now), now).Marshal(rhcpBenchKey)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := conn.WriteToUDPAddrPort(m, dst); err != nil {
				b.Fatal(err)
			}
			probes++
		}
	}
	b.ReportMetric(float64(probes)/b.Elapsed().Seconds(), "probes/s")
}

// BenchmarkRHCPProbeToStop runs the rhcp lab's router and device for real
// and plays the server from its namespace: each op sends one probe with a
// new maintenance address (so the device removes the old address, adds the
// new one and its route, and sends a stop) and waits for the stop. The
// latencies come from a tcpdump in the device's namespace: probe arrival on
// the device's link → stop leaving it, and → address.added.
// Run: sudo go test ./bench -run XXX -bench RHCPProbeToStop -benchtime 500x
func BenchmarkRHCPProbeToStop(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireBinary(b, "tcpdump")
	p, err := profiles.Load("rhcp")
	if err != nil {
		b.Fatal(err)
	}
	key := filepath.Join(b.TempDir(), "site.key")
	p.Node("server").RHCPServer = nil // the benchmark is the server
	p.Node("device").RHCPClient.KeyFile = key
	p.Node("device").RHCPClient.GenerateKey = true
	p.Node("router").AccessRouter.Links[0].Routes = []profiles.Prefix{{Prefix: netip.MustParsePrefix("203.0.113.0/24")}}
	l := labtest.Up(b, p)
	bus := engine.NewBus(100000)
	sub := bus.Subscribe(100000, false)
	s, err := site.Build(p, site.Options{
		Netns:    func(node string) string { return l.Netns(node) },
		OpenHost: func(netns string) (engine.Host, error) { return linux.Open(netns) },
		StateDir: b.TempDir(), Bus: bus,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Engine.Run(ctx) }()
	defer func() { cancel(); <-done; s.Close() }()

	var mu sync.Mutex
	added := map[string][]time.Time{}
	go func() {
		for e := range sub.C {
			if e.Node == "device" && e.Kind == engine.KindAddressAdded && e.Fields["source"] == "rhcp" {
				mu.Lock()
				a := fmt.Sprint(e.Fields["address"])
				added[a] = append(added[a], e.Time)
				mu.Unlock()
			}
		}
	}()
	server := labtest.Host(b, l, "server")
	// Wait for the server's static address and the device's key.
	var conn engine.UDPConn
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		conn, err = server.ListenUDP(netip.MustParseAddrPort("198.51.100.1:6655"), engine.UDPOptions{})
		if err == nil || time.Now().After(end) {
			break
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	keyBytes, err := rhcp.KeySource{File: key}.Load()
	for end := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		keyBytes, err = rhcp.KeySource{File: key}.Load()
	}
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // device listening, router routes in
	stopCapture := tcpdumpTimes(b, l.Netns("device"), "eth0", "udp port 6655")

	var seq rhcp.Sequencer
	buf := make([]byte, 2048)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i%200)}), 24)
		now := time.Now()
		m := &rhcp.Message{Type: rhcp.TypeProbe, ClientID: "ESN-0001", Address: addr, Gateway: netip.MustParseAddr("192.0.2.1"),
			Routes: []rhcp.Route{{Dst: netip.MustParsePrefix("198.51.100.0/24")}}, Server: netip.MustParseAddr("198.51.100.1"),
			Sequence: seq.Next(now), Issued: now, Lifetime: time.Minute}
		pkt, err := m.Marshal(keyBytes)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := conn.WriteToUDPAddrPort(pkt, netip.AddrPortFrom(addr.Addr(), rhcp.Port)); err != nil {
			b.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				b.Fatalf("probe %d (%s): no stop: %v", i, addr, err)
			}
			if st, err := rhcp.Parse(buf[:n], keyBytes); err == nil && st.Type == rhcp.TypeStop && st.AckSeq == m.Sequence {
				break
			}
		}
	}
	b.StopTimer()
	time.Sleep(200 * time.Millisecond)
	lines := stopCapture()
	toStop, toAddr := pairProbeStop(lines, added, &mu)
	if len(toStop) == 0 {
		b.Fatal("no probe/stop pairs in the capture")
	}
	b.ReportMetric(pct(toStop, 50), "µs-stop-p50")
	b.ReportMetric(pct(toStop, 99), "µs-stop-p99")
	if len(toAddr) > 0 {
		b.ReportMetric(pct(toAddr, 50), "µs-addr-p50")
		b.ReportMetric(pct(toAddr, 99), "µs-addr-p99")
	}
	b.ReportMetric(float64(len(toStop)), "pairs")
}

type capLine struct {
	at       time.Time
	src, dst string
}

// tcpdumpTimes captures in a namespace; stop returns the lines.
func tcpdumpTimes(b *testing.B, netns, iface, filter string) func() []capLine {
	cmd := exec.Command("ip", "netns", "exec", netns, "tcpdump", "-i", iface, "-n", "-l", "-tt", "-U", "-B", "8192", filter)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stderr := &labtest.LockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var lines []capLine
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			// 1795244560.829297 IP 198.51.100.1.6655 > 203.0.113.10.6655: UDP, length 95
			f := strings.Fields(sc.Text())
			if len(f) < 5 || f[1] != "IP" {
				continue
			}
			secs, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				continue
			}
			lines = append(lines, capLine{time.Unix(0, int64(secs*1e9)), hostOf(f[2]), hostOf(strings.TrimSuffix(f[4], ":"))})
		}
	}()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && !strings.Contains(stderr.String(), "listening on"); {
		time.Sleep(20 * time.Millisecond)
	}
	return func() []capLine {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-read
		_ = cmd.Wait()
		return lines
	}
}

// hostOf strips the port from tcpdump's a.b.c.d.port.
func hostOf(s string) string {
	if i := strings.LastIndexByte(s, '.'); i > 0 {
		return s[:i]
	}
	return s
}

// pairProbeStop pairs each probe arriving for an address with the next stop
// leaving from it; µs from arrival to stop and to address.added.
func pairProbeStop(lines []capLine, added map[string][]time.Time, mu *sync.Mutex) (toStop, toAddr []float64) {
	mu.Lock()
	defer mu.Unlock()
	for i, l := range lines {
		if l.src != "198.51.100.1" {
			continue
		}
		for _, s := range lines[i+1:] {
			if s.src == l.dst {
				toStop = append(toStop, float64(s.at.Sub(l.at).Microseconds()))
				break
			}
			if s.src == "198.51.100.1" {
				break // lost in the capture: skip the pair
			}
		}
		for _, at := range added[l.dst+"/24"] {
			if at.After(l.at) {
				toAddr = append(toAddr, float64(at.Sub(l.at).Microseconds()))
				break
			}
		}
	}
	return toStop, toAddr
}

func pct(v []float64, p int) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}
