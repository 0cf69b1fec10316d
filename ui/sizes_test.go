package ui

import (
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
)

// drive runs a command tree synchronously, as Bubble Tea's loop would,
// except the tick (which would wait).
func drive(m *Model, cmd tea.Cmd, depth int) {
	if cmd == nil || depth > 4 {
		return
	}
	switch msg := cmd().(type) {
	case tea.BatchMsg:
		for _, c := range msg {
			drive(m, c, depth+1)
		}
	case tickMsg, nil:
	default:
		_, next := m.Update(msg)
		drive(m, next, depth+1)
	}
}

func press(m *Model, k string) {
	var msg tea.KeyMsg
	switch k {
	case "enter":
		msg = tea.KeyMsg{Type: tea.KeyEnter}
	default:
		msg = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
	}
	_, cmd := m.Update(msg)
	drive(m, cmd, 0)
}

// TestAnySize draws every view, the help and the trace detail at sizes from
// tiny to large: the frame always has exactly the terminal's height and no
// line is wider than the terminal (so nothing scrolls or wraps).
func TestAnySize(t *testing.T) {
	sizes := [][2]int{{20, 5}, {40, 10}, {80, 24}, {100, 30}, {200, 60}}
	flows := [][]string{{"1"}, {"2"}, {"2", "k", "enter"}, {"3"}, {"4"}, {"5"}, {"6"}, {"6", "k"}, {"?"}, {"2", "/", "rhcp andd"}}
	for _, sz := range sizes {
		for _, flow := range flows {
			m := New(recordedOptions(t))
			drive(m, m.Init(), 0)
			_, cmd := m.Update(tea.WindowSizeMsg{Width: sz[0], Height: sz[1]})
			drive(m, cmd, 0)
			for _, k := range flow {
				press(m, k)
			}
			lines := strings.Split(m.Frame(), "\n")
			if len(lines) != sz[1] && sz[1] >= 5 {
				t.Errorf("%dx%d %v: %d lines", sz[0], sz[1], flow, len(lines))
			}
			for i, l := range lines {
				if w := lipgloss.Width(l); w > sz[0] {
					t.Errorf("%dx%d %v: line %d is %d wide: %q", sz[0], sz[1], flow, i, w, l)
				}
			}
		}
	}
}
