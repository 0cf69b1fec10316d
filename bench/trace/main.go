// Command trace measures engine/trace's summary path on a pcapng capture:
// packets per second decoded into summaries (and, separately, decoded and
// formatted as the one-line text `fieldcon trace` prints), on one core
// (GOMAXPROCS=1; pin the process with taskset for a fair comparison with
// tshark and tcpdump), and the heap that 1,000,000 buffered summaries take.
// bench/trace.sh runs it side by side with `tshark -r` and `tcpdump -r`.
//
//	go run ./bench/trace -r mixed.pcapng [-passes 5]
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fieldcon/fieldcon/engine/trace"
)

type packet struct {
	lt   layers.LinkType
	data []byte
	ts   int64
}

func main() {
	path := flag.String("r", "", "pcapng capture to decode")
	passes := flag.Int("passes", 5, "decode the capture this many times (the best pass is reported)")
	tunnelPort := flag.Int("tunnel-port", 51820, "UDP port of the tunnel in the capture")
	flag.Parse()
	if *path == "" {
		fmt.Fprintln(os.Stderr, "usage: trace -r FILE.pcapng [-passes N]")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1)
	pkts, err := load(*path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench/trace: %v\n", err)
		os.Exit(1)
	}
	opt := trace.DecoderOptions{TunnelPorts: []uint16{uint16(*tunnelPort)}}
	fmt.Printf("capture: %s, %d packets\n", *path, len(pkts))
	protos := map[trace.Proto]int{}
	d := trace.NewDecoder(opt)
	for _, p := range pkts {
		var s trace.Summary
		d.Decode(p.lt, p.data, &s)
		protos[s.Proto]++
	}
	fmt.Printf("mix:")
	for pr := trace.ProtoOther; pr <= trace.ProtoTunnel; pr++ {
		if protos[pr] > 0 {
			fmt.Printf(" %s %d", pr, protos[pr])
		}
	}
	fmt.Println()

	decode := best(*passes, func() {
		d := trace.NewDecoder(opt)
		var s trace.Summary
		for _, p := range pkts {
			s.Len = uint32(len(p.data))
			d.Decode(p.lt, p.data, &s)
		}
	})
	report("summary decode", len(pkts), decode)

	ifs := []trace.Interface{{Node: "node", Name: "eth0"}}
	text := best(*passes, func() {
		d := trace.NewDecoder(opt)
		w := bufio.NewWriter(io.Discard)
		var s trace.Summary
		for _, p := range pkts {
			s = trace.Summary{Time: p.ts, Len: uint32(len(p.data))}
			d.Decode(p.lt, p.data, &s)
			w.WriteString(trace.Format(&s, ifs))
			w.WriteByte('\n')
		}
		w.Flush()
	})
	report("decode + one-line text", len(pkts), text)

	ring := best(*passes, func() {
		d := trace.NewDecoder(opt)
		r := trace.NewRing(trace.RingConfig{})
		var s trace.Summary
		for _, p := range pkts {
			s = trace.Summary{Time: p.ts, Len: uint32(len(p.data))}
			d.Decode(p.lt, p.data, &s)
			r.Add(s, p.data)
		}
	})
	report("decode + ring (capture path)", len(pkts), ring)

	memory(pkts, opt)
}

func report(what string, n int, d time.Duration) {
	fmt.Printf("%-30s %8.0f packets/s  (%d packets in %v, one core)\n", what, float64(n)/d.Seconds(), n, d.Round(time.Microsecond))
}

func best(passes int, f func()) time.Duration {
	var min time.Duration
	for i := 0; i < passes; i++ {
		start := time.Now()
		f()
		if d := time.Since(start); min == 0 || d < min {
			min = d
		}
	}
	return min
}

// memory fills a ring with 1,000,000 summaries of the capture's packets
// (without frame bytes) and reports the heap it holds.
func memory(pkts []packet, opt trace.DecoderOptions) {
	sums := make([]trace.Summary, len(pkts))
	d := trace.NewDecoder(opt)
	for i, p := range pkts {
		d.Decode(p.lt, p.data, &sums[i])
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := trace.NewRing(trace.RingConfig{Summaries: 1_000_000, RawBytes: 1})
	for i := 0; i < 1_000_000; i++ {
		r.Add(sums[i%len(sums)], nil)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	mib := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
	fmt.Printf("memory: 1,000,000 buffered summaries: %.1f MiB heap (%d bytes per summary; ring len %d)\n", mib, trace.SummarySize, r.Len())
	runtime.KeepAlive(r)
	runtime.KeepAlive(sums) // alive across both measurements, so not counted
	runtime.KeepAlive(pkts)
}

func load(path string) ([]packet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ng, err := pcapgo.NewNgReader(bufio.NewReaderSize(f, 1<<20), pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []packet
	for {
		data, ci, err := ng.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: packet %d: %w", path, len(out), err)
		}
		ifc, err := ng.Interface(ci.InterfaceIndex)
		if err != nil {
			return nil, err
		}
		out = append(out, packet{lt: ifc.LinkType, data: data, ts: ci.Timestamp.UnixNano()})
	}
}
