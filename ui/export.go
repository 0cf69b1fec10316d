package ui

import (
	"fmt"
	"os"
	"path/filepath"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/fieldcon/fieldcon/engine/trace"
)

// export writes what the view shows (the held packets that pass the current
// filter, node and interface selection) to a pcapng file, in the background.
func (p *tracePane) export(m *Model) tea.Cmd {
	if p.src == nil {
		return m.unavailable("write pcapng")
	}
	name := fmt.Sprintf("fieldcon-%s-%s.pcapng", m.opt.Profile, m.opt.Now().UTC().Format("20060102-150405"))
	path := filepath.Join(m.opt.ExportDir, name)
	src, f := p.src, p.compiled
	m.setStatus("writing "+path+"…", false)
	return func() tea.Msg {
		res, err := exportFile(path, src, f)
		return exportMsg{path: path, res: res, err: err}
	}
}

func exportFile(path string, src TraceSource, f *trace.Filter) (trace.ExportResult, error) {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return trace.ExportResult{}, err
	}
	res, err := src.WritePcapng(fh, f)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return res, fmt.Errorf("write %s: %w", path, err)
	}
	return res, nil
}
