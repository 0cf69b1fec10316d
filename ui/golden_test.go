package ui

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"
)

func TestMain(m *testing.M) {
	// Bubbles' text input draws with the default renderer: pin it too.
	lipgloss.SetColorProfile(termenv.Ascii)
	os.Exit(m.Run())
}

const termW, termH = 80, 24

// term is the console running as a Bubble Tea program on a fixed-size
// virtual terminal, with what it has written so far.
type term struct {
	*teatest.TestModel
	seen []byte
	mark int // output before the last keys
}

// start runs the console and waits for the first complete frame.
func start(t *testing.T, opt Options) (*term, *Model) {
	t.Helper()
	m := New(opt)
	tm := &term{TestModel: teatestModel(t, m, termW, termH)}
	t.Cleanup(func() { _ = tm.Quit() })
	waitFor(t, tm, "events")
	tm.mark = 0
	return tm, m
}

func teatestModel(t *testing.T, m *Model, w, h int) *teatest.TestModel {
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(w, h))
	t.Cleanup(func() { _ = tm.Quit() })
	return tm
}

// waitFor waits until the output since the last keys contains all of subs.
func waitFor(t *testing.T, tm *term, subs ...string) {
	t.Helper()
	base := len(tm.seen)
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool {
		tm.seen = append(tm.seen[:base], b...)
		for _, s := range subs {
			if !bytes.Contains(tm.seen[tm.mark:], []byte(s)) {
				return false
			}
		}
		return true
	}, teatest.WithDuration(5*time.Second), teatest.WithCheckInterval(5*time.Millisecond))
}

func keys(tm *term, ks ...string) {
	if len(ks) > 0 {
		tm.mark = len(tm.seen)
	}
	for _, k := range ks {
		switch k {
		case "enter":
			tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
		case "esc":
			tm.Send(tea.KeyMsg{Type: tea.KeyEsc})
		case "tab":
			tm.Send(tea.KeyMsg{Type: tea.KeyTab})
		case "up":
			tm.Send(tea.KeyMsg{Type: tea.KeyUp})
		case "pgup":
			tm.Send(tea.KeyMsg{Type: tea.KeyPgUp})
		case "down":
			tm.Send(tea.KeyMsg{Type: tea.KeyDown})
		case "space":
			tm.Send(tea.KeyMsg{Type: tea.KeySpace, Runes: []rune{' '}})
		case "backspace":
			tm.Send(tea.KeyMsg{Type: tea.KeyBackspace})
		default:
			tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)})
		}
	}
}

// finish quits with ctrl+c (which works also while a filter is typed) and
// returns the last frame drawn.
func finish(t *testing.T, tm *term) string {
	t.Helper()
	tm.Send(tea.KeyMsg{Type: tea.KeyCtrlC})
	fm := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second))
	return fm.(*Model).Frame()
}

// checkFrame compares a frame with testdata/<test name>.golden (go test
// -update rewrites it) and checks it fits the terminal.
func checkFrame(t *testing.T, frame string) {
	t.Helper()
	lines := strings.Split(frame, "\n")
	if len(lines) != termH {
		t.Errorf("frame has %d lines, want %d", len(lines), termH)
	}
	for i, l := range lines {
		if w := lipgloss.Width(l); w > termW {
			t.Errorf("line %d is %d cells wide, more than %d: %q", i+1, w, termW, l)
		}
	}
	golden.RequireEqual(t, []byte(frame))
}

// TestViewGolden draws each view of the recorded engine state at 80×24
// without colour.
func TestViewGolden(t *testing.T) {
	cases := []struct {
		name string
		keys []string
		wait []string
	}{
		{"overview", nil, []string{"address configured"}},
		{"trace", []string{"2"}, []string{"who-has"}},
		{"trace_detail", []string{"2", "up", "up", "enter"}, []string{"ESN-0001", "▾ RHCP"}},
		{"nat", []string{"3"}, []string{"TRANSLATED"}},
		{"leases", []string{"4"}, []string{"RHCP allocations"}},
		{"topology", []string{"5"}, []string{"sensor", "DOWN"}},
		{"log", []string{"6"}, []string{"nat.mapping.added"}},
		{"help", []string{"?"}, []string{"esc or ? closes"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tm, _ := start(t, recordedOptions(t))
			keys(tm, c.keys...)
			waitFor(t, tm, c.wait...)
			checkFrame(t, finish(t, tm))
		})
	}
}
