package profiles

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestWrongKindInTextFieldHasPosition (issue #13 item 12): a number, a
// boolean or a date where an address, a prefix, a link end, an address:port
// or a duration belongs is refused with the value's file:line:col, as every
// other problem is. go-toml hands such a value's raw text to UnmarshalText
// and returned its error with no position.
func TestWrongKindInTextFieldHasPosition(t *testing.T) {
	node := "[[node]]\nname = \"d\"\n"
	for _, tt := range []struct {
		name, src, value, key, want string
	}{
		{"route via", node + "[node.static]\nroutes = [{ dst = \"192.0.2.0/24\", via = 5 }]\n", "5", "node.static.routes.via", "IP address"},
		{"route dst", node + "[node.static]\nroutes = [{ dst = 1.5, dev = \"eth0\" }]\n", "1.5", "node.static.routes.dst", "prefix length"},
		{"static address bool", node + "[node.static]\naddresses = [{ iface = \"eth0\", address = true }]\n", "true", "node.static.addresses.address", "prefix length"},
		{"link end", node + "[lab]\n[[lab.link]]\na = 5\nb = \"d:eth0\"\n", "5", "lab.link.a", "node:iface"},
		{"tunnel server", node + "[node.tunnel_client]\nserver = 4500\n", "4500", "node.tunnel_client.server", "address and port"},
		{"tunnel listen date", node + "[node.tunnel_server]\nlisten = 2026-12-04\n", "2026-12-04", "node.tunnel_server.listen", "address and port"},
		{"duration", node + "[node.dhcp_server]\nifaces = [\"eth0\"]\nlease_time = 3600\n", "3600", "node.dhcp_server.lease_time", "unit"},
		{"array element", node + "[node.tunnel_client]\nroutes = [\"192.0.2.0/24\", 7]\n", "7", "node.tunnel_client.routes", "prefix length"},
		{"dotted key", node + "static.routes = [{ dst = \"192.0.2.0/24\", via = false }]\n", "false", "node.static.routes.via", "IP address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(tt.src))
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("Parse: %v; want Problems", err)
			}
			line, col := positionOf(tt.src, tt.value)
			p := ps[0]
			if p.Line != line || p.Col != col {
				t.Errorf("problem %q at %d:%d; want %d:%d, the value %s", p.Error(), p.Line, p.Col, line, col, tt.value)
			}
			if !strings.HasPrefix(p.Error(), fmt.Sprintf("x.toml:%d:%d: %s: this is ", line, col, tt.key)) || !strings.Contains(p.Msg, tt.want) {
				t.Errorf("problem %q; want it to name %s, what it holds and %q", p.Error(), tt.key, tt.want)
			}
		})
	}
}

// positionOf is the 1-based line and byte column of the last occurrence of
// value in src.
func positionOf(src, value string) (line, col int) {
	i := strings.LastIndex(src, value)
	line = strings.Count(src[:i], "\n") + 1
	return line, i - strings.LastIndex(src[:i], "\n")
}

// TestRepeatedProblemsAreCapped: a long array wrong in one way is reported
// maxRepeats times, then once more with how many were left out, not once
// per element.
func TestRepeatedProblemsAreCapped(t *testing.T) {
	src := "[[node]]\nname = \"d\"\nmechanisms = [" + strings.Repeat(`"rhcp", `, 1000) + "]\n"
	_, err := Parse("x.toml", []byte(src))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Parse: %v; want Problems", err)
	}
	// Two kinds: "needs a [node.rhcp_client] section" (1000) and "listed
	// twice" (999).
	if len(ps) != 2*(maxRepeats+1) {
		t.Fatalf("%d problems; want %d:\n%v", len(ps), 2*(maxRepeats+1), ps)
	}
	var summaries []string
	for _, p := range ps {
		if strings.Contains(p.Msg, "more like it") {
			summaries = append(summaries, p.Msg)
		}
	}
	want := []string{fmt.Sprintf("and %d more like it", 1000-maxRepeats-1), fmt.Sprintf("and %d more like it", 999-maxRepeats-1)}
	if len(summaries) != 2 || !strings.Contains(summaries[0], want[0]) || !strings.Contains(summaries[1], want[1]) {
		t.Errorf("summaries %q; want ones saying %q and %q", summaries, want[0], want[1])
	}
	// A problem that occurs once is listed as it is.
	_, err = Parse("x.toml", []byte("[[node]]\nname = \"d\"\nmechanisms = [\"rhcp\"]\n"))
	if err == nil || strings.Contains(err.Error(), "more like it") {
		t.Errorf("one problem: %v", err)
	}
}
