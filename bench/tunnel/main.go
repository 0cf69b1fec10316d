// Command tunnel benchmarks the TN tunnel against the same path without it,
// in one run: it builds the embedded `tunnel` lab in namespaces, runs the
// engine in-process, and measures with iperf3 (throughput) and a UDP echo
// (added latency) both through the tunnel and on a direct path over the same
// four namespaces (client → NAT → server → destination, the NAT's firewall
// opened for one extra destination address). It reports ratios and CPU per
// Gbit/s. Needs root and iperf3; removes the lab on exit.
//
//	sudo go run ./bench/tunnel [-t 10s] [-probes 2000]
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/site"
	"github.com/fieldcon/fieldcon/profiles"
)

// cpuProfile is the -cpuprofile flag.
var cpuProfile string

const (
	tunnelDst = "198.51.100.2" // routed into the tunnel by the profile
	directDst = "198.51.100.3" // same destination namespace, routed around it
	echoPort  = 9007
)

func main() {
	dur := flag.Duration("t", 10*time.Second, "iperf3 duration per path")
	probes := flag.Int("probes", 2000, "UDP echo round trips per path")
	profile := flag.String("cpuprofile", "", "write the engine's CPU profile during the tunnel iperf3 run to this file")
	flag.Parse()
	cpuProfile = *profile
	if err := bench(*dur, *probes); err != nil {
		fmt.Fprintln(os.Stderr, "bench/tunnel:", err)
		os.Exit(1)
	}
}

func bench(dur time.Duration, probes int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root for network namespaces")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return fmt.Errorf("needs iperf3 (Debian package iperf3)")
	}
	p, err := profiles.Load("tunnel")
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "fieldcon-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for i := range p.Nodes {
		if c := p.Nodes[i].TunnelClient; c != nil {
			c.PrivateKeyFile, c.ServerPublicKeyFile = filepath.Join(tmp, "client.key"), filepath.Join(tmp, "server.key.pub")
		}
		if s := p.Nodes[i].TunnelServer; s != nil {
			s.PrivateKeyFile, s.Clients[0].PublicKeyFile = filepath.Join(tmp, "server.key"), filepath.Join(tmp, "client.key.pub")
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	name := "bench" + hex.EncodeToString(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := lab.Up(ctx, p, name)
	if err != nil {
		return err
	}
	defer lab.Down(name)
	s, err := site.Build(p, site.Options{StateDir: tmp, Netns: l.Netns,
		OpenHost: func(ns string) (engine.Host, error) { return linux.Open(ns) }})
	if err != nil {
		return err
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() { done <- s.Engine.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := waitTunnel(s, 20*time.Second); err != nil {
		return err
	}
	if err := directPath(l); err != nil {
		return err
	}
	srv := exec.Command("ip", "netns", "exec", l.Netns("dest"), "iperf3", "-s")
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	time.Sleep(300 * time.Millisecond)

	fmt.Printf("fieldcon TN tunnel benchmark: lab %s, %d CPUs, iperf3 -t %s, %d echo probes\n\n", name, cpus(), dur, probes)
	fmt.Fprintln(os.Stderr, "iperf3 direct …")
	direct, err := throughput(l, directDst, dur)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "iperf3 through the tunnel …")
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
	}
	tun, err := throughput(l, tunnelDst, dur)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "UDP echo …")
	rttD, rttT, err := latency(l, probes)
	if err != nil {
		return err
	}
	fmt.Printf("%-28s %14s %14s %9s\n", "", "direct", "tunnel", "ratio")
	fmt.Printf("%-28s %14.0f %14.0f %9.3f\n", "TCP throughput (Mbit/s)", direct.mbps, tun.mbps, tun.mbps/direct.mbps)
	fmt.Printf("%-28s %14.2f %14.2f %9.3f\n", "system CPU (cores busy)", direct.cores, tun.cores, tun.cores/direct.cores)
	fmt.Printf("%-28s %14.2f %14.2f %9.3f\n", "system CPU per Gbit/s", direct.cores/(direct.mbps/1000), tun.cores/(tun.mbps/1000), (tun.cores/(tun.mbps/1000))/(direct.cores/(direct.mbps/1000)))
	fmt.Printf("%-28s %14s %14.2f\n", "fieldcon CPU per Gbit/s", "-", tun.selfCores/(tun.mbps/1000))
	fmt.Printf("%-28s %14.1f %14.1f %9.3f\n", "UDP echo RTT p50 (µs)", rttD[0], rttT[0], rttT[0]/rttD[0])
	fmt.Printf("%-28s %14.1f %14.1f %9.3f\n", "UDP echo RTT p99 (µs)", rttD[1], rttT[1], rttT[1]/rttD[1])
	fmt.Printf("\nadded latency (p50): %.1f µs per round trip\n", rttT[0]-rttD[0])
	return nil
}

// waitTunnel waits for the client's tunnel to be up.
func waitTunnel(s *site.Site, d time.Duration) error {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		snap := s.Engine.Snapshot()
		if n := snap.Node("client"); n != nil && len(n.Tunnels) > 0 {
			return nil
		}
	}
	return fmt.Errorf("tunnel not up within %s", d)
}

// directPath opens the same four hops without the tunnel for directDst: a
// host route on the client toward the NAT, a route on the NAT toward the
// server, an accept in front of the NAT's drop, and the way back on the
// destination.
func directPath(l *lab.Lab) error {
	steps := [][]string{
		{"client", "ip", "route", "add", directDst + "/32", "via", "198.18.0.1"},
		{"nat", "ip", "route", "add", "198.51.100.0/24", "via", "203.0.113.1"},
		{"nat", "nft", "insert", "rule", "ip", "fieldcon-natgw-filter", "forward", "ip", "daddr", directDst, "accept"},
		{"dest", "ip", "addr", "add", directDst + "/24", "dev", "eth0"},
		{"dest", "ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.1"},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", l.Netns(s[0])}, s[1:]...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %s: %v: %s", s[0], strings.Join(s[1:], " "), err, out)
		}
	}
	return nil
}

type result struct {
	mbps      float64
	cores     float64 // whole-system CPU busy during the run, in cores
	selfCores float64 // this process (the engine) only
}

func throughput(l *lab.Lab, dst string, dur time.Duration) (result, error) {
	busy0, total0 := procStat()
	self0 := selfCPU()
	start := time.Now()
	out, err := exec.Command("ip", "netns", "exec", l.Netns("client"), "iperf3", "-J", "-c", dst, "--connect-timeout", "3000", "-t", strconv.Itoa(int(dur.Seconds()))).Output()
	if err != nil {
		return result{}, fmt.Errorf("iperf3 to %s: %v: %s", dst, err, out)
	}
	wall := time.Since(start).Seconds()
	busy1, total1 := procStat()
	self1 := selfCPU()
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return result{}, err
	}
	n := float64(cpus())
	return result{
		mbps:      r.End.SumReceived.BitsPerSecond / 1e6,
		cores:     float64(busy1-busy0) / float64(total1-total0) * n,
		selfCores: (self1 - self0).Seconds() / wall,
	}, nil
}

// latency measures UDP echo round trips, alternating direct and tunnel so
// both see the same machine load; it returns p50 and p99 in µs.
func latency(l *lab.Lab, probes int) (direct, tunnel [2]float64, err error) {
	dh, err := linux.Open(l.Netns("dest"))
	if err != nil {
		return direct, tunnel, err
	}
	defer dh.Close()
	// One echo socket per address: a reply must leave from the address the
	// probe went to, or the NAT on the way back cannot match it.
	for _, a := range []string{directDst, tunnelDst} {
		echo, err := dh.ListenUDP(netip.AddrPortFrom(netip.MustParseAddr(a), echoPort), engine.UDPOptions{})
		if err != nil {
			return direct, tunnel, err
		}
		defer echo.Close()
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := echo.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				echo.WriteToUDPAddrPort(buf[:n], from)
			}
		}()
	}
	ch, err := linux.Open(l.Netns("client"))
	if err != nil {
		return direct, tunnel, err
	}
	defer ch.Close()
	c, err := ch.ListenUDP(netip.MustParseAddrPort("0.0.0.0:0"), engine.UDPOptions{})
	if err != nil {
		return direct, tunnel, err
	}
	defer c.Close()
	targets := []netip.AddrPort{
		netip.AddrPortFrom(netip.MustParseAddr(directDst), echoPort),
		netip.AddrPortFrom(netip.MustParseAddr(tunnelDst), echoPort),
	}
	rtts := [2][]float64{}
	buf := make([]byte, 2048)
	msg := make([]byte, 64)
	for i := 0; i < 2*probes; i++ {
		k := i % 2
		start := time.Now()
		c.WriteToUDPAddrPort(msg, targets[k])
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			continue // a lost probe is left out
		}
		rtts[k] = append(rtts[k], float64(time.Since(start).Microseconds()))
	}
	for k := range rtts {
		if len(rtts[k]) < probes*9/10 {
			return direct, tunnel, fmt.Errorf("only %d of %d echoes came back from %s", len(rtts[k]), probes, targets[k])
		}
		sort.Float64s(rtts[k])
	}
	q := func(v []float64, p float64) float64 { return v[int(p*float64(len(v)-1))] }
	return [2]float64{q(rtts[0], .5), q(rtts[0], .99)}, [2]float64{q(rtts[1], .5), q(rtts[1], .99)}, nil
}

// procStat returns busy and total jiffies of all CPUs (/proc/stat).
func procStat() (busy, total uint64) {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func cpus() int {
	b, _ := os.ReadFile("/proc/stat")
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "cpu") && len(l) > 3 && l[3] != ' ' {
			n++
		}
	}
	return n
}
