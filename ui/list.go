package ui

import "github.com/charmbracelet/bubbles/key"

// cursor is a selection in a list of n rows with a scroll offset that keeps
// it visible in a window of h rows.
type cursor struct {
	sel, off int
}

// move handles the list keys; it reports whether the key was one of them.
func (c *cursor) move(k *keyMap, msg interface{ String() string }, n, h int) bool {
	m := msg.String()
	switch {
	case matches(m, k.Up):
		c.sel--
	case matches(m, k.Down):
		c.sel++
	case matches(m, k.PgUp):
		c.sel -= max(h-1, 1)
	case matches(m, k.PgDown):
		c.sel += max(h-1, 1)
	case matches(m, k.Top):
		c.sel = 0
	case matches(m, k.Bottom):
		c.sel = n - 1
	default:
		return false
	}
	c.clamp(n, h)
	return true
}

// clamp keeps sel in [0,n) and the window [off, off+h) around it.
func (c *cursor) clamp(n, h int) {
	c.sel = min(max(c.sel, 0), max(n-1, 0))
	if h <= 0 {
		return
	}
	if c.sel < c.off {
		c.off = c.sel
	}
	if c.sel >= c.off+h {
		c.off = c.sel - h + 1
	}
	c.off = min(max(c.off, 0), max(n-h, 0))
}

func matches(s string, b key.Binding) bool {
	for _, k := range b.Keys() {
		if k == s {
			return true
		}
	}
	return false
}

// marker is the selection mark: visible without colour (NO_COLOR).
func marker(selected bool) string {
	if selected {
		return "▸ "
	}
	return "  "
}
