package ui

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/fieldcon/fieldcon/engine"
)

// leasesPane: addresses the engine configured (RHCP temporary/formal, hop
// addresses with lifetimes), each DHCP client's lease with T1/T2/expiry
// countdowns, the DHCP servers' leases and the RHCP servers' allocations.
type leasesPane struct {
	list sectioned
}

// serverLease is a selectable DHCP server lease: FORCERENEW goes to it.
type serverLease struct {
	node   string
	client string // the server's key for the client, for the action
	label  string // what the table shows
}

// clientLabel shows a DHCP client identifier (hex) as its text when it is
// type 0 followed by printable ASCII (RFC 2132 §9.14: type 0 is an
// identifier other than a hardware address; fieldcon's clients send their
// ESN that way), else as the hex.
func clientLabel(id string) string {
	b, err := hex.DecodeString(id)
	if err != nil || len(b) < 2 || b[0] != 0 {
		return id
	}
	for _, c := range b[1:] {
		if c < 0x21 || c > 0x7e {
			return id
		}
	}
	return string(b[1:])
}

func (p *leasesPane) typing() bool { return false }

func (p *leasesPane) hints(m *Model) []key.Binding {
	return []key.Binding{m.keys.Up, m.keys.Down, m.keys.ForceRenew, m.keys.Reprobe}
}

// allocation is a selectable RHCP allocation: re-probe goes to it.
type allocation struct {
	node, client string
}

func (p *leasesPane) key(m *Model, msg tea.KeyMsg) tea.Cmd {
	if p.list.move(&m.keys, msg) {
		return nil
	}
	if key.Matches(msg, m.keys.Reprobe) {
		a, ok := p.list.selected().(allocation)
		if !ok || m.opt.Actions.Reprobe == nil {
			return m.unavailable("re-probe (select an RHCP allocation)")
		}
		f := m.opt.Actions.Reprobe
		return m.action(fmt.Sprintf("re-probe %s from %s", a.client, a.node), func(ctx context.Context) error {
			return f(ctx, a.node, a.client)
		})
	}
	if !key.Matches(msg, m.keys.ForceRenew) {
		return nil
	}
	sl, ok := p.list.selected().(serverLease)
	if !ok || m.opt.Actions.ForceRenew == nil {
		return m.unavailable("FORCERENEW (select a DHCP server lease)")
	}
	f := m.opt.Actions.ForceRenew
	who := sl.label
	if who == "" {
		who = sl.client
	}
	return m.action(fmt.Sprintf("FORCERENEW from %s to %s", sl.node, who), func(ctx context.Context) error {
		return f(ctx, sl.node, sl.client)
	})
}

var (
	addrCols   = []column{{"NODE", 11}, {"IFACE", 8}, {"ADDRESS", 23}, {"SOURCE", 6}, {"KIND", 9}, {"PREF", -7}, {"VALID", -7}} // lifetimes left
	clientCols = []column{{"NODE", 11}, {"ADDRESS", 16}, {"SERVER", 15}, {"STATE", 8}, {"T1", -7}, {"T2", -7}, {"EXPIRES", -7}}
	serverCols = []column{{"NODE", 11}, {"ADDRESS", 15}, {"CLIENT-ID", 14}, {"MAC", 17}, {"STATE", 8}, {"EXPIRES", -7}}
	probeCols  = []column{{"NODE", 11}, {"CLIENT-ID", 19}, {"ADDRESS", 18}, {"STATE", 10}, {"SENT", -5}, {"LAST", -9}}
)

// lifetime shows what is left of an address lifetime d given when the
// address was configured at added (unknown: the lifetime itself).
func lifetime(d time.Duration, added, now time.Time) string {
	switch {
	case d == 0:
		return "forever"
	case added.IsZero():
		return short(d)
	}
	return countdown(now, added.Add(d))
}

// hasSource reports whether any node has an address from source.
func hasSource(s *engine.Snapshot, source string) bool {
	for _, n := range s.Nodes {
		for _, a := range n.Addresses {
			if a.Source == source {
				return true
			}
		}
	}
	return false
}

func (p *leasesPane) render(m *Model, w, h int) string {
	st := &m.st
	l := &p.list
	l.reset()
	now := m.now
	type section struct {
		title string
		cols  []column
		rows  func(n *engine.NodeSnapshot)
		empty string
	}
	sections := []section{
		{"Addresses", addrCols, func(n *engine.NodeSnapshot) {
			for _, a := range n.Addresses {
				kind := "formal"
				if a.Temporary {
					kind = "temporary"
				}
				at := m.added[addrKey(n.Name, a.Iface, a.Address)]
				l.row(tableLine(addrCols, []string{n.Name, a.Iface, a.Address, a.Source, kind,
					lifetime(a.Preferred, at, now), lifetime(a.Valid, at, now)}), a)
			}
		}, "no addresses configured yet"},
		{"DHCP client leases", clientCols, func(n *engine.NodeSnapshot) {
			for _, r := range n.Leases {
				if r.Role != "client" {
					continue
				}
				l.row(tableLine(clientCols, []string{n.Name, r.Address, r.Server, r.State,
					countdown(now, r.T1), countdown(now, r.T2), countdown(now, r.Expiry)}), r)
			}
		}, "not in this profile"},
		{"DHCP server leases", serverCols, func(n *engine.NodeSnapshot) {
			for _, r := range n.Leases {
				if r.Role != "server" {
					continue
				}
				// The server names clients by ClientKey: the client
				// identifier in hex, else "mac:" and the hardware address.
				id := r.ClientID
				if id == "" {
					id = "mac:" + r.MAC
				}
				label := clientLabel(r.ClientID)
				l.row(tableLine(serverCols, []string{n.Name, r.Address, label, r.MAC, r.State, countdown(now, r.Expiry)}),
					serverLease{node: n.Name, client: id, label: label})
			}
		}, "not in this profile"},
		{"RHCP allocations", probeCols, func(n *engine.NodeSnapshot) {
			for _, r := range n.Probes {
				l.row(tableLine(probeCols, []string{n.Name, r.ClientID, r.Address, r.State, fmt.Sprint(r.Sent), ago(now, r.LastSent)}),
					allocation{n.Name, r.ClientID})
			}
		}, "not in this profile"},
	}
	// Whether the profile has the capability of each section at all: a role
	// of it, or (for DHCP clients) an address that DHCP gave. RHCP+DHCP runs
	// the DHCP exchange inside rhcp_client, and dnsmasq serves leases it
	// does not report: then the section says so rather than "not in this
	// profile".
	present := []bool{false, // addresses have their own message
		hasCapability(&m.snap, "dhcp_client") || hasSource(&m.snap, "dhcp"),
		hasCapability(&m.snap, "dhcp_server") || hasCapability(&m.snap, "dnsmasq"),
		hasCapability(&m.snap, "rhcp_server")}
	for i, s := range sections {
		l.line(st.Title.Render(s.title))
		before := len(l.items)
		l.line("  " + tableHeader(st, s.cols))
		for j := range m.snap.Nodes {
			s.rows(&m.snap.Nodes[j])
		}
		if len(l.items) == before+1 {
			l.items = l.items[:before]
			msg := s.empty
			if present[i] {
				msg = "none reported yet"
			}
			l.line(st.Dim.Render("  " + msg))
		}
	}
	return l.render(st, h)
}
