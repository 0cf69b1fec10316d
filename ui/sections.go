package ui

import (
	"fmt"
	"strings"
	"time"
)

// item is one line of a sectioned list; rows with a ref can be selected.
type item struct {
	text string
	ref  any
}

// sectioned is a scrolling list of headings and rows where the cursor moves
// over the selectable rows only (leases, topology).
type sectioned struct {
	items []item
	sel   int // index among selectable rows
	off   int // first line shown
}

func (s *sectioned) reset() { s.items = s.items[:0] }

func (s *sectioned) line(text string) { s.items = append(s.items, item{text: text}) }

func (s *sectioned) row(text string, ref any) { s.items = append(s.items, item{text, ref}) }

func (s *sectioned) selectable() int {
	n := 0
	for _, it := range s.items {
		if it.ref != nil {
			n++
		}
	}
	return n
}

// selected returns the ref of the selected row, or nil.
func (s *sectioned) selected() any {
	i := 0
	for _, it := range s.items {
		if it.ref == nil {
			continue
		}
		if i == s.sel {
			return it.ref
		}
		i++
	}
	return nil
}

// render draws h lines, marking the selected row and keeping it in view.
func (s *sectioned) render(st *Styles, h int) string {
	s.sel = min(max(s.sel, 0), max(s.selectable()-1, 0))
	lines := make([]string, len(s.items))
	selLine, r := -1, 0
	for i, it := range s.items {
		if it.ref == nil {
			lines[i] = it.text
			continue
		}
		if r == s.sel {
			selLine = i
			lines[i] = st.Selected.Render(marker(true) + it.text)
		} else {
			lines[i] = marker(false) + it.text
		}
		r++
	}
	if selLine >= 0 {
		if selLine < s.off {
			s.off = max(selLine-1, 0) // keep the section heading above when possible
		}
		if selLine >= s.off+h {
			s.off = selLine - h + 1
		}
	}
	s.off = min(max(s.off, 0), max(len(lines)-h, 0))
	return strings.Join(lines[s.off:], "\n")
}

func (s *sectioned) move(k *keyMap, msg interface{ String() string }) bool {
	c := cursor{sel: s.sel}
	n := s.selectable()
	if !c.move(k, msg, n, 0) {
		return false
	}
	s.sel = c.sel
	return true
}

// countdown says how long until t: "in 1m30s", "passed 5s ago", "-" when unset.
func countdown(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	if d < 0 {
		return "-" + short(-d)
	}
	return short(d)
}

// ago says how long since t: "4s ago", "-" when unset.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return short(now.Sub(t).Round(time.Second)) + " ago"
}

// short writes a duration the way engineers read timers: 45s, 3m05s, 2h01m, 3d4h.
func short(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}
