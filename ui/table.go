package ui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/lipgloss"
)

// column of a text table: a header and a width (negative: right-aligned).
type column struct {
	title string
	width int
}

// tableLine lays cells out in columns, cutting cells that do not fit.
func tableLine(cols []column, cells []string) string {
	var b strings.Builder
	for i, c := range cols {
		v := ""
		if i < len(cells) {
			v = cells[i]
		}
		w := c.width
		right := w < 0
		if right {
			w = -w
		}
		if lipgloss.Width(v) > w {
			v = clip(v, w)
		}
		pad := strings.Repeat(" ", w-lipgloss.Width(v))
		if right {
			b.WriteString(pad + v)
		} else {
			b.WriteString(v + pad)
		}
		if i < len(cols)-1 {
			b.WriteByte(' ')
		}
	}
	return strings.TrimRight(b.String(), " ")
}

func tableHeader(st *Styles, cols []column) string {
	titles := make([]string, len(cols))
	for i, c := range cols {
		titles[i] = c.title
	}
	return st.Dim.Render(tableLine(cols, titles))
}

// si formats a counter compactly: 1234567 → "1.2M".
func si(n uint64) string {
	switch {
	case n >= 10_000_000_000:
		return fmt.Sprintf("%dG", n/1_000_000_000)
	case n >= 1_000_000_000:
		return fmt.Sprintf("%.1fG", float64(n)/1e9)
	case n >= 10_000_000:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 100_000:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
