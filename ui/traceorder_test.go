package ui

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/gopacket/gopacket/layers"

	"github.com/fieldcon/fieldcon/engine/trace"
)

// disorderedRing holds n frames captured every 100 µs on two interfaces;
// the second interface's frames reach the ring up to 50 ms late, as a busy
// capture goroutine delivers them, and some frames share a timestamp. One
// frame in three goes to port 9.
func disorderedRing(t testing.TB, n int, seed int64) *trace.Ring {
	r := trace.NewRing(trace.RingConfig{Summaries: 4 * n, RawBytes: 1 << 20})
	a := r.AddInterface(trace.Interface{Node: "router", Name: "eth0", LinkType: layers.LinkTypeEthernet})
	b := r.AddInterface(trace.Interface{Node: "device", Name: "eth0", LinkType: layers.LinkTypeEthernet})
	rng := rand.New(rand.NewSource(seed))
	dec := trace.NewDecoder(trace.DecoderOptions{})
	type pending struct {
		s       trace.Summary
		f       []byte
		arrival int64
	}
	var all []pending
	for i := 0; i < n; i++ {
		port := 4000 + i%3*2500 // 4000, 6500, 9000: filter on port 9000
		f := udpFrame("198.51.100.1:4000", fmt.Sprintf("203.0.113.10:%d", port), []byte("x"))
		var s trace.Summary
		dec.Decode(layers.LinkTypeEthernet, f, &s)
		s.Time = t0.Add(time.Duration(i/4*4) * 100 * time.Microsecond).UnixNano() // four frames per timestamp
		s.Iface, s.Len = a, uint32(len(f))
		arrival := s.Time
		if i%2 == 1 {
			s.Iface = b
			arrival += rng.Int63n(int64(50 * time.Millisecond)) // 250 frames: more than one read of the ring
		}
		all = append(all, pending{s, f, arrival})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].arrival < all[j].arrival })
	for _, p := range all {
		r.Add(p.s, p.f)
	}
	return r
}

// TestOrderedWindows compares every window the list can ask for with the
// ring sorted by capture time as a whole: pages meet without a gap or an
// overlap, whatever the arrival order at their edges.
func TestOrderedWindows(t *testing.T) {
	r := disorderedRing(t, 2000, 1)
	f9, err := trace.ParseFilter("udp.dstport == 9000")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    *trace.Filter
	}{{"all", nil}, {"filtered", f9}} {
		t.Run(c.name, func(t *testing.T) {
			all := r.Before(c.f, r.Next(), r.Len())
			sortByKey(all)
			inOrder := false
			for i := 1; i < len(all); i++ {
				if all[i].Seq < all[i-1].Seq {
					inOrder = true // the ring really is out of order
				}
			}
			if !inOrder {
				t.Fatal("the ring is in capture order: the test proves nothing")
			}
			const h = 18
			check := func(what string, got, want []trace.Summary) {
				t.Helper()
				if keysOf(got) != keysOf(want) {
					t.Fatalf("%s: got %s\nwant %s", what, keysOf(got), keysOf(want))
				}
			}
			rd := orderedReader{src: r, f: c.f, h: h}
			newest, _ := rd.newest()
			check("newest", newest, all[len(all)-h:])
			for i := range all {
				k := keyOf(&all[i])
				want := all[i:min(i+h, len(all))]
				if len(want) < h {
					want = all[len(all)-h:]
				}
				check(fmt.Sprintf("from row %d", i), rd.from(k), want)
				want = all[max(i-h, 0):i]
				if len(want) < h {
					want = all[:h]
				}
				check(fmt.Sprintf("before row %d", i), rd.before(k), want)
			}
			check("from the oldest", rd.from(oldestKey()), all[:h])
		})
	}
}

func keysOf(rows []trace.Summary) string {
	var b strings.Builder
	for i := range rows {
		fmt.Fprintf(&b, "%d/%d ", rows[i].Time/1000%1000000, rows[i].Seq)
	}
	return b.String()
}

// TestTracePagesInOrder pages through a ring whose arrival order is not
// capture order, from the oldest to the newest and back: every row shows
// once, in capture-time order, across page boundaries.
func TestTracePagesInOrder(t *testing.T) {
	const n = 1500
	opt := recordedOptions(t)
	ring := disorderedRing(t, n, 2)
	opt.Trace, opt.Engine, opt.Bus = ring, nil, nil
	m := New(opt)
	_, cmd := m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	drive(m, cmd, 0)
	key := func(k tea.KeyMsg) {
		_, cmd := m.Update(k)
		drive(m, cmd, 0)
	}
	press(m, "2")
	press(m, "g")
	all := ring.Before(nil, ring.Next(), n)
	sortByKey(all)
	var down, up []uint64
	for len(down) < 2*n {
		for _, r := range m.tr.rows {
			down = append(down, r.Seq)
		}
		if keyOf(&m.tr.rows[len(m.tr.rows)-1]) == keyOf(&all[n-1]) {
			break
		}
		key(tea.KeyMsg{Type: tea.KeyPgDown})
	}
	for len(up) < 2*n {
		rows := m.tr.rows
		for i := len(rows) - 1; i >= 0; i-- {
			up = append(up, rows[i].Seq)
		}
		if keyOf(&rows[0]) == keyOf(&all[0]) {
			break
		}
		key(tea.KeyMsg{Type: tea.KeyPgUp})
	}
	h := m.tr.listHeight(m)
	for _, c := range []struct {
		name string
		got  []uint64
		want func(i int) uint64
	}{
		{"pgdown", down, func(i int) uint64 { return all[i].Seq }},
		{"pgup", up, func(i int) uint64 { return all[n-1-i].Seq }},
	} {
		// The last page holds the newest h rows (the first, the oldest):
		// it overlaps the one before it when n is not a multiple of h.
		got := c.got
		if tail := n % h; tail != 0 && len(got) == n-tail+h {
			got = append(got[:n-tail], got[n-tail+h-tail:]...)
		}
		if len(got) != n {
			t.Fatalf("%s showed %d rows, want each of the %d once (page height %d)", c.name, len(c.got), n, h)
		}
		for i := range got {
			if got[i] != c.want(i) {
				t.Fatalf("%s: row %d is #%d, want #%d (capture-time order across pages)", c.name, i, got[i], c.want(i))
			}
		}
	}
}

// TestTraceDetailKeepsSelection: opening the detail pane shortens the list;
// the selected packet stays in it (selected), also when it was near the
// bottom of a scrolled list.
func TestTraceDetailKeepsSelection(t *testing.T) {
	opt := recordedOptions(t)
	ring := disorderedRing(t, 100, 3)
	opt.Trace, opt.Engine, opt.Bus = ring, nil, nil
	m := New(opt)
	_, cmd := m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	drive(m, cmd, 0)
	press(m, "2")
	for i := 0; i < 3; i++ {
		press(m, "k") // hold the list, three rows above the newest
	}
	want := m.tr.rows[m.tr.sel].Seq
	press(m, "enter")
	if !m.tr.detail {
		t.Fatal("enter did not open the detail pane")
	}
	if h := m.tr.listHeight(m); m.tr.sel >= h || m.tr.rows[m.tr.sel].Seq != want {
		t.Errorf("after opening the detail pane row %d of %d is selected (#%d), want #%d in view",
			m.tr.sel, h, m.tr.rows[min(m.tr.sel, len(m.tr.rows)-1)].Seq, want)
	}
	if m.tr.detailSeq != want {
		t.Errorf("the detail pane shows #%d, want #%d", m.tr.detailSeq, want)
	}
}
