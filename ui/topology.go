package ui

import (
	"context"
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/fieldcon/fieldcon/engine"
)

// topologyPane draws the cascade tree (who provisions whom, over which link
// kind), the tunnels, and the lab's links, which can be flapped from here.
type topologyPane struct {
	list sectioned
}

func (p *topologyPane) typing() bool { return false }

func (p *topologyPane) hints(m *Model) []key.Binding {
	return []key.Binding{m.keys.Up, m.keys.Down, m.keys.Flap}
}

func (p *topologyPane) key(m *Model, msg tea.KeyMsg) tea.Cmd {
	if p.list.move(&m.keys, msg) {
		return nil
	}
	if !key.Matches(msg, m.keys.Flap) {
		return nil
	}
	l, ok := p.list.selected().(LabLink)
	if !ok || m.opt.Actions.FlapLink == nil {
		return m.unavailable("flap (select a lab link; only in --lab)")
	}
	f := m.opt.Actions.FlapLink
	return m.action(fmt.Sprintf("flap %s ─ %s", l.A, l.B), func(ctx context.Context) error { return f(ctx, l) })
}

func (p *topologyPane) render(m *Model, w, h int) string {
	st := &m.st
	l := &p.list
	l.reset()

	l.line(st.Title.Render("Cascade"))
	children := map[string][]engine.CascadeRow{}
	isChild := map[string]bool{}
	any := false
	for _, n := range m.snap.Nodes {
		for _, c := range n.Cascade {
			children[n.Name] = append(children[n.Name], c)
			isChild[c.Downstream] = true
			any = true
		}
	}
	if !any {
		msg := "not in this profile (no node provisions downstream devices)"
		if hasCapability(&m.snap, "cascade") {
			msg = "no downstream device up yet"
		}
		l.line(st.Dim.Render("  " + msg))
	} else {
		for _, n := range m.snap.Nodes {
			if isChild[n.Name] || len(children[n.Name]) == 0 {
				continue
			}
			l.line("  " + st.Header.Render(n.Name) + st.Dim.Render(" "+n.Netns))
			p.tree(m, children, n.Name, "  ", map[string]bool{n.Name: true})
		}
	}

	l.line("")
	l.line(st.Title.Render("Tunnels"))
	tunnels := 0
	for _, n := range m.snap.Nodes {
		for _, t := range n.Tunnels {
			tunnels++
			l.line(fmt.Sprintf("  %s ══ #%d ══ %s  %s  %s", n.Name, t.Index, t.Endpoint,
				st.Dim.Render("virtual")+" "+t.Virtual, st.Dim.Render("heartbeat "+ago(m.now, t.LastHeartbeat))))
		}
	}
	if tunnels == 0 {
		msg := "not in this profile (no tunnel server among its nodes)"
		if hasCapability(&m.snap, "tunnel") {
			msg = "no tunnel up yet"
		}
		l.line(st.Dim.Render("  " + msg))
	}

	l.line("")
	l.line(st.Title.Render("Lab links"))
	if len(m.opt.Links) == 0 {
		l.line(st.Dim.Render("  none: running on the host's real interfaces"))
	}
	state := func(end string) string {
		up, ok := m.linkUp[end]
		switch {
		case !ok:
			return "      "
		case up:
			return st.OK.Render("up    ")
		}
		return st.Err.Render("DOWN  ")
	}
	for _, lk := range m.opt.Links {
		l.row(strings.TrimRight(fmt.Sprintf("%-18s %s─────── %-18s %s", lk.A, state(lk.A), lk.B, state(lk.B)), " "), lk)
	}
	return l.render(st, h)
}

// tree draws the downstream devices of parent, recursively; seen stops a
// loop in a misconfigured cascade from recursing forever.
func (p *topologyPane) tree(m *Model, children map[string][]engine.CascadeRow, parent, prefix string, seen map[string]bool) {
	st := &m.st
	kids := children[parent]
	for i, c := range kids {
		branch, next := "├── ", "│   "
		if i == len(kids)-1 {
			branch, next = "└── ", "    "
		}
		state := st.Warn.Render(c.State)
		if c.State == "up" {
			state = st.OK.Render(c.State)
		}
		p.list.line(fmt.Sprintf("%s%s%s  %s %s %s  %s", prefix, branch, st.Header.Render(c.Downstream),
			st.Dim.Render(c.Kind), st.Dim.Render("via "+c.Link), c.Address, state))
		if seen[c.Downstream] {
			continue
		}
		seen[c.Downstream] = true
		p.tree(m, children, c.Downstream, prefix+next, seen)
	}
}
