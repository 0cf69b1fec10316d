package ui

import (
	"fmt"
	"slices"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/fieldcon/fieldcon/engine"
)

// logPane is the event stream, filterable by node, capability and text. It
// keeps the numbers of the matching events and extends them as events come,
// so a long log costs nothing per frame.
type logPane struct {
	node, capab string
	text        string
	input       textinput.Model
	editing     bool

	follow  bool
	cur     cursor
	matches []uint64 // absolute event numbers that pass the filter
	scanned uint64   // events examined so far
}

func (p *logPane) typing() bool { return p.editing }

func (p *logPane) hints(m *Model) []key.Binding {
	if p.editing {
		return []key.Binding{key.NewBinding(key.WithHelp("enter", "apply")), m.keys.Esc}
	}
	return []key.Binding{m.keys.Node, m.keys.Kind, m.keys.Filter, m.keys.Follow}
}

func (p *logPane) pass(e *engine.Event) bool {
	if p.node != "" && e.Node != p.node {
		return false
	}
	if p.capab != "" && capability(e.Kind) != p.capab {
		return false
	}
	if p.text != "" && !strings.Contains(strings.ToLower(e.Kind+" "+eventLine(e)), p.text) {
		return false
	}
	return true
}

// refresh examines the events added since the last call.
func (p *logPane) refresh(m *Model) {
	r := m.events
	first := r.total - uint64(r.n)
	if p.scanned < first {
		p.scanned = first
	}
	for ; p.scanned < r.total; p.scanned++ {
		if p.pass(r.at(int(p.scanned - first))) {
			p.matches = append(p.matches, p.scanned)
		}
	}
	// Forget matches the ring has overwritten.
	drop := 0
	for drop < len(p.matches) && p.matches[drop] < first {
		drop++
	}
	if drop > 0 {
		p.matches = slices.Delete(p.matches, 0, drop)
		p.cur.sel = max(p.cur.sel-drop, 0)
	}
}

func (p *logPane) rescan(m *Model) {
	p.matches = p.matches[:0]
	p.scanned = 0
	p.refresh(m)
	p.follow = true
}

// cycle returns the value after cur in all ("" = all, first).
func cycle(all []string, cur string) string {
	all = append([]string{""}, all...)
	i := slices.Index(all, cur)
	return all[(i+1)%len(all)]
}

func (p *logPane) key(m *Model, msg tea.KeyMsg) tea.Cmd {
	if p.editing {
		switch msg.String() {
		case "enter":
			p.editing = false
			p.text = strings.ToLower(strings.TrimSpace(p.input.Value()))
			p.rescan(m)
		case "esc":
			p.editing = false
			p.input.SetValue(p.text)
		default:
			var cmd tea.Cmd
			p.input, cmd = p.input.Update(msg)
			return cmd
		}
		return nil
	}
	switch {
	case key.Matches(msg, m.keys.Node):
		var names []string
		for _, n := range m.snap.Nodes {
			names = append(names, n.Name)
		}
		p.node = cycle(names, p.node)
		p.rescan(m)
	case key.Matches(msg, m.keys.Kind):
		caps := map[string]bool{}
		for i := 0; i < m.events.len(); i++ {
			caps[capability(m.events.at(i).Kind)] = true
		}
		var list []string
		for c := range caps {
			list = append(list, c)
		}
		slices.Sort(list)
		p.capab = cycle(list, p.capab)
		p.rescan(m)
	case key.Matches(msg, m.keys.Filter):
		p.input = textinput.New()
		p.input.Prompt = "/"
		p.input.SetValue(p.text)
		p.input.Focus()
		p.editing = true
		return textinput.Blink
	case key.Matches(msg, m.keys.Follow):
		p.follow = !p.follow
	case key.Matches(msg, m.keys.Esc):
		p.node, p.capab, p.text = "", "", ""
		p.rescan(m)
	default:
		if p.cur.move(&m.keys, msg, len(p.matches), 0) {
			p.follow = p.cur.sel == len(p.matches)-1
		}
	}
	return nil
}

func (p *logPane) render(m *Model, w, h int) string {
	st := &m.st
	r := m.events
	first := r.total - uint64(r.n)
	listH := max(h-1, 1)
	if p.follow {
		p.cur.sel = len(p.matches) - 1
	}
	p.cur.clamp(len(p.matches), listH)

	filter := fmt.Sprintf("node %s  capability %s  text %q", orAll(p.node), orAll(p.capab), p.text)
	if p.editing {
		filter = p.input.View()
	}
	mode := "paused"
	if p.follow {
		mode = "follow"
	}
	head := fmt.Sprintf("%s %d/%d  %s  %s", st.Title.Render("Log"), len(p.matches), r.total, st.Dim.Render(filter), st.Dim.Render(mode))
	if r.dropped > 0 {
		head += st.Warn.Render(fmt.Sprintf("  %d dropped", r.dropped))
	}
	// The node column is as wide as the longest node name (within reason).
	nodeW := 6
	for _, n := range m.snap.Nodes {
		nodeW = max(nodeW, min(len(n.Name), 14))
	}
	lines := []string{head}
	// A selected event is shown in full below the list: lines are cut at
	// the terminal's width, and the cut part is often what matters.
	var full []string
	if !p.follow && p.cur.sel < len(p.matches) && len(p.matches) > 0 {
		e := r.at(int(p.matches[p.cur.sel] - first))
		full = wrapItems(st.Dim.Render("── ")+e.Time.Format("15:04:05.000000")+" "+e.Node+" "+e.Kind+" ", "   ",
			strings.Fields(eventLine(e)), w)
		listH = max(listH-len(full), 1)
		p.cur.clamp(len(p.matches), listH)
	}
	for i := p.cur.off; i < len(p.matches) && i < p.cur.off+listH; i++ {
		e := r.at(int(p.matches[i] - first))
		kind := e.Kind
		ks := st.Dim
		if e.Kind == engine.KindError || e.Kind == engine.KindConflictDetected {
			ks = st.Err
		}
		line := fmt.Sprintf("%s %-*s %s %s", e.Time.Format("15:04:05.000"), nodeW, e.Node, ks.Render(fmt.Sprintf("%-22s", kind)), eventLine(e))
		if i == p.cur.sel && !p.follow {
			line = st.Selected.Render(clip(marker(true)+line, w))
		} else {
			line = marker(false) + line
		}
		lines = append(lines, line)
	}
	if len(p.matches) == 0 {
		lines = append(lines, st.Dim.Render("  no events match"))
	}
	if full != nil {
		for len(lines) < listH+1 {
			lines = append(lines, "")
		}
		lines = append(lines, full...)
	}
	return strings.Join(lines, "\n")
}

func orAll(s string) string {
	if s == "" {
		return "all"
	}
	return s
}
