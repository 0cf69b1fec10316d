// Package bench holds fieldcon's benchmarks; they are measured, not timed
// tests (DESIGN.md "Tests").
package bench

import (
	"encoding/binary"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/gopacket/gopacket/layers"
	"github.com/muesli/termenv"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/rhcp"
	"github.com/fieldcon/fieldcon/engine/trace"
	"github.com/fieldcon/fieldcon/ui"
)

const (
	buffered = 1_000_000 // packets in the ring when measuring
	rate     = 20_000    // packets per second arriving while measuring
)

type snapSource struct{ s engine.Snapshot }

func (s snapSource) Snapshot() engine.Snapshot { return s.s }

func ether(ip []byte) []byte {
	f := make([]byte, 14, 14+len(ip))
	copy(f[0:6], []byte{2, 0, 0, 0, 0, 2})
	copy(f[6:12], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	return append(f, ip...)
}

// templates are the frames the load is made of, decoded once by the trace
// package's summary decoder: mostly bulk UDP, 1% RHCP probes.
type template struct {
	s     trace.Summary
	frame []byte
}

func templates(b *testing.B) []template {
	key := []byte("bench-site-key-0123456789abcdef!")
	probe := rhcp.Message{Type: rhcp.TypeProbe, ClientID: "ESN-0001", Address: netip.MustParsePrefix("203.0.113.10/32"),
		Gateway: netip.MustParseAddr("192.0.2.1"), Server: netip.MustParseAddr("198.51.100.1"), Sequence: 1,
		Issued: time.Now(), Lifetime: time.Minute}
	pb, err := probe.Marshal(key)
	if err != nil {
		b.Fatal(err)
	}
	frames := [][]byte{
		ether(rhcp.BuildPacket(netip.MustParseAddrPort("198.51.100.1:6655"), netip.MustParseAddrPort("203.0.113.10:6655"), pb)),
	}
	for i := 0; i < 99; i++ {
		frames = append(frames, ether(rhcp.BuildPacket(netip.MustParseAddrPort("198.18.0.2:40000"),
			netip.MustParseAddrPort("198.18.1."+strconv.Itoa(i+1)+":5201"), make([]byte, 1200))))
	}
	dec := trace.NewDecoder(trace.DecoderOptions{})
	out := make([]template, len(frames))
	for i, f := range frames {
		dec.Decode(layers.LinkTypeEthernet, f, &out[i].s)
		out[i].s.Len, out[i].frame = uint32(len(f)), f
	}
	return out
}

// load fills a ring with `buffered` packets, then keeps `rate` packets per
// second arriving until stop is called.
func load(b *testing.B) (*trace.Ring, func()) {
	tpl := templates(b)
	r := trace.NewRing(trace.RingConfig{})
	r.AddInterface(trace.Interface{Node: "router", Name: "eth1", LinkType: layers.LinkTypeEthernet})
	now := time.Now().Add(-time.Hour).UnixNano()
	add := func(i int) {
		t := tpl[i%len(tpl)]
		// Odd frames come from a second capture goroutine that runs 1 ms
		// behind: the ring's arrival order is not capture order, as on a
		// lab with an interface per namespace, and the list must sort.
		t.s.Time = now + int64(i)*50_000 - int64(i%2)*1_000_000
		r.Add(t.s, t.frame)
	}
	for i := 0; i < buffered; i++ {
		add(i)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		i := buffered
		start := time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				// Catch up to where the rate says we should be.
				want := buffered + int(time.Since(start).Seconds()*rate)
				for ; i < want; i++ {
					add(i)
				}
			}
		}
	}()
	return r, func() { close(done); wg.Wait() }
}

// run executes a command tree synchronously, as Bubble Tea's loop would,
// feeding each message back to the model.
func run(m *ui.Model, cmd tea.Cmd, depth int) {
	if cmd == nil || depth > 3 {
		return
	}
	switch msg := cmd().(type) {
	case tea.BatchMsg:
		for _, c := range msg {
			run(m, c, depth+1)
		}
	case nil:
	default:
		_, next := m.Update(msg)
		run(m, next, depth+1)
	}
}

func newConsole(r *trace.Ring) *ui.Model {
	rd := lipgloss.NewRenderer(os.Stdout)
	rd.SetColorProfile(termenv.ANSI256)
	m := ui.New(ui.Options{
		Profile: "bench", Host: "bench", Lab: true,
		Engine: snapSource{engine.Snapshot{Nodes: []engine.NodeSnapshot{{Name: "router"}}}},
		Bus:    engine.NewBus(100), Trace: r, Renderer: rd,
	})
	m.Update(tea.WindowSizeMsg{Width: 160, Height: 50})
	run(m, m.Refresh(), 0)
	return m
}

func key(m *ui.Model, k string) {
	var msg tea.KeyMsg
	switch k {
	case "enter":
		msg = tea.KeyMsg{Type: tea.KeyEnter}
	case "pgup":
		msg = tea.KeyMsg{Type: tea.KeyPgUp}
	default:
		msg = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
	}
	_, cmd := m.Update(msg)
	run(m, cmd, 0)
}

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkConsoleTrace measures the trace view with a million packets
// buffered and 20,000 packets/s arriving: "view" is View() alone (what Bubble
// Tea calls for every frame), "frame" is a whole refresh as the tick does it
// (read the ring window, format the lines, rebuild the frame) plus View().
// It reports the process's resident memory in that state.
func BenchmarkConsoleTrace(b *testing.B) {
	r, stop := load(b)
	defer stop()
	cases := []struct {
		name  string
		setup []string
	}{
		{"follow", []string{"2"}},
		{"follow-filter-rhcp", []string{"2", "/", "rhcp", "enter"}},
		{"scrolled-detail", []string{"2", "g", "j", "j", "enter"}},
		// Paging back from the newest: each page is read in capture-time
		// order across its edges (ui/traceorder.go).
		{"paged-back", []string{"2", "k", "pgup", "pgup"}},
		// Worst case: a filter nothing matches makes a reader scan the
		// whole ring for the newest matches.
		{"follow-filter-nomatch", []string{"2", "/", "dhcp", "enter"}},
	}
	for _, c := range cases {
		m := newConsole(r)
		for _, k := range c.setup {
			if k == "/" || k == "enter" || k == "pgup" || len(k) == 1 {
				key(m, k)
			} else {
				for _, ch := range k {
					key(m, string(ch))
				}
			}
		}
		run(m, m.Refresh(), 0)
		if !strings.Contains(m.View(), "held") {
			b.Fatalf("%s: trace view not shown:\n%s", c.name, m.View())
		}
		b.Run(c.name+"/view", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				_ = m.View()
			}
		})
		b.Run(c.name+"/frame", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				run(m, m.Refresh(), 0)
				_ = m.View()
			}
			// Resident memory in that state, after returning freed pages
			// (the ring's growth leaves garbage the OS need not keep).
			debug.FreeOSMemory()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(rssMB(), "MB-rss")
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MB-heap")
			b.ReportMetric(float64(r.Len()), "held")
		})
	}
}
