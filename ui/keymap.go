package ui

import "github.com/charmbracelet/bubbles/key"

// keyMap holds every key binding, so the footer hints, the `?` help and the
// handlers read from one place.
type keyMap struct {
	Next, Prev, Help, Quit, Esc key.Binding
	Views                       []key.Binding

	Up, Down, PgUp, PgDown, Top, Bottom key.Binding

	// Overview.
	StartStop, Restart, Reprobe, ForceRenew key.Binding
	// Trace.
	Follow, Pause, Filter, Detail, Export, Iface, Node key.Binding
	// NAT.
	Sort, Reverse key.Binding
	// Topology.
	Flap key.Binding
	// Log.
	Kind key.Binding
}

func newKeyMap() keyMap {
	b := func(help, desc string, keys ...string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
	}
	return keyMap{
		Next: b("tab", "next view", "tab"),
		Prev: b("S-tab", "prev view", "shift+tab"),
		Help: b("?", "help", "?"),
		Quit: b("q", "quit", "q", "ctrl+c"),
		Esc:  b("esc", "back", "esc"),
		Views: []key.Binding{
			b("1", "overview", "1"), b("2", "trace", "2"), b("3", "nat", "3"),
			b("4", "leases", "4"), b("5", "topology", "5"), b("6", "log", "6"),
		},
		Up:     b("↑/k", "up", "up", "k"),
		Down:   b("↓/j", "down", "down", "j"),
		PgUp:   b("pgup", "page up", "pgup", "ctrl+u"),
		PgDown: b("pgdn", "page down", "pgdown", "ctrl+d"),
		Top:    b("g", "oldest", "home", "g"),
		Bottom: b("G", "newest", "end", "G"),

		StartStop:  b("s", "stop/start", "s"),
		Restart:    b("r", "restart", "r"),
		Reprobe:    b("p", "re-probe", "p"),
		ForceRenew: b("F", "FORCERENEW", "F"),

		Follow: b("f", "follow", "f"),
		Pause:  b("space", "pause", " ", "space"),
		Filter: b("/", "filter", "/"),
		Detail: b("enter", "detail", "enter"),
		Export: b("w", "write pcapng", "w"),
		Iface:  b("i", "interface", "i"),
		Node:   b("n", "node", "n"),

		Sort:    b("s", "sort column", "s"),
		Reverse: b("S", "reverse", "S"),

		Flap: b("l", "flap link", "l"),

		Kind: b("c", "capability", "c"),
	}
}
