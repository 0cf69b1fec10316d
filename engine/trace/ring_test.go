package trace

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

func addN(r *Ring, n int, size int) {
	for i := 0; i < n; i++ {
		frame := bytes.Repeat([]byte{byte(i)}, size)
		r.Add(Summary{Time: int64(i), Len: uint32(size), SrcPort: uint16(i)}, frame)
	}
}

func TestRingWrapsAndCountsDrops(t *testing.T) {
	r := NewRing(RingConfig{Summaries: 10, RawBytes: 1000})
	addN(r, 25, 10)
	if r.Len() != 10 || r.First() != 15 || r.Next() != 25 || r.Dropped() != 15 {
		t.Fatalf("len %d first %d next %d dropped %d, want 10 15 25 15", r.Len(), r.First(), r.Next(), r.Dropped())
	}
	got := r.Range(0, 100)
	if len(got) != 10 || got[0].Seq != 15 || got[9].Seq != 24 {
		t.Fatalf("range from 0: %d summaries, %d..%d", len(got), got[0].Seq, got[len(got)-1].Seq)
	}
	for i, s := range got {
		if s.Seq != uint64(15+i) || s.SrcPort != uint16(15+i) {
			t.Errorf("summary %d: seq %d port %d", i, s.Seq, s.SrcPort)
		}
	}
	if got := r.Range(20, 3); len(got) != 3 || got[0].Seq != 20 {
		t.Errorf("range 20,3: %+v", got)
	}
	if got := r.Before(nil, r.Next(), 4); len(got) != 4 || got[0].Seq != 21 || got[3].Seq != 24 {
		t.Errorf("newest 4: %d..%d", got[0].Seq, got[len(got)-1].Seq)
	}
	if got := r.Before(nil, 17, 10); len(got) != 2 || got[0].Seq != 15 {
		t.Errorf("before 17: %+v", got)
	}
	if _, _, ok := r.Get(14); ok {
		t.Error("Get of an overwritten summary succeeded")
	}
	if _, _, ok := r.Get(25); ok {
		t.Error("Get of a future summary succeeded")
	}
	s, frame, ok := r.Get(24)
	if !ok || s.Seq != 24 || !bytes.Equal(frame, bytes.Repeat([]byte{24}, 10)) {
		t.Errorf("Get 24: ok %v seq %d frame %v", ok, s.Seq, frame)
	}
}

func TestRingRawArenaRecycles(t *testing.T) {
	// 64-byte arena, 20-byte frames: three fit; the fourth starts again at the
	// front and evicts the first.
	r := NewRing(RingConfig{Summaries: 100, RawBytes: 64})
	addN(r, 5, 20)
	for seq, want := range []bool{false, false, true, true, true} {
		_, frame, ok := r.Get(uint64(seq))
		if !ok {
			t.Fatalf("summary %d gone", seq)
		}
		if (frame != nil) != want {
			t.Errorf("frame %d held %v, want %v", seq, frame != nil, want)
		}
		if frame != nil && !bytes.Equal(frame, bytes.Repeat([]byte{byte(seq)}, 20)) {
			t.Errorf("frame %d corrupted: %v", seq, frame)
		}
	}
	// A frame larger than the arena keeps its summary only.
	r.Add(Summary{}, make([]byte, 100))
	if _, frame, ok := r.Get(5); !ok || frame != nil {
		t.Errorf("oversized frame: ok %v frame %d bytes", ok, len(frame))
	}
}

func TestRingFilteredViews(t *testing.T) {
	r := NewRing(RingConfig{Summaries: 50000, RawBytes: 1 << 20})
	for i := 0; i < 40000; i++ {
		s := Summary{Flags: HasUDP, SrcPort: uint16(i % 100), DstPort: 1}
		if i%100 == 67 {
			s.SrcPort = 67
		}
		r.Add(s, nil)
	}
	f, err := ParseFilter("udp.srcport==67")
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Count(f); n != 400 {
		t.Errorf("count %d, want 400", n)
	}
	got := r.RangeFiltered(f, 0, 1000)
	if len(got) != 400 || got[0].Seq != 67 || got[399].Seq != 39967 {
		t.Errorf("filtered range: %d, first %d", len(got), got[0].Seq)
	}
	// Across scan chunks, scrolling back.
	got = r.Before(f, 39967, 2)
	if len(got) != 2 || got[0].Seq != 39767 || got[1].Seq != 39867 {
		t.Errorf("before 39967: %+v", got)
	}
}

func TestRingNeverBlocksCapture(t *testing.T) {
	r := NewRing(RingConfig{Summaries: 1000, RawBytes: 1 << 16})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ { // readers scanning as fast as they can
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					r.Before(nil, r.Next(), 100)
					r.Count(nil)
				}
			}
		}()
	}
	start := time.Now()
	addN(r, 100000, 64)
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	if r.Next() != 100000 || r.Dropped() != 99000 {
		t.Errorf("next %d dropped %d", r.Next(), r.Dropped())
	}
	t.Logf("100000 adds with two scanning readers: %v", elapsed)
}

func TestSummaryIsCompact(t *testing.T) {
	if SummarySize > 112 {
		t.Errorf("Summary is %d bytes; the memory budget in the package doc assumes 112", SummarySize)
	}
}

// TestRingMemoryPerMillion measures the heap a full default ring of summaries
// takes (what bench/trace reports): it must stay within the documented
// budget of SummarySize bytes per summary.
func TestRingMemoryPerMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates ~112 MiB")
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := NewRing(RingConfig{Summaries: 1_000_000, RawBytes: 1})
	var s Summary
	for i := 0; i < 1_000_000; i++ {
		r.Add(s, nil)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perMillion := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	t.Logf("1,000,000 summaries: %.1f MiB heap (%d bytes each)", perMillion, SummarySize)
	if limit := float64(SummarySize) * 1e6 / (1 << 20) * 1.05; perMillion > limit {
		t.Errorf("1,000,000 summaries take %.1f MiB, budget %.1f MiB", perMillion, limit)
	}
	runtime.KeepAlive(r)
}

func BenchmarkRingAdd(b *testing.B) {
	r := NewRing(RingConfig{Summaries: 1 << 16, RawBytes: 1 << 22})
	frame := make([]byte, 300)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.Add(Summary{}, frame)
	}
}

func ExampleRing() {
	r := NewRing(RingConfig{Summaries: 4})
	idx := r.AddInterface(Interface{Node: "router", Name: "eth1"})
	for i := 0; i < 6; i++ {
		r.Add(Summary{Iface: idx, Flags: HasIPv4, Proto: ProtoIPv4, Src: [16]byte{192, 0, 2, 1}, Dst: [16]byte{192, 0, 2, byte(i)}}, nil)
	}
	fmt.Println(r.Len(), r.First(), r.Dropped())
	for _, s := range r.Before(nil, r.Next(), 2) {
		fmt.Println(s.Seq, r.Line(&s))
	}
	// Output:
	// 4 2 2
	// 4 00:00:00.000000 router eth1    IPv4 192.0.2.1 > 192.0.2.4 len 0
	// 5 00:00:00.000000 router eth1    IPv4 192.0.2.1 > 192.0.2.5 len 0
}
