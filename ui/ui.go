// Package ui is fieldcon's console: a Bubble Tea program over a running
// engine. It reads engine snapshots on a tick and drains the event bus and
// the packet trace in batches, so it never blocks the engine and never sends
// one message per packet; View composes from parts cached in Update.
package ui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/trace"
)

// Source is the engine as the console sees it; *engine.Engine satisfies it.
type Source interface {
	Snapshot() engine.Snapshot
}

// LabLink is one link of the profile's lab, "node:iface" at each end.
type LabLink struct {
	A, B string
}

// Actions are what the console can ask of the engine and the lab. A nil
// function means the capability is not there; its key then says so.
type Actions struct {
	// Restart stops a node's role (undoing its changes) and starts it again.
	Restart func(ctx context.Context, node, role string) error
	// Stop stops a node's role and undoes its changes (unless the role
	// persists them); Start runs a stopped role again.
	Stop, Start func(ctx context.Context, node, role string) error
	// Container names the role that runs role on node (the arbiter, for an
	// address mechanism), or "" when the engine runs it itself: start, stop
	// and restart then act on the container. It may wait for the engine, so
	// the console calls it off the UI goroutine.
	Container func(node, role string) string
	// Reprobe asks the RHCP server of a node to probe a client again
	// (client "" for every client it allocates to).
	Reprobe func(ctx context.Context, node, client string) error
	// ForceRenew makes a DHCP server node send FORCERENEW (RFC 3203) to a client.
	ForceRenew func(ctx context.Context, node, client string) error
	// FlapLink takes a lab link down and brings it up again.
	FlapLink func(ctx context.Context, l LabLink) error
}

// Options configure the console.
type Options struct {
	Profile string
	// Host is the machine's host name.
	Host string
	// Lab is true when the nodes run in the profile's lab namespaces,
	// false on the host's real interfaces.
	Lab   bool
	Links []LabLink
	// LinkStates reads whether each lab interface ("node:iface") is up; the
	// topology view polls it once a second. Nil when there is no lab.
	LinkStates func() (map[string]bool, error)

	Engine Source
	// Bus is the engine's event bus; the log and overview read it.
	Bus *engine.Bus
	// Trace is the packet capture; nil when there is none.
	Trace TraceSource
	// TraceOptions are the profile's decoder options (RHCP and tunnel ports).
	TraceOptions trace.DecoderOptions
	// ExportDir is where `w` writes pcapng files ("" for the working directory).
	ExportDir string

	Actions Actions
	// Context bounds actions; it defaults to context.Background.
	Context context.Context

	Renderer *lipgloss.Renderer
	// Now is the clock (tests fix it).
	Now func() time.Time
	// Tick is how often snapshots are read (default 250ms).
	Tick time.Duration
	// EventBuffer is how many events the log keeps (default 20000).
	EventBuffer int
}

type viewID int

const (
	viewOverview viewID = iota
	viewTrace
	viewNAT
	viewLeases
	viewTopology
	viewLog
	numViews
)

var viewNames = [numViews]string{"Overview", "Trace", "NAT", "Leases", "Topology", "Log"}

// pane is one view of the console.
type pane interface {
	// render draws the body in w×h cells.
	render(m *Model, w, h int) string
	// key handles a key press while the view is shown.
	key(m *Model, msg tea.KeyMsg) tea.Cmd
	// hints are the footer's key hints.
	hints(m *Model) []key.Binding
	// typing is true while a text input has the keyboard (global keys off).
	typing() bool
}

// Model is the console's root model.
type Model struct {
	opt   Options
	st    Styles
	keys  keyMap
	ctx   context.Context
	panes [numViews]pane

	width, height int
	view          viewID
	help          bool
	quitting      bool

	now      time.Time
	snap     engine.Snapshot
	sub      *engine.Subscription
	events   *eventRing
	fetching bool
	// added is when each address (node|iface|prefix) was last configured,
	// from address.added events: lifetimes count down from there.
	added map[string]time.Time
	// linkUp is the lab's interface states; linksAt when they were read.
	linkUp       map[string]bool
	linksAt      time.Time
	linksPending bool
	// stopped marks the roles (node|role) stopped from the keyboard: a role
	// that had finished its work still reports "done" after it is stopped.
	stopped map[string]bool

	status    string
	statusErr bool
	statusAt  time.Time

	ov    *overviewPane
	tr    *tracePane
	nat   *natPane
	leas  *leasesPane
	topo  *topologyPane
	logp  *logPane
	frame cachedFrame
}

// cachedFrame holds the parts View joins; Update rebuilds them.
type cachedFrame struct {
	header, tabs, body, status, footer string
}

// New returns the console model. It subscribes to the bus at once (with the
// retained history) so that nothing between now and the first frame is lost.
func New(opt Options) *Model {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Tick <= 0 {
		opt.Tick = 250 * time.Millisecond
	}
	if opt.EventBuffer <= 0 {
		opt.EventBuffer = 20000
	}
	if opt.Context == nil {
		opt.Context = context.Background()
	}
	m := &Model{
		opt:    opt,
		st:     NewStyles(opt.Renderer),
		keys:   newKeyMap(),
		ctx:    opt.Context,
		width:  80,
		height: 24,
		now:    opt.Now(),
		events: newEventRing(opt.EventBuffer),
	}
	if opt.Bus != nil {
		m.sub = opt.Bus.Subscribe(8192, true)
	}
	m.ov = &overviewPane{}
	m.tr = newTracePane(opt.Trace, opt.TraceOptions)
	m.nat = &natPane{}
	m.leas = &leasesPane{}
	m.topo = &topologyPane{}
	m.logp = &logPane{follow: true}
	m.panes = [numViews]pane{m.ov, m.tr, m.nat, m.leas, m.topo, m.logp}
	m.rebuild()
	return m
}

type tickMsg time.Time

type refreshMsg struct {
	snap    engine.Snapshot
	events  []engine.Event
	dropped uint64
}

type linksMsg struct {
	up  map[string]bool
	err error
}

type actionMsg struct {
	what string
	err  error
	// marks, when set, record roles (node|role) as stopped (true) or
	// running again (false) once the action succeeded.
	marks   []string
	stopped bool
}

func (m *Model) tick() tea.Cmd {
	return tea.Tick(m.opt.Tick, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// fetch reads a snapshot and drains the bus off the UI goroutine: the engine
// lock may be held while a role stops, and Update must never wait for it.
func (m *Model) fetch() tea.Cmd {
	if m.fetching || m.opt.Engine == nil {
		return nil
	}
	m.fetching = true
	src, sub := m.opt.Engine, m.sub
	return func() tea.Msg {
		r := refreshMsg{snap: src.Snapshot()}
		if sub != nil {
			r.events = drain(sub.C, 4096)
			r.dropped = sub.Dropped()
		}
		return r
	}
}

// drain takes what is queued on c without waiting, at most max events.
func drain(c <-chan engine.Event, max int) []engine.Event {
	var out []engine.Event
	for len(out) < max {
		select {
		case e, ok := <-c:
			if !ok {
				return out
			}
			out = append(out, e)
		default:
			return out
		}
	}
	return out
}

// Refresh reads the engine and the trace now, as the tick does; the
// messages its command returns go back to Update.
func (m *Model) Refresh() tea.Cmd {
	m.now = m.opt.Now()
	if m.view != viewTrace {
		return m.fetch()
	}
	return tea.Batch(m.fetch(), m.tr.poll(m))
}

// Init starts the tick and the first read.
func (m *Model) Init() tea.Cmd {
	return tea.Batch(m.fetch(), m.tick(), m.tr.init(m))
}

// Update handles one message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmd tea.Cmd
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		cmd = m.tr.moveTo(m, m.tr.anchor(m)) // the list holds as many rows as fit
		m.nat.refresh(m)                     // its columns depend on the width
	case tickMsg:
		m.now = m.opt.Now()
		if m.status != "" && m.now.Sub(m.statusAt) > 8*time.Second {
			m.status = ""
		}
		cmd = tea.Batch(m.tick(), m.fetch())
		if m.view == viewTopology {
			cmd = tea.Batch(cmd, m.readLinks())
		}
		if m.view == viewTrace {
			// Only the trace view reads the ring: other views cost the
			// capture nothing.
			cmd = tea.Batch(cmd, m.tr.poll(m))
		}
	case refreshMsg:
		m.fetching = false
		m.snap = msg.snap
		m.events.add(msg.events)
		m.events.dropped = msg.dropped
		m.ov.noteEvents(msg.events)
		m.noteAddresses(msg.events)
		m.ov.refresh(m)
		m.logp.refresh(m)
		m.nat.refresh(m)
	case actionMsg:
		if msg.err != nil {
			m.setStatus(msg.what+": "+msg.err.Error(), true)
			break
		}
		m.setStatus(msg.what, false)
		for _, k := range msg.marks {
			if m.stopped == nil {
				m.stopped = map[string]bool{}
			}
			m.stopped[k] = msg.stopped
		}
		m.ov.refresh(m)
	case linksMsg:
		m.linksPending = false
		if msg.err == nil {
			m.linkUp = msg.up
		}
	case traceMsg, traceNewestMsg, traceDetailMsg, exportMsg:
		cmd = m.tr.update(m, msg)
	case tea.KeyMsg:
		cmd = m.handleKey(msg)
	}
	m.rebuild()
	return m, cmd
}

func (m *Model) setStatus(s string, isErr bool) {
	m.status, m.statusErr, m.statusAt = s, isErr, m.opt.Now()
}

func (m *Model) handleKey(msg tea.KeyMsg) tea.Cmd {
	// Bubble Tea delivers runes that arrive in one read as one message
	// ("kk"): over a slow SSH link keys come in bursts. Outside a text input
	// each rune is its own command.
	if msg.Type == tea.KeyRunes && len(msg.Runes) > 1 && !msg.Paste && !m.panes[m.view].typing() {
		var cmds []tea.Cmd
		for _, r := range msg.Runes {
			cmds = append(cmds, m.handleKey(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: msg.Alt}))
			// A view builds its list when it draws: "4G" must move in
			// the leases list that "4" brought up.
			m.rebuild()
		}
		return tea.Batch(cmds...)
	}
	p := m.panes[m.view]
	if msg.String() == "ctrl+c" {
		return m.quit()
	}
	if m.help {
		switch {
		case key.Matches(msg, m.keys.Quit):
			return m.quit()
		case key.Matches(msg, m.keys.Help, m.keys.Esc):
			m.help = false
		}
		return nil
	}
	if p.typing() {
		return p.key(m, msg)
	}
	switch {
	case key.Matches(msg, m.keys.Quit):
		return m.quit()
	case key.Matches(msg, m.keys.Help):
		m.help = true
		return nil
	case key.Matches(msg, m.keys.Next):
		return m.show((m.view + 1) % numViews)
	case key.Matches(msg, m.keys.Prev):
		return m.show((m.view + numViews - 1) % numViews)
	}
	for i, b := range m.keys.Views {
		if key.Matches(msg, b) {
			return m.show(viewID(i))
		}
	}
	return p.key(m, msg)
}

// show switches to view v; the trace and topology views read at once.
func (m *Model) show(v viewID) tea.Cmd {
	m.view = v
	switch v {
	case viewTrace:
		return m.tr.poll(m)
	case viewTopology:
		m.linksAt = time.Time{}
		return m.readLinks()
	}
	return nil
}

// readLinks reads the lab's link states, at most once a second and off the
// UI goroutine (it asks the kernel in every namespace).
func (m *Model) readLinks() tea.Cmd {
	if m.opt.LinkStates == nil || m.linksPending || m.now.Sub(m.linksAt) < time.Second {
		return nil
	}
	m.linksPending, m.linksAt = true, m.now
	f := m.opt.LinkStates
	return func() tea.Msg {
		up, err := f()
		return linksMsg{up, err}
	}
}

func (m *Model) quit() tea.Cmd {
	m.quitting = true
	if m.sub != nil {
		m.sub.Close()
	}
	m.tr.close()
	return tea.Quit
}

// action runs f off the UI goroutine and reports its outcome in the status line.
func (m *Model) action(what string, f func(ctx context.Context) error) tea.Cmd {
	ctx := m.ctx
	m.setStatus(what+"…", false)
	return func() tea.Msg {
		return actionMsg{what: what, err: f(ctx)}
	}
}

// unavailable reports in the status line that an action has nothing to act on.
func (m *Model) unavailable(what string) tea.Cmd {
	m.setStatus(what+": not in this profile", true)
	return nil
}

// rebuild renders the parts of the frame; View only joins them.
func (m *Model) rebuild() {
	w, h := m.width, m.height
	m.frame.header = m.renderHeader(w)
	m.frame.tabs = m.renderTabs(w)
	bodyH := max(h-4, 1)
	if m.help {
		m.frame.body = fit(m.renderHelp(w), w, bodyH)
	} else {
		m.frame.body = fit(m.panes[m.view].render(m, w, bodyH), w, bodyH)
	}
	m.frame.status = m.renderStatus(w)
	m.frame.footer = m.renderFooter(w)
}

// View joins the cached parts of the frame.
func (m *Model) View() string {
	if m.quitting {
		return "" // leave a clean terminal behind
	}
	return m.Frame()
}

// Frame is the last frame drawn, also after quitting (for tests).
func (m *Model) Frame() string {
	f := &m.frame
	return f.header + "\n" + f.tabs + "\n" + f.body + "\n" + f.status + "\n" + f.footer
}

// fit cuts or pads s to exactly h lines no wider than w cells, so that the
// frame never scrolls and the renderer repaints only the lines that changed.
func fit(s string, w, h int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > h {
		lines = lines[:h]
	}
	for i, l := range lines {
		lines[i] = clip(l, w)
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	return strings.Join(lines, "\n")
}

// clip cuts a line to w cells, marking the cut.
func clip(l string, w int) string {
	if ansi.StringWidth(l) <= w {
		return l
	}
	return ansi.Truncate(l, w, "…")
}

func (m *Model) noteAddresses(evs []engine.Event) {
	for _, e := range evs {
		if e.Kind != engine.KindAddressAdded && e.Kind != engine.KindAddressRemoved {
			continue
		}
		k := addrKey(e.Node, fmt.Sprint(e.Fields["iface"]), fmt.Sprint(e.Fields["address"]))
		if e.Kind == engine.KindAddressRemoved {
			delete(m.added, k)
			continue
		}
		if m.added == nil {
			m.added = map[string]time.Time{}
		}
		m.added[k] = e.Time
	}
}

func addrKey(node, iface, prefix string) string { return node + "|" + iface + "|" + prefix }

// Snapshot returns the last snapshot the console drew (for tests and the
// smoke test's assertions).
func (m *Model) Snapshot() engine.Snapshot { return m.snap }

// Notice shows a message in the status line (e.g. that capture could not
// start), as an error.
func (m *Model) Notice(msg string) {
	m.setStatus(msg, true)
	m.statusAt = time.Time{}.Add(1<<63 - 1) // stays until replaced
	m.rebuild()
}
