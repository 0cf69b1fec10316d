package ui

import "github.com/charmbracelet/lipgloss"

// Styles are every look the console uses, built once from one renderer so
// that NO_COLOR (termenv's Ascii profile) and tests' fixed profile apply to
// all of them. Nothing in the console depends on colour alone: the selected
// row also carries a "▸" marker and states are spelled out, so the console
// reads the same on a monochrome terminal.
type Styles struct {
	Header    lipgloss.Style
	HeaderKey lipgloss.Style
	Lab       lipgloss.Style
	Tab       lipgloss.Style
	TabActive lipgloss.Style
	Title     lipgloss.Style
	Dim       lipgloss.Style
	OK        lipgloss.Style
	Warn      lipgloss.Style
	Err       lipgloss.Style
	Selected  lipgloss.Style
	Key       lipgloss.Style
	Input     lipgloss.Style
}

// NewStyles returns the console's styles for r (nil: lipgloss's default
// renderer, which follows the terminal and NO_COLOR).
func NewStyles(r *lipgloss.Renderer) Styles {
	if r == nil {
		r = lipgloss.DefaultRenderer()
	}
	s := r.NewStyle
	accent := lipgloss.AdaptiveColor{Light: "25", Dark: "75"}
	return Styles{
		Header:    s().Bold(true),
		HeaderKey: s().Foreground(lipgloss.AdaptiveColor{Light: "242", Dark: "246"}),
		Lab:       s().Bold(true).Foreground(lipgloss.AdaptiveColor{Light: "130", Dark: "214"}),
		Tab:       s().Foreground(lipgloss.AdaptiveColor{Light: "242", Dark: "246"}),
		TabActive: s().Bold(true).Underline(true).Foreground(accent),
		Title:     s().Bold(true).Foreground(accent),
		Dim:       s().Foreground(lipgloss.AdaptiveColor{Light: "245", Dark: "243"}),
		OK:        s().Foreground(lipgloss.AdaptiveColor{Light: "28", Dark: "78"}),
		Warn:      s().Foreground(lipgloss.AdaptiveColor{Light: "130", Dark: "214"}),
		Err:       s().Bold(true).Foreground(lipgloss.AdaptiveColor{Light: "160", Dark: "203"}),
		Selected:  s().Reverse(true),
		Key:       s().Bold(true),
		Input:     s().Underline(true),
	}
}
