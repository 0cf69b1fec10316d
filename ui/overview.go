package ui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/fieldcon/fieldcon/engine"
)

// overviewPane: every node, its roles, each mechanism's progress as steps,
// the winning mechanism, and errors with what to do.
type overviewPane struct {
	cur cursor
	// rows are the selectable (node, role) pairs of the last snapshot.
	rows []roleRef
	// lastErr is each node's newest error event, kept because a role that
	// reports and carries on leaves no trace in its status.
	lastErr map[string]string
}

type roleRef struct{ node, role string }

func (p *overviewPane) typing() bool { return false }

func (p *overviewPane) refresh(m *Model) {
	p.rows = p.rows[:0]
	for _, n := range m.snap.Nodes {
		if len(n.Roles) == 0 {
			p.rows = append(p.rows, roleRef{node: n.Name})
		}
		for _, r := range current(n.Roles) {
			p.rows = append(p.rows, roleRef{n.Name, r.Kind})
		}
	}
	p.cur.clamp(len(p.rows), 0)
}

// noteEvents keeps the newest error or conflict of each node.
func (p *overviewPane) noteEvents(evs []engine.Event) {
	for _, e := range evs {
		if e.Kind != engine.KindError && e.Kind != engine.KindConflictDetected {
			continue
		}
		if p.lastErr == nil {
			p.lastErr = map[string]string{}
		}
		msg, _ := e.Fields["message"].(string)
		if e.Kind == engine.KindConflictDetected {
			msg = "address conflict: " + eventLine(&e)
		}
		if r, ok := e.Fields["role"].(string); ok && r != "" {
			msg = r + ": " + msg
		}
		p.lastErr[e.Node] = msg
	}
}

func (p *overviewPane) selected() (roleRef, bool) {
	if p.cur.sel < len(p.rows) {
		return p.rows[p.cur.sel], true
	}
	return roleRef{}, false
}

func (p *overviewPane) selectedNode(m *Model) string {
	if r, ok := p.selected(); ok {
		return r.node
	}
	return ""
}

func (p *overviewPane) hints(m *Model) []key.Binding {
	return []key.Binding{m.keys.Up, m.keys.Down, m.keys.StartStop, m.keys.Restart, m.keys.Reprobe}
}

func (p *overviewPane) key(m *Model, msg tea.KeyMsg) tea.Cmd {
	if p.cur.move(&m.keys, msg, len(p.rows), 0) {
		return nil
	}
	sel, ok := p.selected()
	switch {
	case key.Matches(msg, m.keys.StartStop):
		a := m.opt.Actions
		if !ok || sel.role == "" || a.Stop == nil || a.Start == nil {
			return m.unavailable("stop/start")
		}
		return m.roleAction(sel, false)
	case key.Matches(msg, m.keys.Restart):
		if !ok || sel.role == "" || m.opt.Actions.Restart == nil {
			return m.unavailable("restart")
		}
		return m.roleAction(sel, true)
	case key.Matches(msg, m.keys.Reprobe):
		if !ok || sel.role != "rhcp_server" || m.opt.Actions.Reprobe == nil {
			return m.unavailable("re-probe (select an rhcp_server)")
		}
		f := m.opt.Actions.Reprobe
		return m.action(fmt.Sprintf("re-probe every client of %s", sel.node), func(ctx context.Context) error {
			return f(ctx, sel.node, "")
		})
	}
	return nil
}

// roleAction stops, starts (toggle) or restarts the selected role off the UI
// goroutine. A mechanism that the arbiter runs is not the engine's to stop
// on its own: the action goes to the arbiter, and the status line says so.
func (m *Model) roleAction(sel roleRef, restart bool) tea.Cmd {
	a := m.opt.Actions
	// What the UI knows of the node's roles, copied for the goroutine.
	status := map[string]engine.RoleStatus{}
	if n := m.snap.Node(sel.node); n != nil {
		for _, r := range current(n.Roles) {
			status[r.Kind] = m.roleStatus(sel.node, r)
		}
	}
	verb := "stop"
	switch {
	case restart:
		verb = "restart"
	case status[sel.role] == engine.StatusStopped:
		verb = "start"
	}
	m.setStatus(fmt.Sprintf("%s %s on %s…", verb, sel.role, sel.node), false)
	ctx := m.ctx
	return func() tea.Msg {
		target := sel.role
		if a.Container != nil {
			if c := a.Container(sel.node, sel.role); c != "" {
				target = c
			}
		}
		do, verb, done, after := a.Stop, "stop", "stopped", "; s starts it again"
		switch {
		case restart:
			do, verb, done, after = a.Restart, "restart", "restarted", ""
		case status[target] == engine.StatusStopped:
			do, verb, done, after = a.Start, "start", "started", ""
		}
		what := fmt.Sprintf("%s %s on %s", verb, target, sel.node)
		if err := do(ctx, sel.node, target); err != nil {
			return actionMsg{what: what, err: err}
		}
		what = fmt.Sprintf("%s %s on %s%s", done, target, sel.node, after)
		if target != sel.role {
			what = fmt.Sprintf("%s runs under the %s of %s: %s %s with every mechanism in it", sel.role, target, sel.node, done, target)
		}
		marks := []string{sel.node + "|" + target}
		if target != sel.role {
			// The container's mechanisms stop and start with it.
			for kind := range status {
				if kind != target && a.Container(sel.node, kind) == target {
					marks = append(marks, sel.node+"|"+kind)
				}
			}
		}
		return actionMsg{what: what, marks: marks, stopped: done == "stopped"}
	}
}

// roleStatus is a role's status as the overview shows it: one the keyboard
// stopped shows "stopped" also when it had finished ("done") or failed
// before, until the keyboard starts it again (nothing else starts it).
func (m *Model) roleStatus(node string, r engine.RoleSnapshot) engine.RoleStatus {
	if m.stopped[node+"|"+r.Kind] {
		return engine.StatusStopped
	}
	return r.Status
}

func (p *overviewPane) render(m *Model, w, h int) string {
	st := &m.st
	if len(m.snap.Nodes) == 0 {
		return st.Dim.Render("waiting for the engine…")
	}
	var lines []string
	selLine := 0
	row := 0
	running, failed, stopped := 0, 0, 0
	for _, n := range m.snap.Nodes {
		lines = append(lines, p.nodeLine(m, &n, w))
		if len(n.Roles) == 0 {
			if row == p.cur.sel {
				selLine = len(lines) - 1
			}
			row++
			lines = append(lines, st.Dim.Render("    no roles"))
		}
		for _, r := range current(n.Roles) {
			r.Status = m.roleStatus(n.Name, r)
			switch r.Status {
			case engine.StatusRunning:
				running++
			case engine.StatusFailed:
				failed++
			case engine.StatusStopped:
				stopped++
			}
			if row == p.cur.sel {
				selLine = len(lines)
			}
			lines = append(lines, roleLines(st, r, row == p.cur.sel, w)...)
			row++
		}
		if msg, ok := p.lastErr[n.Name]; ok && !roleSays(n.Roles, msg) {
			lines = append(lines, errorLines(st, msg, w)...)
		}
	}
	sum := fmt.Sprintf("%d nodes  %d roles running  %d failed  %d events",
		len(m.snap.Nodes), running, failed, m.events.total)
	if stopped > 0 {
		sum = strings.Replace(sum, "failed", fmt.Sprintf("failed  %d stopped", stopped), 1)
	}
	if failed > 0 {
		sum = st.Err.Render(sum)
	}
	// Keep the selected role in view: scroll by lines, not rows, since a
	// role can take several lines.
	bodyH := h - 2
	off := 0
	if selLine >= bodyH {
		off = selLine - bodyH + 2
	}
	lines = lines[min(off, len(lines)):]
	return sum + "\n\n" + strings.Join(lines, "\n")
}

// current drops a role row when a later row has the same kind: a container
// restarted in place may still report its mechanisms' earlier runs, and
// the newest run is the one that acts (actions name roles by kind).
func current(roles []engine.RoleSnapshot) []engine.RoleSnapshot {
	last := make(map[string]int, len(roles))
	for i, r := range roles {
		last[r.Kind] = i
	}
	if len(last) == len(roles) {
		return roles
	}
	out := make([]engine.RoleSnapshot, 0, len(last))
	for i, r := range roles {
		if last[r.Kind] == i {
			out = append(out, r)
		}
	}
	return out
}

// roleSays reports whether a role's own error already shows msg.
func roleSays(roles []engine.RoleSnapshot, msg string) bool {
	for _, r := range roles {
		if r.Error != "" && strings.HasSuffix(msg, r.Error) {
			return true
		}
	}
	return false
}

func (p *overviewPane) nodeLine(m *Model, n *engine.NodeSnapshot, w int) string {
	st := &m.st
	s := st.Title.Render(n.Name)
	if n.Netns != "" {
		s += st.Dim.Render(" (" + n.Netns + ")")
	}
	// A stopped arbiter still names the mechanism that won before; its
	// address is undone, so there is no winner to show.
	if n.Winner != "" && !m.stopped[n.Name+"|arbiter"] {
		s += "  " + st.OK.Render("winner "+n.Winner)
	}
	for _, a := range n.Addresses {
		s += "  " + a.Address + st.Dim.Render(" "+a.Iface+"/"+a.Source)
	}
	return s
}

// roleLines draws a role and its steps, wrapped under the status column.
func roleLines(st *Styles, r engine.RoleSnapshot, selected bool, w int) []string {
	name := fmt.Sprintf("%s%-14s %-8s ", marker(selected), r.Kind, r.Status)
	if selected {
		name = st.Selected.Render(name)
	} else {
		name = "  " + statusStyle(st, r.Status).Render(name[2:])
	}
	indent := strings.Repeat(" ", 2+15+9)
	var steps []string
	for i, s := range r.Steps {
		item := "· " + s.Name
		if s.Done {
			item = st.OK.Render("✓ " + s.Name)
		} else {
			item = st.Dim.Render(item)
		}
		if i < len(r.Steps)-1 {
			item += st.Dim.Render(" →")
		}
		steps = append(steps, item)
	}
	lines := wrapItems(name, indent, steps, w)
	if selected {
		lines = append(lines, timeline(st, r.Steps, indent, w)...)
	}
	if r.Error != "" {
		lines = append(lines, errorLines(st, r.Error, w)...)
	}
	return lines
}

// timeline shows when each step of the selected role was reached, from the
// first: how long the probe took to arrive, how long DHCP took after it.
func timeline(st *Styles, steps []engine.Step, indent string, w int) []string {
	var base time.Time
	var items []string
	for _, s := range steps {
		if !s.Done || s.At.IsZero() {
			continue
		}
		if base.IsZero() {
			base = s.At
			items = append(items, st.Dim.Render(s.Name+" "+s.At.Format("15:04:05.000")))
			continue
		}
		items = append(items, st.Dim.Render(fmt.Sprintf("· %s +%s", s.Name, s.At.Sub(base).Round(time.Millisecond))))
	}
	if len(items) < 2 {
		return nil
	}
	return wrapItems(indent+st.Dim.Render("at")+" ", indent+"   ", items, w)
}

func statusStyle(st *Styles, s engine.RoleStatus) lipgloss.Style {
	switch s {
	case engine.StatusRunning, engine.StatusDone:
		return st.OK
	case engine.StatusFailed:
		return st.Err
	case engine.StatusStopped:
		return st.Dim
	}
	return st.Warn
}

// wrapItems lays items out after first, continuing on lines starting with
// indent when the width runs out.
func wrapItems(first, indent string, items []string, w int) []string {
	var lines []string
	line := first
	lw := lipgloss.Width(line)
	fresh := true
	for _, it := range items {
		iw := lipgloss.Width(it)
		if !fresh && lw+1+iw > w {
			lines = append(lines, line)
			line, lw, fresh = indent, len(indent), true
		}
		if !fresh {
			line += " "
			lw++
		}
		line += it
		lw += iw
		fresh = false
	}
	return append(lines, line)
}

// errorLines shows an error and, when the message matches a known cause,
// what to do about it.
func errorLines(st *Styles, msg string, w int) []string {
	out := []string{"    " + st.Err.Render("! "+msg)}
	if hint := remedy(msg); hint != "" {
		out = append(out, "      "+st.Warn.Render("→ "+hint))
	}
	return out
}

// remedies map what a kernel or protocol error says to what a person can do
// about it, for messages that do not already say.
var remedies = []struct{ match, hint string }{
	{"operation not permitted", "run as root (sudo fieldcon) or grant CAP_NET_ADMIN and CAP_NET_RAW"},
	{"permission denied", "run as root (sudo fieldcon) or grant CAP_NET_ADMIN and CAP_NET_RAW"},
	{"no such device", "check the interface name in the profile against `ip link`"},
	{"does not exist", "check the interface name in the profile against `ip link`"},
	{"address already in use", "another program holds the port: find it with `ss -lunp` and stop it"},
	{"file exists", "the address or route is already there: remove it or drop it from the profile"},
	{"authentic", "check that the site key file in the profile matches the server's"},
	{"conflict", "another host uses this address: find it with `ip neigh` / arping and re-address one"},
	{"timeout", "check the link is up and the peer is reachable (Trace view, `2`)"},
	{"network is unreachable", "add a route toward the server, or check the uplink address"},
}

func remedy(msg string) string {
	l := strings.ToLower(msg)
	if strings.Contains(l, "→") || strings.Contains(l, " try ") || strings.Contains(l, "run ") {
		return "" // the message already says what to do
	}
	for _, r := range remedies {
		if strings.Contains(l, r.match) {
			return r.hint
		}
	}
	return ""
}
