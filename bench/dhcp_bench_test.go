package bench

// DHCP benchmarks (bench/dhcp.md has the figures and the commands):
//   - server throughput: Kea's perfdhcp against fieldcon's dhcp_server (leases
//     synced to a bbolt store on disk before every ACK), Kea's kea-dhcp4
//     (memfile) and dnsmasq, one after the other on the same namespaces, as
//     4-way exchanges per second and as ratios to fieldcon;
//   - client time to address against dnsmasq: fieldcon's client, ISC
//     dhclient and busybox udhcpc, alternating.

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/lab/labtest"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

const dhcpBenchLab = `
[[node]]
name = "srv"
[[node]]
name = "cli"
[lab]
[[lab.link]]
a = "srv:eth0"
b = "cli:eth0"
`

// dhcpBenchUp builds two namespaces joined by a veth pair: the server at
// 198.18.0.254/16, the load generator (a relay, for perfdhcp) at 198.18.0.1/16.
func dhcpBenchUp(b *testing.B) *lab.Lab {
	b.Helper()
	p, err := profiles.Parse("dhcp-bench.toml", []byte(dhcpBenchLab))
	if err != nil {
		b.Fatal(err)
	}
	l := labtest.Up(b, p)
	labtest.Exec(b, l.Netns("srv"), "ip", "addr", "add", "198.18.0.254/16", "dev", "eth0")
	labtest.Exec(b, l.Netns("cli"), "ip", "addr", "add", "198.18.0.1/16", "dev", "eth0")
	return l
}

// startPeer runs a server program in ns; the returned stop kills it by PID.
func startPeer(b *testing.B, ns string, env []string, args ...string) (stop func()) {
	b.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", args[0], err)
	}
	// A peer that dies at start (a bad config, a busy port) is caught in
	// its first second.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		b.Fatalf("%s exited at start (%v): %s", args[0], err, out.String())
	case <-time.After(time.Second):
	}
	return func() {
		cmd.Process.Kill()
		<-exited
	}
}

// startFieldconServer runs the dhcp_server role in ns with its store on disk.
func startFieldconServer(b *testing.B, ns, dir string) (stop func()) {
	b.Helper()
	h, err := linux.Open(ns)
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "srv.db"))
	if err != nil {
		b.Fatal(err)
	}
	cfg := profiles.DHCPServer{Ifaces: []string{"eth0"}, LeaseTime: profiles.Duration{Duration: time.Hour},
		Pools: []profiles.DHCPPool{{
			Subnet: profiles.Prefix{Prefix: netip.MustParsePrefix("198.18.0.0/16")},
			Start:  profiles.Addr{Addr: netip.MustParseAddr("198.18.1.0")},
			End:    profiles.Addr{Addr: netip.MustParseAddr("198.18.200.255")},
		}}}
	e := engine.New(engine.NewBus(16), slog.New(slog.DiscardHandler))
	role := dhcp.NewServerRole(cfg)
	e.AddNode(engine.NodeSpec{Name: "srv", Netns: ns, Host: h, Store: st, Roles: []engine.Role{role}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	time.Sleep(500 * time.Millisecond)
	return func() {
		cancel()
		<-done
		st.Close()
		h.Close()
		s := role.Stats()
		b.Logf("fieldcon server: read %d (D %d, R %d), sent O %d A %d N %d, silent %d %v, send errors %d, store errors %d; "+
			"%d fsyncs (max batch %d, max %s); slowest reply %s, %d over 1s",
			s.Received, s.Discovers, s.Requests, s.Offers, s.Acks, s.Naks, s.Silent, s.SilentWhy, s.SendErrors, s.StoreErrors,
			s.Commits, s.MaxBatch, s.MaxCommit.Round(time.Microsecond), s.MaxReplyDelay.Round(time.Microsecond), s.SlowReplies)
	}
}

var perfdhcpRate = regexp.MustCompile(`Rate: ([0-9.]+) 4-way exchanges/second`)
var perfdhcpDrops = regexp.MustCompile(`drops: ([0-9]+)`)

// perfdhcp runs Kea's load generator as a relay (giaddr 198.18.0.1) for
// period against the server, as fast as it can, and returns its rate of
// completed DORA exchanges and its output.
func perfdhcp(b *testing.B, ns string, period int, rate string) (float64, string) {
	b.Helper()
	args := []string{"netns", "exec", ns, "perfdhcp", "-4", "-l", "198.18.0.1",
		"-R", "60000", "-p", strconv.Itoa(period), "-d", "2", "-W", "1000000"}
	if rate != "" {
		args = append(args, "-r", rate)
	}
	out, err := exec.Command("ip", append(args, "198.18.0.254")...).CombinedOutput()
	m := perfdhcpRate.FindSubmatch(out)
	if m == nil {
		b.Fatalf("perfdhcp: %v\n%s", err, out)
	}
	got, _ := strconv.ParseFloat(string(m[1]), 64)
	return got, string(out)
}

// BenchmarkDHCPServerThroughput: leases per second of fieldcon's server with
// persistence on, side by side with kea-dhcp4 (memfile) and dnsmasq. Each
// iteration runs every server once, in turn; the metrics are medians. By
// default perfdhcp sends as fast as it can (capacity under overload);
// DHCP_BENCH_RATE=N paces it at N exchanges/s, DHCP_BENCH_PERIOD its seconds;
// DHCP_BENCH_ONLY=fieldcon,kea picks servers, DHCP_BENCH_VERBOSE=1 logs
// perfdhcp's report.
//
//	sudo go test ./bench -run XXX -bench DHCPServerThroughput -benchtime 3x
func BenchmarkDHCPServerThroughput(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireBinary(b, "perfdhcp")
	labtest.RequireBinary(b, "kea-dhcp4")
	labtest.RequireBinary(b, "dnsmasq")
	l := dhcpBenchUp(b)
	srv, cli := l.Netns("srv"), l.Netns("cli")
	period := 10
	if s := os.Getenv("DHCP_BENCH_PERIOD"); s != "" {
		period, _ = strconv.Atoi(s)
	}
	servers := []struct {
		name  string
		start func(dir string) func()
	}{
		{"fieldcon", func(dir string) func() { return startFieldconServer(b, srv, dir) }},
		{"kea", func(dir string) func() {
			conf := filepath.Join(dir, "kea.json")
			os.WriteFile(conf, []byte(fmt.Sprintf(keaConf, dir)), 0o644)
			return startPeer(b, srv, []string{"KEA_PIDFILE_DIR=" + dir, "KEA_LOCKFILE_DIR=" + dir}, "kea-dhcp4", "-c", conf)
		}},
		{"dnsmasq", func(dir string) func() {
			return startPeer(b, srv, nil, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
				"--bind-interfaces", "--interface=eth0", "--except-interface=lo", "--no-ping",
				"--dhcp-range=198.18.1.0,198.18.200.255,255.255.0.0,1h", "--dhcp-lease-max=200000",
				"--dhcp-leasefile="+dir+"/leases", "--pid-file="+dir+"/pid")
		}},
	}
	if only := os.Getenv("DHCP_BENCH_ONLY"); only != "" {
		for i := 0; i < len(servers); i++ {
			if !strings.Contains(","+only+",", ","+servers[i].name+",") {
				servers = append(servers[:i], servers[i+1:]...)
				i--
			}
		}
	}
	rates := map[string][]float64{}
	for i := 0; i < b.N; i++ {
		for _, s := range servers {
			stop := s.start(b.TempDir())
			srvBefore, cliBefore := udpCounters(b, srv), udpCounters(b, cli)
			rate, out := perfdhcp(b, cli, period, os.Getenv("DHCP_BENCH_RATE"))
			srvLost, cliLost := udpLost(udpCounters(b, srv), srvBefore), udpLost(udpCounters(b, cli), cliBefore)
			stop()
			drops := ""
			if m := perfdhcpDrops.FindAllStringSubmatch(out, -1); m != nil {
				var ds []string
				for _, d := range m {
					ds = append(ds, d[1])
				}
				drops = strings.Join(ds, "/")
			}
			b.Logf("%-8s %8.0f DORA/s (drops DO/RA %s; kernel udp drops: server %s, perfdhcp %s)", s.name, rate, drops, srvLost, cliLost)
			if os.Getenv("DHCP_BENCH_VERBOSE") != "" {
				b.Log(out)
			}
			rates[s.name] = append(rates[s.name], rate)
		}
	}
	med := map[string]float64{}
	for name, rs := range rates {
		sort.Float64s(rs)
		med[name] = rs[len(rs)/2]
		b.Logf("%-8s median %6.0f  min %6.0f  max %6.0f DORA/s (n=%d)", name, med[name], rs[0], rs[len(rs)-1], len(rs))
		b.ReportMetric(med[name], name+"-leases/s")
	}
	if med["kea"] > 0 && med["dnsmasq"] > 0 {
		b.ReportMetric(med["fieldcon"]/med["kea"], "fieldcon/kea")
		b.ReportMetric(med["fieldcon"]/med["dnsmasq"], "fieldcon/dnsmasq")
	}
}

// udpCounters reads a namespace's UDP MIB (nstat -a: absolute, -s: leave
// nstat's history file alone, -z: zeros too); the counters are per network
// namespace, so the difference over a run is that run's.
func udpCounters(b *testing.B, ns string) map[string]int64 {
	b.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nstat", "-asz").Output()
	if err != nil {
		b.Fatalf("nstat in %s: %v", ns, err)
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && strings.HasPrefix(f[0], "Udp") {
			m[f[0]], _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return m
}

// udpLost names the counters of datagrams the kernel dropped between two
// readings: a full socket receive buffer (RcvbufErrors, counted in
// InErrors too), memory pressure, checksum, no socket on the port.
func udpLost(after, before map[string]int64) string {
	var parts []string
	for _, k := range []string{"UdpRcvbufErrors", "UdpInErrors", "UdpMemErrors", "UdpInCsumErrors", "UdpNoPorts", "UdpSndbufErrors"} {
		if d := after[k] - before[k]; d != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", strings.TrimPrefix(k, "Udp"), d))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

const keaConf = `{"Dhcp4": {
  "interfaces-config": {"interfaces": ["eth0"], "dhcp-socket-type": "udp"},
  "lease-database": {"type": "memfile", "persist": true, "name": "%[1]s/leases.csv", "lfc-interval": 0},
  "valid-lifetime": 3600,
  "subnet4": [{"id": 1, "subnet": "198.18.0.0/16", "pools": [{"pool": "198.18.1.0 - 198.18.200.255"}]}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "WARN"}]
}}`

// BenchmarkDHCPClientTimeToAddress: from start to an address with dnsmasq as
// the server, for fieldcon's client (in process: Acquire then the address
// configured), ISC dhclient and busybox udhcpc (processes: exec to exit
// with a lease; a no-op exec in the namespace is measured too, as their
// start-up share).
//
//	sudo go test ./bench -run XXX -bench DHCPClientTimeToAddress -benchtime 20x
func BenchmarkDHCPClientTimeToAddress(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireBinary(b, "dnsmasq")
	dhclient := labtest.RequireBinary(b, "dhclient")
	udhcpc := labtest.RequireBinary(b, "udhcpc")
	l := dhcpBenchUp(b)
	srv, cli := l.Netns("srv"), l.Netns("cli")
	labtest.Exec(b, cli, "ip", "addr", "flush", "dev", "eth0")
	dir := b.TempDir()
	stop := startPeer(b, srv, nil, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--bind-interfaces", "--interface=eth0", "--except-interface=lo", "--no-ping",
		"--dhcp-range=198.18.1.0,198.18.200.255,255.255.0.0,1h",
		"--dhcp-leasefile="+dir+"/leases", "--pid-file="+dir+"/pid")
	defer stop()
	h, err := linux.Open(cli)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	bus := engine.NewBus(16)
	env := &engine.Env{Node: "cli", Host: engine.NewTracked(h, bus.NodeEmitter("cli")), Emit: bus.NodeEmitter("cli"),
		Progress: engine.NewProgress("bench"), Log: slog.New(slog.DiscardHandler)}
	flush := func() { labtest.Exec(b, cli, "ip", "addr", "flush", "dev", "eth0") }
	run := func(args ...string) time.Duration {
		start := time.Now()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", cli}, args...)...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", args[0], err, out)
		}
		return time.Since(start)
	}
	bb := []string{udhcpc}
	if strings.HasSuffix(udhcpc, "busybox") {
		bb = []string{udhcpc, "udhcpc"}
	}
	times := map[string][]time.Duration{}
	for i := 0; i < b.N; i++ {
		start := time.Now()
		lease, err := dhcp.Acquire(context.Background(), env, dhcp.AcquireConfig{Iface: "eth0", Timeout: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		if err := dhcp.ApplyLease(env, lease, false); err != nil {
			b.Fatal(err)
		}
		times["fieldcon"] = append(times["fieldcon"], time.Since(start))
		env.Host.Undo()
		flush()

		pid := filepath.Join(dir, "dhclient.pid")
		times["dhclient"] = append(times["dhclient"], run(dhclient, "-1", "-q", "-sf", "/bin/true", "-cf", "/dev/null",
			"-lf", filepath.Join(dir, "dhclient.leases"), "-pf", pid, "eth0"))
		if p, err := os.ReadFile(pid); err == nil {
			exec.Command("kill", strings.TrimSpace(string(p))).Run()
		}
		flush()

		times["udhcpc"] = append(times["udhcpc"], run(append(bb, "-q", "-f", "-n", "-i", "eth0", "-s", "/bin/true", "-t", "5", "-T", "1")...))
		flush()
		times["exec (no-op)"] = append(times["exec (no-op)"], run("/bin/true"))
	}
	med := map[string]time.Duration{}
	for name, ts := range times {
		sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
		med[name] = ts[len(ts)/2]
		b.Logf("%-13s median %8s  min %8s  max %8s  (n=%d)", name, med[name].Round(10*time.Microsecond), ts[0].Round(10*time.Microsecond), ts[len(ts)-1].Round(10*time.Microsecond), len(ts))
		b.ReportMetric(float64(med[name].Microseconds())/1000, strings.ReplaceAll(strings.Fields(name)[0], " ", "")+"-ms")
	}
	b.ReportMetric(float64(med["fieldcon"])/float64(med["dhclient"]), "fieldcon/dhclient")
	b.ReportMetric(float64(med["fieldcon"])/float64(med["udhcpc"]), "fieldcon/udhcpc")
}
