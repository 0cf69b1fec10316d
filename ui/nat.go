package ui

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/fieldcon/fieldcon/engine"
)

// natPane: the tunnel server's NAT table (conntrack joined with the tunnel
// index), live, sortable by column, with counters; and the tunnel index table.
type natPane struct {
	cur     cursor
	sortCol int
	desc    bool

	// What refresh built from the snapshot, so that drawing a frame only
	// slices it: the mappings sorted for the terminal's width, their
	// totals, and the tunnel servers' index rows.
	rows           []natRow
	fields         []natField
	po, bo, pi, bi uint64
	tunnels        []engine.TunnelRow
	capable        bool // some node runs a tunnel role
}

// natWide is the width from which the NAT table shows every column.
const natWide = 132

type natRow struct {
	node string
	engine.MappingRow
}

// natField is one column of the NAT table: header, cell and order.
type natField struct {
	column
	cell func(r *natRow) string
	cmp  func(a, b *natRow) int
}

func cmpU64(f func(r *natRow) uint64) func(a, b *natRow) int {
	return func(a, b *natRow) int { return cmp.Compare(f(a), f(b)) }
}

func natFields(wide bool) []natField {
	addr := 18
	if wide {
		addr = 21
	}
	pktOut := func(r *natRow) uint64 { return r.PacketsOut }
	pktIn := func(r *natRow) uint64 { return r.PacketsIn }
	byteOut := func(r *natRow) uint64 { return r.BytesOut }
	byteIn := func(r *natRow) uint64 { return r.BytesIn }
	// Tunnel indexes are random 32-bit numbers (up to 10 digits).
	idx := natField{column{"IDX", -10}, func(r *natRow) string { return fmt.Sprint(r.TunnelIndex) },
		func(a, b *natRow) int { return cmp.Compare(a.TunnelIndex, b.TunnelIndex) }}
	prot := natField{column{"PROT", 4}, func(r *natRow) string { return r.Protocol },
		func(a, b *natRow) int { return cmp.Compare(a.Protocol, b.Protocol) }}
	addrs := []natField{
		{column{"VIRTUAL", addr}, func(r *natRow) string { return r.Virtual },
			func(a, b *natRow) int { return cmpAddrPort(a.Virtual, b.Virtual) }},
		{column{"TRANSLATED", addr}, func(r *natRow) string { return r.Translated },
			func(a, b *natRow) int { return cmpAddrPort(a.Translated, b.Translated) }},
		{column{"DESTINATION", addr}, func(r *natRow) string { return r.Destination },
			func(a, b *natRow) int { return cmpAddrPort(a.Destination, b.Destination) }},
	}
	if !wide {
		// 80 columns: one packet column, both directions summed.
		fs := append(append([]natField{idx}, addrs...), prot)
		return append(fs, natField{column{"PKTS", -5}, func(r *natRow) string { return si(r.PacketsOut + r.PacketsIn) },
			cmpU64(func(r *natRow) uint64 { return r.PacketsOut + r.PacketsIn })})
	}
	fs := append([]natField{idx, prot}, addrs...)
	return append([]natField{{column{"NODE", 8}, func(r *natRow) string { return r.node },
		func(a, b *natRow) int { return cmp.Compare(a.node, b.node) }}}, append(fs,
		natField{column{"STATE", 11}, func(r *natRow) string { return r.State },
			func(a, b *natRow) int { return cmp.Compare(a.State, b.State) }},
		natField{column{"PKT↑", -6}, func(r *natRow) string { return si(r.PacketsOut) }, cmpU64(pktOut)},
		natField{column{"BYTE↑", -6}, func(r *natRow) string { return si(r.BytesOut) }, cmpU64(byteOut)},
		natField{column{"PKT↓", -6}, func(r *natRow) string { return si(r.PacketsIn) }, cmpU64(pktIn)},
		natField{column{"BYTE↓", -6}, func(r *natRow) string { return si(r.BytesIn) }, cmpU64(byteIn)},
	)...)
}

// cmpAddrPort orders "addr:port" strings numerically when they parse.
func cmpAddrPort(a, b string) int {
	pa, ea := netip.ParseAddrPort(a)
	pb, eb := netip.ParseAddrPort(b)
	if ea != nil || eb != nil {
		return cmp.Compare(a, b)
	}
	return pa.Compare(pb)
}

func (p *natPane) typing() bool { return false }

func (p *natPane) hints(m *Model) []key.Binding {
	return []key.Binding{m.keys.Up, m.keys.Down, m.keys.Sort, m.keys.Reverse}
}

func (p *natPane) key(m *Model, msg tea.KeyMsg) tea.Cmd {
	switch {
	case key.Matches(msg, m.keys.Sort):
		p.sortCol = (p.sortCol + 1) % len(natFields(m.width >= natWide))
		p.refresh(m)
	case key.Matches(msg, m.keys.Reverse):
		p.desc = !p.desc
		p.refresh(m)
	default:
		p.cur.move(&m.keys, msg, len(p.rows), 0)
	}
	return nil
}

// hasCapability reports whether any node runs a role of the capability
// (role kinds start with the capability: "tunnel_server", "rhcp_client").
func hasCapability(s *engine.Snapshot, prefix string) bool {
	for _, n := range s.Nodes {
		for _, r := range n.Roles {
			if strings.HasPrefix(r.Kind, prefix) {
				return true
			}
		}
	}
	return false
}

// refresh rebuilds the rows from the snapshot and sorts them: on every
// snapshot, on a new sort order and when the terminal is resized (the
// columns, and so the sort keys, depend on its width).
func (p *natPane) refresh(m *Model) {
	p.rows, p.tunnels = p.rows[:0], p.tunnels[:0]
	for i := range m.snap.Nodes {
		n := &m.snap.Nodes[i]
		for _, r := range n.Mappings {
			p.rows = append(p.rows, natRow{n.Name, r})
		}
		// The tunnel index table is the server's; a client's own row (its
		// tunnel as it sees it) would list the same tunnel twice.
		if runsTunnelServer(n) {
			p.tunnels = append(p.tunnels, n.Tunnels...)
		}
	}
	p.capable = hasCapability(&m.snap, "tunnel")
	p.fields = natFields(m.width >= natWide)
	p.sortCol %= len(p.fields)
	by := p.fields[p.sortCol].cmp
	slices.SortStableFunc(p.rows, func(a, b natRow) int {
		if p.desc {
			return by(&b, &a)
		}
		return by(&a, &b)
	})
	p.po, p.bo, p.pi, p.bi = 0, 0, 0, 0
	for _, r := range p.rows {
		p.po, p.bo, p.pi, p.bi = p.po+r.PacketsOut, p.bo+r.BytesOut, p.pi+r.PacketsIn, p.bi+r.BytesIn
	}
}

func (p *natPane) render(m *Model, w, h int) string {
	st := &m.st
	tunnels := len(p.tunnels)
	if len(p.rows) == 0 && tunnels == 0 && !p.capable {
		return st.Dim.Render("NAT: not in this profile (no tunnel server among its nodes)")
	}
	fields := p.fields
	cols := make([]column, len(fields))
	for i, f := range fields {
		cols[i] = f.column
	}
	dir := "↑"
	if p.desc {
		dir = "↓"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %d mappings  %d tunnels  out %sp %sB  in %sp %sB  %s\n",
		st.Title.Render("NAT"), len(p.rows), tunnels, si(p.po), si(p.bo), si(p.pi), si(p.bi),
		st.Dim.Render("sort "+fields[p.sortCol].title+" "+dir))
	b.WriteString("  " + tableHeader(st, cols) + "\n")
	tunH := 0
	if tunnels > 0 {
		tunH = min(tunnels, tunnelRowsShown) + 2
	}
	listH := max(h-2-tunH, 1)
	p.cur.clamp(len(p.rows), listH)
	for i := p.cur.off; i < len(p.rows) && i < p.cur.off+listH; i++ {
		r := &p.rows[i]
		cells := make([]string, len(fields))
		for j, f := range fields {
			cells[j] = f.cell(r)
		}
		line := marker(i == p.cur.sel) + tableLine(cols, cells)
		if i == p.cur.sel {
			line = st.Selected.Render(line)
		}
		b.WriteString(line + "\n")
	}
	if len(p.rows) == 0 {
		b.WriteString(st.Dim.Render("  no mappings yet: they appear when tunnel traffic crosses the server") + "\n")
	}
	if tunnels > 0 {
		b.WriteString(p.tunnelTable(m))
	}
	return b.String()
}

var tunnelCols = []column{{"IDX", -10}, {"ENDPOINT (as seen)", 21}, {"VIRTUAL", 15}, {"HEARTBEAT", 9}, {"PKT↓", -5}, {"PKT↑", -5}, {"BYTES", -6}}

func (p *natPane) tunnelTable(m *Model) string {
	st := &m.st
	var b strings.Builder
	b.WriteString("\n  " + tableHeader(st, tunnelCols) + "\n")
	rows := p.tunnels
	for i, t := range rows {
		if i == tunnelRowsShown-1 && len(rows) > tunnelRowsShown {
			b.WriteString(st.Dim.Render(fmt.Sprintf("  … %d more tunnels (fieldcon nat lists them all)", len(rows)-i)) + "\n")
			break
		}
		b.WriteString("  " + tableLine(tunnelCols, []string{
			fmt.Sprint(t.Index), t.Endpoint, t.Virtual, ago(m.now, t.LastHeartbeat),
			si(t.PacketsIn), si(t.PacketsOut), si(t.BytesIn + t.BytesOut),
		}) + "\n")
	}
	return b.String()
}

// tunnelRowsShown is how many tunnel index rows fit under the NAT table.
const tunnelRowsShown = 5

// runsTunnelServer reports whether the node keeps a tunnel index table.
func runsTunnelServer(n *engine.NodeSnapshot) bool {
	for _, r := range n.Roles {
		if r.Kind == "tunnel_server" {
			return true
		}
	}
	return false
}
