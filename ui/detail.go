package ui

import (
	"fmt"
	"strings"
	"time"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/trace"
)

// detailLines draws the detail pane of one packet from the trace package's
// dissection: where and when it was captured, the layer tree (lower layers
// folded to one line each, the topmost protocol unfolded, as a protocol
// analyser opens it), then the bytes.
func detailLines(s *trace.Summary, d trace.Detail, ifs []trace.Interface) []string {
	where := fmt.Sprintf("if%d", s.Iface)
	if int(s.Iface) < len(ifs) {
		where = ifs[s.Iface].String()
	}
	out := []string{fmt.Sprintf("#%d  %s  %s  %s  %d bytes on wire, %d captured",
		s.Seq, time.Unix(0, s.Time).UTC().Format("15:04:05.000000"), where, engine.Direction(s.Dir), s.Len, s.CapLen)}
	top := len(d.Layers) - 1
	if top > 0 && d.Layers[top].Name == "Payload" {
		top--
	}
	for i, l := range d.Layers {
		if i != top {
			parts := make([]string, len(l.Fields))
			for j, f := range l.Fields {
				parts[j] = f[0] + " " + f[1]
			}
			out = append(out, "▸ "+l.Name+"  "+strings.Join(parts, ", "))
			continue
		}
		out = append(out, "▾ "+l.Name)
		for _, f := range l.Fields {
			out = append(out, fmt.Sprintf("    %-14s %s", f[0], f[1]))
		}
	}
	if d.Err != "" {
		out = append(out, "! decoding stopped: "+d.Err)
	}
	out = append(out, "")
	return append(out, strings.Split(strings.TrimRight(d.Hex, "\n"), "\n")...)
}
