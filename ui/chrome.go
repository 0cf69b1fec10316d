package ui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/lipgloss"
)

// renderHeader: profile, node, host, lab or real interfaces, clock.
func (m *Model) renderHeader(w int) string {
	st := &m.st
	mode := st.Lab.Render("REAL IFACES")
	if m.opt.Lab {
		mode = st.Lab.Render("LAB")
	}
	node := m.ov.selectedNode(m)
	if node == "" {
		node = "-"
	}
	parts := []string{
		st.Header.Render("fieldcon"),
		st.HeaderKey.Render("profile ") + m.opt.Profile,
		st.HeaderKey.Render("node ") + node,
		st.HeaderKey.Render("host ") + m.opt.Host,
		mode,
	}
	left := strings.Join(parts, "  ")
	clock := m.now.Format("15:04:05")
	gap := w - lipgloss.Width(left) - lipgloss.Width(clock)
	if gap < 1 {
		return clip(left, w)
	}
	return left + strings.Repeat(" ", gap) + clock
}

func (m *Model) renderTabs(w int) string {
	var b strings.Builder
	for i, name := range viewNames {
		label := fmt.Sprintf("%d %s", i+1, name)
		if viewID(i) == m.view && !m.help {
			b.WriteString(m.st.TabActive.Render("[" + label + "]"))
		} else {
			b.WriteString(m.st.Tab.Render(" " + label + " "))
		}
		b.WriteByte(' ')
	}
	return clip(strings.TrimRight(b.String(), " "), w)
}

func (m *Model) renderStatus(w int) string {
	if m.status == "" {
		return ""
	}
	if m.statusErr {
		return clip(m.st.Err.Render("! "+m.status), w)
	}
	return clip(m.st.OK.Render(m.status), w)
}

// renderFooter: the current view's key hints, then the global ones, as many
// as fit; "? help" and "q quit" always stay, since a narrow terminal must
// still say how to find the rest and how to leave.
func (m *Model) renderFooter(w int) string {
	var opt, always []key.Binding
	if m.help {
		always = []key.Binding{m.keys.Esc, m.keys.Quit}
	} else {
		opt = append(m.panes[m.view].hints(m), m.keys.Next)
		always = []key.Binding{m.keys.Help, m.keys.Quit}
	}
	item := func(k key.Binding) string {
		h := k.Help()
		return m.st.Key.Render(h.Key) + " " + m.st.Dim.Render(h.Desc)
	}
	var items []string
	reserved := 0
	for _, k := range always {
		reserved += lipgloss.Width(item(k)) + 2
	}
	width := 0
	for _, k := range opt {
		it := item(k)
		iw := lipgloss.Width(it) + 2
		if width+iw+reserved > w+2 {
			break
		}
		items = append(items, it)
		width += iw
	}
	for _, k := range always {
		items = append(items, item(k))
	}
	return clip(strings.Join(items, "  "), w)
}

func (m *Model) renderHelp(w int) string {
	k := &m.keys
	sections := []struct {
		title string
		keys  []key.Binding
		note  string
	}{
		{"views", append([]key.Binding{k.Next, k.Prev}, k.Views...), ""},
		{"always", []key.Binding{k.Help, k.Esc, k.Quit}, ""},
		{"lists", []key.Binding{k.Up, k.Down, k.PgUp, k.PgDown, k.Top, k.Bottom}, ""},
		{"overview", []key.Binding{k.StartStop, k.Restart, k.Reprobe},
			"on a mechanism under the arbiter, s and r act on the arbiter"},
		{"trace", []key.Binding{k.Follow, k.Pause, k.Filter, k.Detail, k.Export, k.Node, k.Iface},
			"with the detail pane open, pgup/pgdn scroll it and esc closes it"},
		{"nat", []key.Binding{k.Sort, k.Reverse}, ""},
		{"leases", []key.Binding{k.ForceRenew, k.Reprobe}, ""},
		{"topology", []key.Binding{k.Flap}, ""},
		{"log", []key.Binding{k.Node, k.Kind, k.Filter, k.Follow}, ""},
	}
	indent := strings.Repeat(" ", 9)
	var b strings.Builder
	b.WriteString(m.st.Title.Render("Keys") + m.st.Dim.Render("  (esc or ? closes)") + "\n")
	for _, s := range sections {
		items := make([]string, len(s.keys))
		for i, kb := range s.keys {
			h := kb.Help()
			items[i] = m.st.Key.Render(h.Key) + " " + h.Desc + " "
		}
		first := m.st.Title.Render(fmt.Sprintf("%-9s", s.title))
		for _, l := range wrapItems(first, indent, items, w) {
			b.WriteString(l + "\n")
		}
		if s.note != "" {
			b.WriteString(indent + m.st.Dim.Render(s.note) + "\n")
		}
	}
	b.WriteString("\n" + m.st.Title.Render("Trace filter") + "  e.g. " + m.st.Key.Render("rhcp") + ", " +
		m.st.Key.Render("dhcp.type == ack") + ", " + m.st.Key.Render("ip.addr == 203.0.113.0/24 and not arp") + "\n")
	words := strings.Fields("protocols: eth arp ip ipv6 icmp icmpv6 udp tcp dhcp rhcp tunnel malformed truncated " +
		"fields: ip.addr ip.src ip.dst port udp.port tcp.port icmp.type len dir node iface dhcp.type dhcp.xid " +
		"dhcp.addr rhcp.type rhcp.addr rhcp.seq tunnel.index tunnel.type; == != < <= > >=; and or not ()")
	for _, l := range wrapItems("  ", "  ", words, w) {
		b.WriteString(m.st.Dim.Render(l) + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}
