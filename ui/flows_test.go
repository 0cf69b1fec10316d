package ui

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/trace"
)

// frameLines returns the body lines of a frame (without header, tabs,
// status and footer).
func bodyLines(frame string) []string {
	l := strings.Split(frame, "\n")
	return l[2 : len(l)-2]
}

func TestSwitchViews(t *testing.T) {
	tm, _ := start(t, recordedOptions(t))
	steps := []struct {
		key, active string
	}{
		{"tab", "[2 Trace]"}, {"tab", "[3 NAT]"}, {"6", "[6 Log]"}, {"tab", "[1 Overview]"},
		{"shift+tab", "[6 Log]"}, {"4", "[4 Leases]"}, {"5", "[5 Topology]"},
	}
	for _, s := range steps {
		if s.key == "shift+tab" {
			tm.Send(tea.KeyMsg{Type: tea.KeyShiftTab})
		} else {
			keys(tm, s.key)
		}
		waitFor(t, tm, s.active)
	}
	frame := finish(t, tm)
	if tabs := strings.Split(frame, "\n")[1]; !strings.Contains(tabs, "[5 Topology]") {
		t.Errorf("tabs = %q, want Topology active", tabs)
	}
}

func TestTraceFilter(t *testing.T) {
	t.Run("error_marker", func(t *testing.T) {
		tm, _ := start(t, recordedOptions(t))
		keys(tm, "2", "/", "rhcp andd udp")
		waitFor(t, tm, "^ ")
		keys(tm, "enter") // refused: the filter does not parse
		checkFrame(t, finish(t, tm))
	})
	t.Run("applied", func(t *testing.T) {
		tm, m := start(t, recordedOptions(t))
		keys(tm, "2", "/", "rhcp and ip.dst == 203.0.113.10")
		waitFor(t, tm, "✓")
		keys(tm, "enter")
		waitFor(t, tm, "filter: rhcp and ip.dst")
		frame := finish(t, tm)
		checkFrame(t, frame)
		var rows []string
		for _, l := range bodyLines(frame) {
			if strings.Contains(l, " > ") {
				rows = append(rows, l)
			}
		}
		if len(rows) != 2 {
			t.Fatalf("filtered list has %d packets, want the 2 probes:\n%s", len(rows), frame)
		}
		for _, r := range rows {
			if !strings.Contains(r, "RHCP") || !strings.Contains(r, "> 203.0.113.10") {
				t.Errorf("row %q does not pass the filter", r)
			}
		}
		if m.tr.editing {
			t.Error("filter bar still has the keyboard after enter")
		}
	})
	t.Run("node_selection", func(t *testing.T) {
		tm, _ := start(t, recordedOptions(t))
		keys(tm, "2")
		waitFor(t, tm, "who-has")
		keys(tm, "n") // the first captured node: router
		waitFor(t, tm, "node router")
		frame := finish(t, tm)
		for _, l := range bodyLines(frame) {
			if strings.Contains(l, " > ") && !strings.Contains(l, " router eth1 ") {
				t.Errorf("node router selected, but the list shows %q", l)
			}
		}
	})
}

// addPackets captures n more frames into r, as a capture goroutine would.
func addPackets(r *trace.Ring, n int, at time.Time) {
	dec := trace.NewDecoder(trace.DecoderOptions{})
	for i := 0; i < n; i++ {
		f := udpFrame("198.51.100.1:4000", "203.0.113.10:9", []byte("late"))
		var s trace.Summary
		dec.Decode(layers.LinkTypeEthernet, f, &s)
		s.Time, s.Len = at.Add(time.Duration(i)*time.Millisecond).UnixNano(), uint32(len(f))
		r.Add(s, f)
	}
}

func TestTracePauseAndFollow(t *testing.T) {
	opt := recordedOptions(t)
	ring := opt.Trace.(*trace.Ring)
	tm, _ := start(t, opt)
	keys(tm, "2")
	waitFor(t, tm, "5 held")
	keys(tm, "space")
	waitFor(t, tm, "paused")
	addPackets(ring, 3, t0)
	waitFor(t, tm, "(3 new)")
	time.Sleep(100 * time.Millisecond) // several ticks: a paused list must not move
	more, _ := io.ReadAll(tm.Output())
	tm.seen = append(tm.seen, more...)
	if bytes.Contains(tm.seen[tm.mark:], []byte("198.51.100.1:4000")) {
		t.Fatalf("paused list shows packets that arrived after the pause:\n%s", tm.seen[tm.mark:])
	}
	keys(tm, "G")
	waitFor(t, tm, "8 held", "● follow")
	frame := finish(t, tm)
	lines := bodyLines(frame)
	var last string
	for _, l := range lines {
		if strings.Contains(l, " > ") {
			last = l
		}
	}
	if !strings.HasPrefix(last, "▸ ") || !strings.Contains(last, "198.51.100.1:4000") {
		t.Errorf("after G the newest packet should be selected, last row %q", last)
	}
}

func TestTraceScrollBack(t *testing.T) {
	opt := recordedOptions(t)
	ring := opt.Trace.(*trace.Ring)
	addPackets(ring, 200, t0)
	tm, m := start(t, opt)
	keys(tm, "2")
	waitFor(t, tm, "205 held")
	keys(tm, "pgup")
	tm.Send(tea.KeyMsg{Type: tea.KeyPgUp})
	waitFor(t, tm, "scrolled")
	keys(tm, "g")
	waitFor(t, tm, "who-has") // the oldest packet, seq 0
	addPackets(ring, 10, t0.Add(time.Second))
	waitFor(t, tm, "215 captured")
	frame := finish(t, tm)
	if m.tr.rows[0].Seq != 0 || !strings.Contains(frame, "▸ 06:59:10.000 router eth1 out ARP") {
		t.Errorf("g should hold the oldest packet selected while new ones arrive:\n%s", frame)
	}
}

func TestTraceExport(t *testing.T) {
	opt := recordedOptions(t)
	tm, _ := start(t, opt)
	keys(tm, "2", "/", "rhcp")
	waitFor(t, tm, "✓")
	keys(tm, "enter")
	waitFor(t, tm, "filter: rhcp")
	keys(tm, "w")
	waitFor(t, tm, "wrote 3 packets")
	finish(t, tm)

	files, _ := filepath.Glob(filepath.Join(opt.ExportDir, "fieldcon-demo-*.pcapng"))
	if len(files) != 1 {
		t.Fatalf("export wrote %v, want one pcapng file", files)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("not pcapng: %v", err)
	}
	n := 0
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		if !bytes.Contains(data, []byte("ESN-0001")) {
			t.Errorf("packet %d is not an RHCP message of the demo", n)
		}
		n++
	}
	if n != 3 {
		t.Errorf("file holds %d packets, want the 3 RHCP ones the view shows", n)
	}
}

func TestHelpOpensAndCloses(t *testing.T) {
	tm, m := start(t, recordedOptions(t))
	keys(tm, "3", "?")
	waitFor(t, tm, "esc or ? closes")
	keys(tm, "esc")
	waitFor(t, tm, "[3 NAT]")
	finish(t, tm)
	if m.help {
		t.Error("help still open after esc")
	}
}

func TestQuitClosesSubscription(t *testing.T) {
	tm, m := start(t, recordedOptions(t))
	keys(tm, "q")
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
	select {
	case _, ok := <-m.sub.C:
		for ok {
			_, ok = <-m.sub.C
		}
	case <-time.After(time.Second):
		t.Fatal("the event subscription is still open after q")
	}
	if m.View() != "" {
		t.Error("View after quit should be empty, leaving a clean terminal")
	}
}

// recorder stands in for the engine and lab actions and records the calls.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
	return nil
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func TestActions(t *testing.T) {
	rec := &recorder{}
	opt := recordedOptions(t)
	opt.Actions = Actions{
		Restart: func(_ context.Context, node, role string) error { return rec.add("restart " + node + " " + role) },
		Reprobe: func(_ context.Context, node, role string) error { return rec.add("reprobe " + node + " " + role) },
		ForceRenew: func(_ context.Context, node, client string) error {
			return rec.add("forcerenew " + node + " " + client)
		},
		FlapLink: func(_ context.Context, l LabLink) error { return rec.add("flap " + l.A + " " + l.B) },
	}
	tm, _ := start(t, opt)
	keys(tm, "down", "r")
	waitFor(t, tm, "restarted rhcp_server on server")
	keys(tm, "p")
	waitFor(t, tm, "re-probe every client of server")
	keys(tm, "up", "p") // static: nothing to re-probe
	waitFor(t, tm, "re-probe (select an rhcp_server): not in this profile")
	keys(tm, "4", "G", "p") // the last row is the RHCP allocation
	waitFor(t, tm, "re-probe ESN-0001 from server")
	keys(tm, "up", "F") // above it, the offered lease
	waitFor(t, tm, "FORCERENEW from server to ESN-0002")
	keys(tm, "5", "down", "l")
	waitFor(t, tm, "flap router:eth1 ─ device:eth0")
	finish(t, tm)
	want := []string{
		"restart server rhcp_server", "reprobe server ", "reprobe server ESN-0001",
		"forcerenew server 0045534e2d30303032", "flap router:eth1 device:eth0",
	}
	if got := rec.list(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("actions = %q, want %q", got, want)
	}
}

func TestClientLabel(t *testing.T) {
	for _, c := range []struct{ id, want string }{
		{"0045534e2d30303032", "ESN-0002"},                 // type 0, printable: the ESN
		{"01020000000601", "01020000000601"},               // type 1: a hardware address stays hex
		{"0045530a", "0045530a"},                           // a control character: hex
		{"mac:02:00:00:00:06:01", "mac:02:00:00:00:06:01"}, // no client-id: as the server keys it
		{"00", "00"},
	} {
		if got := clientLabel(c.id); got != c.want {
			t.Errorf("clientLabel(%q) = %q, want %q", c.id, got, c.want)
		}
	}
}

// withArbiter is the recorded state with the device's mechanisms run by an
// arbiter, as the demo profile's device has them.
func withArbiter(t *testing.T) Options {
	opt := recordedOptions(t)
	snap := recordedSnapshot()
	dev := snap.Node("device")
	dev.Roles = append([]engine.RoleSnapshot{{Kind: "arbiter", Status: engine.StatusRunning}}, dev.Roles...)
	opt.Engine = staticSource{snap}
	return opt
}

// TestRoleStartStop: s stops the selected role and starts it again, r
// restarts it; a mechanism under the arbiter acts on the arbiter, and the
// status line says so; a failed action says why.
func TestRoleStartStop(t *testing.T) {
	rec := &recorder{}
	opt := withArbiter(t)
	opt.Actions = Actions{
		Restart: func(_ context.Context, node, role string) error { return rec.add("restart " + node + " " + role) },
		Stop: func(_ context.Context, node, role string) error {
			if role == "static" {
				return errors.New("node router: role static did not stop within 10s")
			}
			return rec.add("stop " + node + " " + role)
		},
		Start: func(_ context.Context, node, role string) error { return rec.add("start " + node + " " + role) },
		Container: func(node, role string) string {
			if node == "device" && (role == "rhcp_client" || role == "dhcp_client") {
				return "arbiter"
			}
			return ""
		},
	}
	tm, m := start(t, opt)
	keys(tm, "down", "down", "s")
	waitFor(t, tm, "stopped dhcp_server on server; s starts it again", "dhcp_server    stopped", "1 stopped")
	keys(tm, "s")
	waitFor(t, tm, "started dhcp_server on server")
	keys(tm, "down", "down", "s") // the router's static role fails to stop
	waitFor(t, tm, "stop static on router: node router: role static did not stop within 10s")
	keys(tm, "down", "down", "r") // device: arbiter, then rhcp_client
	waitFor(t, tm, "rhcp_client runs under the arbiter of device: restarted arbiter with every")
	keys(tm, "s")
	waitFor(t, tm, "rhcp_client runs under the arbiter of device: stopped arbiter with every", "arbiter        stopped",
		"rhcp_client    stopped", "dhcp_client    stopped")
	keys(tm, "s")
	waitFor(t, tm, "started arbiter")
	frame := finish(t, tm)
	want := []string{
		"stop server dhcp_server", "start server dhcp_server", "restart device arbiter",
		"stop device arbiter", "start device arbiter",
	}
	if got := rec.list(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("actions = %q, want %q", got, want)
	}
	if body := strings.Join(bodyLines(frame), "\n"); strings.Contains(body, "stopped") {
		t.Errorf("the overview should show no role stopped any more:\n%s", frame)
	}
	if m.stopped["device|arbiter"] || m.stopped["server|dhcp_server"] {
		t.Errorf("roles still marked stopped after starting them: %v", m.stopped)
	}
}

// TestStoppedArbiterHasNoWinner: with the arbiter stopped from the
// keyboard, the node line no longer names the earlier winner.
func TestStoppedArbiterHasNoWinner(t *testing.T) {
	m := New(withArbiter(t))
	drive(m, m.fetch(), 0)
	if !strings.Contains(m.Frame(), "winner rhcp") {
		t.Fatalf("the recorded device should show its winner:\n%s", m.Frame())
	}
	m.Update(actionMsg{what: "stopped arbiter on device", marks: []string{"device|arbiter"}, stopped: true})
	if f := m.Frame(); strings.Contains(f, "winner rhcp") || !strings.Contains(f, "winner static") {
		t.Errorf("with the device's arbiter stopped, want no winner on it (and the others' kept):\n%s", f)
	}
}

// TestOverviewNewestRun: an arbiter restarted in place may still report
// its mechanism's earlier run; the overview shows the newest run only.
func TestOverviewNewestRun(t *testing.T) {
	opt := withArbiter(t)
	snap := opt.Engine.(staticSource).snap
	dev := snap.Node("device")
	stale := engine.RoleSnapshot{Kind: "rhcp_client", Status: engine.StatusFailed, Error: "an earlier run's error"}
	dev.Roles = append(dev.Roles[:1], append([]engine.RoleSnapshot{stale}, dev.Roles[1:]...)...)
	opt.Engine = staticSource{snap}
	tm, _ := start(t, opt)
	frame := finish(t, tm)
	if n := strings.Count(frame, "rhcp_client "); n != 1 || strings.Contains(frame, "earlier run") {
		t.Errorf("want one rhcp_client row, the newest run's:\n%s", frame)
	}
}

func TestActionsAbsent(t *testing.T) {
	tm, _ := start(t, recordedOptions(t)) // no actions wired
	keys(tm, "r")
	waitFor(t, tm, "restart: not in this profile")
	keys(tm, "s")
	waitFor(t, tm, "stop/start: not in this profile")
	keys(tm, "5", "l")
	waitFor(t, tm, "flap (select a lab link; only in --lab): not in this profile")
	finish(t, tm)
}

// staticOnly is a profile without tunnel, DHCP, RHCP or cascade: every view
// says what is not there instead of showing empty tables.
func staticOnly(t *testing.T) Options {
	opt := recordedOptions(t)
	snap := recordedSnapshot()
	for i := range snap.Nodes {
		n := &snap.Nodes[i]
		n.Roles = n.Roles[:1]
		n.Roles[0] = engine.RoleSnapshot{Kind: "static", Status: engine.StatusRunning}
		n.Mappings, n.Tunnels, n.Leases, n.Probes, n.Cascade = nil, nil, nil, nil, nil
	}
	opt.Engine = staticSource{snap}
	opt.Trace, opt.Links = nil, nil
	return opt
}

func TestNotInThisProfile(t *testing.T) {
	for _, c := range []struct{ name, key, wait string }{
		{"nat", "3", "NAT: not in this profile"},
		{"leases", "4", "RHCP allocations"},
		{"topology", "5", "Lab links"},
		{"trace", "2", "no capture"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tm, _ := start(t, staticOnly(t))
			keys(tm, c.key)
			waitFor(t, tm, c.wait)
			checkFrame(t, finish(t, tm))
		})
	}
}

func TestNATSort(t *testing.T) {
	tm, _ := start(t, recordedOptions(t))
	order := func(frame string) string {
		var protos []string
		for _, l := range bodyLines(frame) {
			for _, f := range strings.Fields(l) {
				if f == "udp" || f == "tcp" || f == "icmp" {
					protos = append(protos, f)
				}
			}
		}
		return strings.Join(protos, ",")
	}
	keys(tm, "3", "s", "s", "s", "s") // IDX, VIRTUAL, TRANSLATED, DESTINATION, PROT
	waitFor(t, tm, "sort PROT")
	keys(tm, "S")
	waitFor(t, tm, "sort PROT ↓")
	keys(tm, "s") // by packets, still descending
	waitFor(t, tm, "sort PKTS ↓")
	frame := finish(t, tm)
	if got := order(frame); got != "tcp,udp,icmp" {
		t.Errorf("sorted by packets descending: %s, want tcp,udp,icmp\n%s", got, frame)
	}
}

func TestLogFilterByNode(t *testing.T) {
	tm, _ := start(t, recordedOptions(t))
	keys(tm, "6", "n")
	waitFor(t, tm, "node server")
	keys(tm, "c") // the first capability among the events: address
	waitFor(t, tm, "capability address")
	frame := finish(t, tm)
	var rows int
	for _, l := range bodyLines(frame)[1:] {
		if strings.TrimSpace(l) == "" {
			continue
		}
		rows++
		if !strings.Contains(l, " server ") || !strings.Contains(l, "address.") {
			t.Errorf("log filtered to server/address shows %q", l)
		}
	}
	if rows != 1 {
		t.Errorf("log shows %d events, want server's one address.added", rows)
	}
}

// TestWide checks the console uses a bigger terminal: the NAT table shows
// every column.
func TestWide(t *testing.T) {
	m := New(recordedOptions(t))
	tm := &term{TestModel: teatestModel(t, m, 140, 40)}
	waitFor(t, tm, "events")
	keys(tm, "3")
	waitFor(t, tm, "BYTE↓")
	frame := finish(t, tm)
	for i, l := range strings.Split(frame, "\n") {
		if w := lipgloss.Width(l); w > 140 {
			t.Errorf("line %d is %d wide", i, w)
		}
	}
	if !strings.Contains(frame, "ESTABLISHED") {
		t.Errorf("wide NAT table lacks the state column:\n%s", frame)
	}
}

func TestNoColor(t *testing.T) {
	t.Setenv("NO_COLOR", "1")
	var buf bytes.Buffer
	st := NewStyles(lipgloss.NewRenderer(&buf))
	for _, s := range []lipgloss.Style{st.Err, st.OK, st.Selected, st.TabActive, st.Title} {
		if got := s.Render("x"); got != "x" {
			t.Errorf("with NO_COLOR a style rendered %q", got)
		}
	}
}

// TestKeyBurst: runes that arrive together (a slow link, a fast typist) are
// still one command each.
func TestKeyBurst(t *testing.T) {
	tm, m := start(t, recordedOptions(t))
	keys(tm, "2")
	waitFor(t, tm, "who-has")
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("kk")})
	waitFor(t, tm, "scrolled")
	finish(t, tm)
	if m.tr.sel != 2 {
		t.Errorf("after a burst of two k the selection is row %d, want 2", m.tr.sel)
	}
}

// TestKeyBurstSwitchAndAct: "4Gk" then F typed in one burst, as over a
// slow link: the keys after the view switch act on the view it shows.
func TestKeyBurstSwitchAndAct(t *testing.T) {
	rec := &recorder{}
	opt := recordedOptions(t)
	opt.Actions.ForceRenew = func(_ context.Context, node, client string) error {
		return rec.add("forcerenew " + node + " " + client)
	}
	tm, _ := start(t, opt)
	tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("4GkF")})
	waitFor(t, tm, "FORCERENEW from server to ESN-0002")
	finish(t, tm)
	if got := strings.Join(rec.list(), "|"); got != "forcerenew server 0045534e2d30303032" {
		t.Errorf("actions = %q", got)
	}
}

// TestLogSelectedInFull: the selected event is shown whole, whatever the
// width cut from its line.
func TestLogSelectedInFull(t *testing.T) {
	tm, _ := start(t, recordedOptions(t))
	keys(tm, "6", "k", "k") // the error event, two above the newest
	waitFor(t, tm, "── 06:59:22.000000 device error")
	frame := finish(t, tm)
	if !strings.Contains(frame, "message=dhcp: bind udp 0.0.0.0:68: address already in use") &&
		!strings.Contains(strings.Join(strings.Fields(frame), " "), "bind udp 0.0.0.0:68: address already in use") {
		t.Errorf("the selected error is not shown in full:\n%s", frame)
	}
}

// TestTraceTimeOrder: frames from several capture goroutines reach the ring
// slightly out of order; the list shows them in capture-time order.
func TestTraceTimeOrder(t *testing.T) {
	opt := recordedOptions(t)
	ring := trace.NewRing(trace.RingConfig{Summaries: 64, RawBytes: 1 << 16})
	ring.AddInterface(trace.Interface{Node: "router", Name: "eth0", LinkType: layers.LinkTypeEthernet})
	dec := trace.NewDecoder(trace.DecoderOptions{})
	for _, port := range []string{"3", "1", "2"} { // arrival order
		f := udpFrame("198.51.100.1:4000", "203.0.113.10:"+port, []byte("x"))
		var s trace.Summary
		dec.Decode(layers.LinkTypeEthernet, f, &s)
		n := int(port[0] - '0')
		s.Time, s.Len = t0.Add(time.Duration(n)*time.Microsecond).UnixNano(), uint32(len(f))
		ring.Add(s, f)
	}
	opt.Trace = ring
	tm, _ := start(t, opt)
	keys(tm, "2")
	waitFor(t, tm, "3 held")
	frame := finish(t, tm)
	var ports []string
	for _, l := range bodyLines(frame) {
		if i := strings.Index(l, "203.0.113.10:"); i >= 0 {
			ports = append(ports, l[i+len("203.0.113.10:"):i+len("203.0.113.10:")+1])
		}
	}
	if strings.Join(ports, "") != "123" {
		t.Errorf("list order by destination port %v, want capture-time order 1,2,3:\n%s", ports, frame)
	}
}

// TestTraceFilteredFollow: a filtered list that follows picks up matches as
// they arrive (it reads only the new packets) and keeps the newest.
func TestTraceFilteredFollow(t *testing.T) {
	opt := recordedOptions(t)
	ring := opt.Trace.(*trace.Ring)
	tm, m := start(t, opt)
	keys(tm, "2", "/", "udp.dstport == 9")
	waitFor(t, tm, "✓")
	keys(tm, "enter")
	waitFor(t, tm, "no packets match yet")
	addPackets(ring, 3, t0)
	waitFor(t, tm, "8 held")
	addPackets(ring, 40, t0.Add(time.Second))
	waitFor(t, tm, "48 held")
	frame := finish(t, tm)
	rows := 0
	for _, l := range bodyLines(frame) {
		if strings.Contains(l, " > ") {
			rows++
			if !strings.Contains(l, "203.0.113.10:9") {
				t.Errorf("row %q does not match the filter", l)
			}
		}
	}
	if rows != m.tr.listHeight(m) || !strings.Contains(frame, "07:00:01.039") {
		t.Errorf("want a full list of %d rows ending with the newest match:\n%s", m.tr.listHeight(m), frame)
	}
}
