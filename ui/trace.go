package ui

import (
	"fmt"
	"io"
	"math"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/fieldcon/fieldcon/engine/trace"
)

// TraceSource is the packet ring the trace view reads; *trace.Ring
// satisfies it. The view only ever asks for a screenful of summaries (or one
// frame, for the detail pane), never for the whole ring.
type TraceSource interface {
	First() uint64
	Next() uint64
	Len() int
	Dropped() uint64
	Interfaces() []trace.Interface
	RangeFiltered(f *trace.Filter, from uint64, n int) []trace.Summary
	Before(f *trace.Filter, before uint64, n int) []trace.Summary
	Follow(f *trace.Filter, from uint64, n int) (out []trace.Summary, next, missed uint64)
	Count(f *trace.Filter) int
	Get(seq uint64) (trace.Summary, []byte, bool)
	Detail(seq uint64, opt trace.DecoderOptions) (trace.Detail, bool)
	WritePcapng(w io.Writer, f *trace.Filter) (trace.ExportResult, error)
}

// window says which summaries the list shows, in capture-time order: the
// newest (follow), those from a row's key on, or those before one.
type window struct {
	kind windowKind
	key  rowKey
}

type windowKind uint8

const (
	winFollow windowKind = iota
	winFrom
	winBefore
)

// tracePane: the live packet list with follow, pause, scroll and jump to
// newest; a filter bar validated as it is typed; a detail pane (layer tree
// and hex) for the selected packet; node and interface selection; and
// export of what the view shows to pcapng.
type tracePane struct {
	src TraceSource
	opt trace.DecoderOptions // the profile's RHCP and tunnel ports, for the detail pane

	// The filter: what the user typed, plus the node and interface chosen
	// with n and i; compiled is their conjunction.
	text       string
	node, ifc  string
	compiled   *trace.Filter
	input      textinput.Model
	editing    bool
	inputErr   *trace.SyntaxError
	inputValid bool

	win    window
	paused bool
	gen    int // bumps when the filter or window changes; stale fetches are dropped

	// What the last fetch returned: the rows shown (in capture-time order),
	// the newest sequence number among them, and their lines.
	rows   []trace.Summary
	maxSeq uint64
	// rows, scanned and followGen let a filtered follow window read only
	// what arrived since the last refresh (see readReq).
	scanned   uint64
	followGen int
	lines     []string
	ifaces    []trace.Interface
	stats     traceStats
	sel       int // index into rows
	selSeq    uint64
	selKey    rowKey
	pending   bool
	listH     int

	detail    bool
	detailSeq uint64
	detailTxt []string
	detailOff int

	lastCount time.Time
	// newest is the ring's Next as of the last tick while paused: the
	// status line counts what arrived since without reading the ring.
	newest uint64
}

type traceStats struct {
	first, next, dropped uint64
	held                 int
	matching             int // -1 until counted
}

// traceMsg carries what a fetch read from the ring.
type traceMsg struct {
	gen    int
	rows   []trace.Summary
	maxSeq uint64
	// scanned is how far the ring was read: a filtered follow window
	// continues from it and the rows.
	scanned uint64
	lines   []string
	ifaces  []trace.Interface
	stats   traceStats
}

// traceNewestMsg is the ring's Next, read on a paused list's tick.
type traceNewestMsg struct{ next uint64 }

type traceDetailMsg struct {
	seq   uint64
	lines []string
}

type exportMsg struct {
	path string
	res  trace.ExportResult
	err  error
}

func newTracePane(src TraceSource, opt trace.DecoderOptions) *tracePane {
	return &tracePane{src: src, opt: opt, stats: traceStats{matching: -1}, listH: 10}
}

func (p *tracePane) typing() bool { return p.editing }

func (p *tracePane) hints(m *Model) []key.Binding {
	if p.editing {
		return []key.Binding{key.NewBinding(key.WithHelp("enter", "apply")), m.keys.Esc}
	}
	return []key.Binding{m.keys.Pause, m.keys.Bottom, m.keys.Filter, m.keys.Detail, m.keys.Export, m.keys.Node, m.keys.Iface}
}

func (p *tracePane) init(m *Model) tea.Cmd { return p.fetch(m) }

func (p *tracePane) close() {}

// poll refreshes the list on the console's tick; a frozen list only learns
// how many packets arrived since.
func (p *tracePane) poll(m *Model) tea.Cmd {
	if p.paused {
		if p.src == nil {
			return nil
		}
		src := p.src
		return func() tea.Msg { return traceNewestMsg{src.Next()} }
	}
	return p.fetch(m)
}

// fetch reads the window off the UI goroutine; lines are formatted there too
// so that drawing a frame costs only joining strings.
func (p *tracePane) fetch(m *Model) tea.Cmd {
	if p.src == nil || p.pending {
		return nil
	}
	p.pending = true
	src, f, win, gen, h := p.src, p.compiled, p.win, p.gen, p.listHeight(m)
	count := f != nil && m.now.Sub(p.lastCount) >= time.Second
	if count {
		p.lastCount = m.now
	}
	req := readReq{src: src, f: f, win: win, gen: gen, h: h, count: count,
		matching: p.stats.matching, narrow: m.width < 120}
	if win.kind == winFollow && f != nil && p.followGen == gen && p.rows != nil {
		req.prev, req.scanned = p.rows, p.scanned
	}
	return func() tea.Msg { return readWindow(req) }
}

// readReq is one read of the ring for the list.
type readReq struct {
	src      TraceSource
	f        *trace.Filter
	win      window
	gen, h   int
	count    bool // count the matches (a scan of the whole ring: once a second)
	matching int
	narrow   bool
	// prev and scanned continue a filtered follow window: the rows it shows
	// (ascending sequence numbers) and how far the ring was scanned, so a
	// refresh scans only what arrived since, not back through the ring for
	// a rare match.
	prev    []trace.Summary
	scanned uint64
}

func readWindow(req readReq) traceMsg {
	src, f, h, win := req.src, req.f, req.h, req.win
	rd := orderedReader{src: src, f: f, h: h}
	var rows []trace.Summary
	var scanned uint64
	switch win.kind {
	case winFollow:
		if req.prev != nil && req.scanned >= src.First() {
			rows, scanned = followOn(src, f, req.prev, req.scanned, h)
		} else {
			rows, scanned = rd.newest()
		}
	case winFrom:
		rows = rd.from(win.key)
	case winBefore:
		rows = rd.before(win.key)
	}
	if rows == nil {
		rows = []trace.Summary{} // non-nil even when empty: a window with no match yet continues too
	}
	var maxSeq uint64
	for i := range rows {
		maxSeq = max(maxSeq, rows[i].Seq)
	}
	msg := traceMsg{gen: req.gen, rows: rows, maxSeq: maxSeq, scanned: scanned, ifaces: src.Interfaces()}
	msg.stats = traceStats{first: src.First(), next: src.Next(), dropped: src.Dropped(), held: src.Len(), matching: req.matching}
	switch {
	case f == nil:
		msg.stats.matching = msg.stats.held
	case req.count:
		msg.stats.matching = src.Count(f)
	}
	msg.lines = make([]string, len(rows))
	for i := range rows {
		msg.lines[i] = trace.Format(&rows[i], msg.ifaces)
		if req.narrow {
			msg.lines[i] = compactLine(&rows[i], msg.lines[i])
		}
	}
	return msg
}

// followOn extends a filtered follow window with the matches among the
// summaries that arrived since scanned, keeping the newest h.
func followOn(src TraceSource, f *trace.Filter, prev []trace.Summary, scanned uint64, h int) ([]trace.Summary, uint64) {
	first := src.First()
	rows := make([]trace.Summary, 0, h)
	for _, r := range prev {
		if r.Seq >= first { // still held
			rows = append(rows, r)
		}
	}
	for {
		out, next, _ := src.Follow(f, scanned, h)
		// A match that arrived late may belong before the ones shown:
		// keep the newest h in capture-time order.
		rows = lastH(append(rows, out...), h)
		scanned = next
		if len(out) < h {
			return rows, scanned
		}
	}
}

func (p *tracePane) listHeight(m *Model) int {
	h := max(m.height-4-2, 1) // frame chrome, then the status and filter lines
	if p.detail {
		h = max(h*2/5, 3)
	}
	return h
}

// update takes a fetch's result. The selection follows its packet (by
// sequence number) across refreshes.
func (p *tracePane) update(m *Model, msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case traceMsg:
		p.pending = false
		if msg.gen != p.gen {
			return p.fetch(m) // the window moved while reading: read again
		}
		p.rows, p.maxSeq, p.lines, p.ifaces, p.stats = msg.rows, msg.maxSeq, msg.lines, msg.ifaces, msg.stats
		p.scanned, p.followGen = msg.scanned, msg.gen
		switch {
		case p.win.kind == winFollow:
			p.sel = len(p.rows) - 1
		default:
			p.sel = p.indexOf(p.selSeq, p.selKey)
		}
		p.sel = min(max(p.sel, 0), max(len(p.rows)-1, 0))
		if len(p.rows) > 0 {
			p.selSeq, p.selKey = p.rows[p.sel].Seq, keyOf(&p.rows[p.sel])
		}
		return p.loadDetail(m)
	case traceNewestMsg:
		p.newest = msg.next
	case traceDetailMsg:
		if msg.seq == p.selSeq {
			p.detailSeq, p.detailTxt = msg.seq, msg.lines
		}
	case exportMsg:
		if msg.err != nil {
			m.setStatus("write pcapng: "+msg.err.Error(), true)
		} else {
			s := fmt.Sprintf("wrote %d packets to %s", msg.res.Packets, msg.path)
			if msg.res.Missing > 0 {
				s += fmt.Sprintf(" (%d older ones no longer had their bytes)", msg.res.Missing)
			}
			m.setStatus(s, false)
		}
	}
	return nil
}

// indexOf finds the row of the selected packet, or of the packet just
// after it in capture-time order when it left the window.
func (p *tracePane) indexOf(seq uint64, k rowKey) int {
	for i := range p.rows {
		if p.rows[i].Seq == seq {
			return i
		}
	}
	return sort.Search(len(p.rows), func(i int) bool { return !keyOf(&p.rows[i]).less(k) })
}

// moveTo asks for a new window and reads it.
func (p *tracePane) moveTo(m *Model, w window) tea.Cmd {
	p.win = w
	p.gen++
	p.pending = false
	return p.fetch(m)
}

func (p *tracePane) key(m *Model, msg tea.KeyMsg) tea.Cmd {
	if p.editing {
		return p.editKey(m, msg)
	}
	k := &m.keys
	n := len(p.rows)
	switch {
	case key.Matches(msg, k.Up):
		if p.sel > 0 {
			p.sel--
			p.hold()
			break
		}
		if n > 0 {
			return p.moveTo(m, window{winBefore, keyOf(&p.rows[n-1])})
		}
	case key.Matches(msg, k.Down):
		if p.sel < n-1 {
			p.sel++
			break
		}
		if n > 0 && p.maxSeq+1 >= p.stats.next {
			// At the newest packet: carry on following, as tcpdump would.
			return p.moveTo(m, window{kind: winFollow})
		}
		if n > 1 && p.win.kind != winFollow {
			return p.moveTo(m, window{winFrom, keyOf(&p.rows[1])})
		}
	case p.detail && key.Matches(msg, k.PgUp):
		p.detailOff = max(p.detailOff-5, 0)
		return nil
	case p.detail && key.Matches(msg, k.PgDown):
		p.detailOff = min(p.detailOff+5, max(len(p.detailTxt)-3, 0))
		return nil
	case key.Matches(msg, k.PgUp):
		if n > 0 {
			return p.moveTo(m, window{winBefore, keyOf(&p.rows[0])})
		}
	case key.Matches(msg, k.PgDown):
		if n > 0 && p.win.kind != winFollow {
			return p.moveTo(m, window{winFrom, keyOf(&p.rows[n-1]).after()})
		}
	case key.Matches(msg, k.Top):
		p.selSeq, p.selKey, p.sel = math.MaxUint64, oldestKey(), 0 // no packet: the first in time
		return p.moveTo(m, window{winFrom, oldestKey()})
	case key.Matches(msg, k.Bottom), key.Matches(msg, k.Follow):
		p.paused = false
		return p.moveTo(m, window{kind: winFollow})
	case key.Matches(msg, k.Pause):
		p.paused = !p.paused
		if !p.paused {
			return p.fetch(m)
		}
		return nil
	case key.Matches(msg, k.Filter):
		p.input = textinput.New()
		p.input.Prompt = "filter: "
		p.input.Placeholder = "e.g. rhcp or dhcp.type == ack or ip.addr == 203.0.113.0/24"
		p.input.SetValue(p.text)
		p.input.CursorEnd()
		p.input.Focus()
		p.editing = true
		p.validate()
		return textinput.Blink
	case key.Matches(msg, k.Detail):
		p.detail = !p.detail
		p.detailOff = 0
		return tea.Batch(p.loadDetail(m), p.moveTo(m, p.anchor(m)))
	case key.Matches(msg, k.Esc):
		if p.detail {
			p.detail = false
			return p.moveTo(m, p.anchor(m))
		}
	case key.Matches(msg, k.Node):
		p.node = cycle(p.nodes(), p.node)
		p.ifc = ""
		return p.recompile(m)
	case key.Matches(msg, k.Iface):
		p.ifc = cycle(p.ifaceNames(), p.ifc)
		return p.recompile(m)
	case key.Matches(msg, k.Export):
		return p.export(m)
	}
	if n > 0 {
		p.selSeq, p.selKey = p.rows[p.sel].Seq, keyOf(&p.rows[p.sel])
	}
	return p.loadDetail(m)
}

// hold stops following: the list stays on the rows shown, so the packet the
// user moved to does not run away as new ones arrive.
func (p *tracePane) hold() {
	if p.win.kind == winFollow && len(p.rows) > 0 {
		p.win = window{winFrom, keyOf(&p.rows[0])}
		p.gen++
	}
}

// anchor is a window that keeps the selected packet in view at the list's
// height now (the detail pane or a smaller terminal shortens it).
func (p *tracePane) anchor(m *Model) window {
	if p.win.kind == winFollow || len(p.rows) == 0 {
		return window{kind: winFollow}
	}
	top := max(min(p.sel, len(p.rows)-1)-p.listHeight(m)+1, 0)
	return window{winFrom, keyOf(&p.rows[top])}
}

func (p *tracePane) editKey(m *Model, msg tea.KeyMsg) tea.Cmd {
	switch msg.String() {
	case "enter":
		if !p.inputValid {
			return nil // the bar shows why; Enter applies only a filter that parses
		}
		p.editing = false
		p.text = strings.TrimSpace(p.input.Value())
		return p.recompile(m)
	case "esc":
		p.editing = false
		return nil
	}
	var cmd tea.Cmd
	p.input, cmd = p.input.Update(msg)
	p.validate()
	return cmd
}

// validate parses what is typed so far, on every key.
func (p *tracePane) validate() {
	_, err := trace.ParseFilter(p.input.Value())
	p.inputErr, p.inputValid = nil, err == nil
	if se, ok := err.(*trace.SyntaxError); ok {
		p.inputErr = se
	}
}

// recompile joins the typed filter with the node and interface selection.
func (p *tracePane) recompile(m *Model) tea.Cmd {
	var parts []string
	if p.text != "" {
		parts = append(parts, "("+p.text+")")
	}
	if p.node != "" {
		parts = append(parts, "node=="+p.node)
	}
	if p.ifc != "" {
		parts = append(parts, "iface=="+p.ifc)
	}
	f, err := trace.ParseFilter(strings.Join(parts, " and "))
	if err != nil {
		m.setStatus("filter: "+err.Error(), true)
		return nil
	}
	p.compiled = f
	p.stats.matching = -1
	p.lastCount = time.Time{}
	return p.moveTo(m, window{kind: winFollow})
}

func (p *tracePane) nodes() []string {
	var out []string
	for _, i := range p.ifaces {
		if i.Node != "" && !contains(out, i.Node) {
			out = append(out, i.Node)
		}
	}
	return out
}

func (p *tracePane) ifaceNames() []string {
	var out []string
	for _, i := range p.ifaces {
		if (p.node == "" || i.Node == p.node) && !contains(out, i.Name) {
			out = append(out, i.Name)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// loadDetail decodes the selected packet for the detail pane, off the UI
// goroutine and only when the pane is open and the selection changed.
func (p *tracePane) loadDetail(m *Model) tea.Cmd {
	if !p.detail || len(p.rows) == 0 || p.src == nil {
		return nil
	}
	seq := p.rows[min(p.sel, len(p.rows)-1)].Seq
	if seq == p.detailSeq && p.detailTxt != nil {
		return nil
	}
	p.detailOff = 0
	src, opt := p.src, p.opt
	s := p.rows[min(p.sel, len(p.rows)-1)]
	return func() tea.Msg {
		d, ok := src.Detail(seq, opt)
		if !ok {
			return traceDetailMsg{seq, []string{fmt.Sprintf("#%d: its bytes are no longer held (the ring keeps the newest frames' bytes)", seq)}}
		}
		return traceDetailMsg{seq, detailLines(&s, d, src.Interfaces())}
	}
}

func (p *tracePane) render(m *Model, w, h int) string {
	st := &m.st
	if p.src == nil {
		return st.Dim.Render("Trace: no capture in this session (needs root, or capture is off in the profile)")
	}
	var b strings.Builder
	// Status line: mode, counts, filter.
	mode := st.OK.Render("● follow")
	switch {
	case p.paused:
		mode = st.Warn.Render("‖ paused") + st.Dim.Render(fmt.Sprintf(" (%d new)", p.newSince()))
	case p.win.kind != winFollow:
		mode = st.Warn.Render("◆ scrolled") + st.Dim.Render(" (G: newest)")
	}
	match := "all"
	if p.compiled != nil {
		match = "…"
		if p.stats.matching >= 0 {
			match = fmt.Sprint(p.stats.matching)
		}
	}
	fmt.Fprintf(&b, "%s  %s held %s captured  match %s", mode, si(uint64(p.stats.held)), si(p.stats.next), match)
	if p.stats.dropped > 0 {
		b.WriteString(st.Dim.Render(fmt.Sprintf("  %s rolled off", si(p.stats.dropped))))
	}
	b.WriteByte('\n')
	b.WriteString(p.filterBar(m, w))
	b.WriteByte('\n')

	listH := p.listHeight(m)
	for i, l := range p.lines {
		if i >= listH {
			break
		}
		line := marker(i == p.sel) + l
		if i == p.sel {
			line = st.Selected.Render(clip(line, w))
		} else if p.rows[i].Flags&(trace.Malformed) != 0 {
			line = st.Err.Render(line)
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if len(p.lines) == 0 {
		b.WriteString(st.Dim.Render("  no packets match yet") + "\n")
	}
	if p.detail {
		for i := len(p.lines); i < listH; i++ {
			b.WriteByte('\n')
		}
		b.WriteString(st.Dim.Render(strings.Repeat("─", w)) + "\n")
		dh := h - listH - 3
		txt := p.detailTxt
		if p.detailSeq != p.selSeq {
			txt = []string{st.Dim.Render("decoding…")}
		}
		for i := p.detailOff; i < len(txt) && i < p.detailOff+dh; i++ {
			b.WriteString(txt[i] + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

func (p *tracePane) newSince() uint64 {
	return max(p.newest, p.stats.next) - p.stats.next
}

// filterBar shows the applied filter, or the one being typed with a marker
// under the column the parser stopped at.
func (p *tracePane) filterBar(m *Model, w int) string {
	st := &m.st
	sel := ""
	if p.node != "" {
		sel += "  node " + p.node
	}
	if p.ifc != "" {
		sel += "  iface " + p.ifc
	}
	if !p.editing {
		if p.text == "" {
			return st.Dim.Render("filter: none (/ to set)" + sel)
		}
		return "filter: " + st.Key.Render(p.text) + st.Dim.Render(sel)
	}
	bar := p.input.View()
	switch {
	case p.inputErr != nil:
		pos := min(p.inputErr.Pos, len(p.input.Value()))
		return bar + "\n" + strings.Repeat(" ", len(p.input.Prompt)+pos) + st.Err.Render("^ "+p.inputErr.Msg)
	case p.inputValid:
		return bar + "  " + st.OK.Render("✓")
	}
	return bar
}

// compactLine shortens the trace package's one-line text for narrow
// terminals: milliseconds instead of microseconds, no ports on protocols
// that have fixed ones (DHCP, RHCP), and no frame length (the detail pane
// has it). Wide terminals get the full text.
func compactLine(s *trace.Summary, full string) string {
	line := full
	if len(line) > 15 && line[8] == '.' {
		line = line[:12] + line[15:]
	}
	if i := strings.LastIndex(line, " len "); i > 0 {
		line = line[:i] + strings.TrimLeft(line[i+5:], "0123456789")
	}
	if s.Proto == trace.ProtoDHCP || s.Proto == trace.ProtoRHCP {
		src, dst := s.SrcAddr(), s.DstAddr()
		if src.IsValid() && dst.IsValid() {
			long := netip.AddrPortFrom(src, s.SrcPort).String() + " > " + netip.AddrPortFrom(dst, s.DstPort).String()
			line = strings.Replace(line, long, src.String()+" > "+dst.String(), 1)
		}
	}
	return line
}
