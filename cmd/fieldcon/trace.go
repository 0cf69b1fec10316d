package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/trace"
	"github.com/fieldcon/fieldcon/profiles"
)

// traceFlags are fieldcon trace's own flags.
type traceFlags struct {
	site   siteFlags
	ifaces stringList
	filter string
	write  string
	dur    time.Duration
	run    bool
	json   bool
	ring   int
}

func cmdTrace(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var tf traceFlags
	fs := newFlags("trace", stdout, stderr)
	tf.site.register(fs, siteTexts{
		profile:  "the profile whose nodes to capture: a file path or an embedded profile's name",
		node:     "capture only this node's interfaces (repeatable; default: every node); with --run, the roles of the other nodes do not run either",
		nodeMeta: "NODE",
		lab:      "capture in the profile's lab namespaces (the lab must be up, unless --run builds it); without --lab, this machine's interfaces",
		state:    "with --run: directory of the nodes' stores (default: as for fieldcon run)",
	})
	fs.listVar(&tf.ifaces, "i", "IFACE", "capture only this interface (repeatable; default: every interface but lo)")
	fs.stringVar(&tf.filter, "f", "FILTER", "show only packets matching this filter, e.g. 'rhcp and node=router', 'udp.port==67', 'not arp' (docs/trace.md)")
	fs.stringVar(&tf.write, "w", "FILE.pcapng", "at the end, write the captured packets that match the filter to this pcapng file")
	fs.durationVar(&tf.dur, "for", "D", "stop after this long, e.g. 30s (default: until interrupted)")
	fs.boolVar(&tf.run, "run", "also run the profile's roles, as fieldcon run does, and print their events among the packets")
	fs.boolVar(&tf.json, "json", "print one JSON object per packet or event")
	fs.intVar(&tf.ring, "ring", "N", "packet summaries kept in memory (default: 1048576)")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.nArg() > 0 {
		fs.usageError(fmt.Sprintf("unexpected argument %q", fs.arg(0)))
		return exitUsage
	}
	if tf.dur < 0 || tf.ring < 0 {
		fmt.Fprintln(stderr, "fieldcon trace: --for and --ring must not be negative; leave them out for the defaults")
		return exitUsage
	}
	flt, err := trace.ParseFilter(tf.filter)
	if err != nil {
		printFilterError(stderr, tf.filter, err)
		return exitUsage
	}
	ctx, stdout, cancelPipe := guardPipe(ctx, stdout)
	defer cancelPipe()
	if tf.dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, tf.dur)
		defer cancel()
	}
	err = runTrace(ctx, &tf, flt, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "fieldcon trace: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}

// printFilterError shows the filter with a caret under the offending column.
func printFilterError(w io.Writer, expr string, err error) {
	fmt.Fprintf(w, "fieldcon trace: bad filter: %v\n", err)
	var se *trace.SyntaxError
	if errors.As(err, &se) {
		fmt.Fprintf(w, "  %s\n  %s^\n", expr, strings.Repeat(" ", se.Pos))
	}
}

// tracedNode is a node whose interfaces are captured.
type tracedNode struct {
	name   string
	netns  string
	host   engine.Host
	opened bool // we opened host and close it
}

func runTrace(ctx context.Context, tf *traceFlags, flt *trace.Filter, stdout, stderr io.Writer) error {
	var (
		nodes []tracedNode
		sess  *session
		bus   *engine.Bus
		p     *profiles.Profile
		err   error
	)
	if tf.run {
		bus = engine.NewBus(10000)
		if sess, err = tf.site.open(ctx, bus); err != nil {
			return err
		}
		if n := sess.note(); n != "" {
			fmt.Fprintln(stderr, "fieldcon trace: "+n)
		}
		p = sess.profile
		for _, n := range p.Nodes {
			if h, ok := sess.site.Hosts[n.Name]; ok {
				nodes = append(nodes, tracedNode{name: n.Name, netns: sess.site.Netns[n.Name], host: h})
			}
		}
	} else {
		if p, err = tf.site.loadProfile(); err != nil {
			return err
		}
		if nodes, err = openTraceHosts(p, &tf.site); err != nil {
			return err
		}
	}
	defer func() {
		for _, n := range nodes {
			if n.opened {
				n.host.Close()
			}
		}
	}()
	nodes = uniqueNamespaces(nodes)

	ts := trace.NewSession(trace.SessionConfig{Ring: trace.RingConfig{Summaries: tf.ring}, Decoder: trace.OptionsFromProfile(p)})
	cctx, stopCapture := context.WithCancel(ctx)
	defer stopCapture()
	if err := startCaptures(cctx, ts, nodes, tf.ifaces); err != nil {
		ts.StopAll()
		if sess != nil {
			sess.close()
		}
		return err
	}
	out := &traceOutput{w: stdout, json: tf.json, ring: ts.Ring(), filter: flt}
	if tf.write != "" {
		if out.pcap, err = newTraceFile(tf.write, ts.Ring(), flt); err != nil {
			ts.StopAll()
			if sess != nil {
				sess.close()
			}
			return err
		}
	}
	fmt.Fprintf(stderr, "fieldcon trace: capturing on %s\n", describeCaptures(ts.Capturing()))
	prev := nodeAddresses(nodes) // before the roles change anything

	var wg sync.WaitGroup
	var runErr error
	if sess != nil {
		sub := bus.Subscribe(65536, true)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for e := range sub.C {
				out.event(e)
			}
		}()
		go func() {
			defer wg.Done()
			runErr = sess.site.Engine.Run(ctx)
			bus.Close()
		}()
	}
	watchAddresses(ctx, nodes, prev, out, func() {
		if len(tf.ifaces) == 0 {
			followNewInterfaces(cctx, ts, nodes, out)
		}
	})
	wg.Wait() // the roles' undo, and their last events
	ts.StopAll()
	out.flush(0)

	var errs []error
	if runErr != nil {
		errs = append(errs, fmt.Errorf("undo: %w", runErr))
	}
	if sess != nil {
		if err := sess.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := ts.Err(); err != nil {
		errs = append(errs, err)
	}
	r := ts.Ring()
	fmt.Fprintf(stderr, "fieldcon trace: %d packets captured, %d shown, %d dropped from the ring\n", r.Next(), out.shown, r.Dropped())
	if out.pcap != nil {
		if err := out.pcap.close(stderr); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// openTraceHosts opens the hosts of the nodes to trace without running
// anything: the lab's namespaces with --lab, else the current namespace.
func openTraceHosts(p *profiles.Profile, f *siteFlags) ([]tracedNode, error) {
	names := []string(f.nodes)
	for _, n := range names {
		if p.Node(n) == nil {
			return nil, usageError{fmt.Errorf("profile %s has no node %q", p.Name, n)}
		}
	}
	if !f.useLab {
		// One machine: the current namespace, named after the node asked
		// for, or the profile's only node.
		name := "local"
		if len(names) > 0 {
			name = names[0]
		} else if len(p.Nodes) == 1 {
			name = p.Nodes[0].Name
		}
		h, err := linux.Open("")
		if err != nil {
			if permissionDenied(err) {
				return nil, usageError{fmt.Errorf("%w: capturing needs root (sudo fieldcon ...) or CAP_NET_ADMIN and CAP_NET_RAW", err)}
			}
			return nil, err
		}
		return []tracedNode{{name: name, host: h, opened: true}}, nil
	}
	if p.Lab == nil {
		return nil, usageError{fmt.Errorf("profile %s has no [lab] section; trace without --lab on this machine's interfaces", p.Source)}
	}
	if os.Geteuid() != 0 {
		return nil, needRoot("tracing a lab needs root for its network namespaces")
	}
	labName, err := f.checkedLab(p)
	if err != nil {
		return nil, err
	}
	if !lab.Exists(labName) {
		return nil, fmt.Errorf("lab %s is not up: start it with `fieldcon run -p %s --lab%s` (or `fieldcon lab up -p %s%s`), or add --run to run it here", labName, f.profile, labNameFlag(*f), f.profile, labNameFlag(*f))
	}
	if len(names) == 0 {
		for _, n := range p.Nodes {
			names = append(names, n.Name)
		}
	}
	var nodes []tracedNode
	for _, n := range names {
		ns := lab.NetnsName(labName, n)
		h, err := linux.Open(ns)
		if err != nil {
			for _, o := range nodes {
				o.host.Close()
			}
			return nil, fmt.Errorf("node %s: %w", n, err)
		}
		nodes = append(nodes, tracedNode{name: n, netns: ns, host: h, opened: true})
	}
	return nodes, nil
}

// uniqueNamespaces keeps one node per namespace: without a lab every node
// is the same machine, and its interfaces are captured once.
func uniqueNamespaces(nodes []tracedNode) []tracedNode {
	seen := map[string]bool{}
	var out []tracedNode
	for _, n := range nodes {
		if seen[n.netns] {
			continue
		}
		seen[n.netns] = true
		out = append(out, n)
	}
	return out
}

func startCaptures(ctx context.Context, ts *trace.Session, nodes []tracedNode, ifaces []string) error {
	if len(ifaces) == 0 {
		var errs []error
		for _, n := range nodes {
			if err := ts.StartAll(ctx, n.host, n.name); err != nil {
				errs = append(errs, err)
			}
		}
		if len(ts.Capturing()) == 0 {
			return errors.Join(append(errs, errors.New("no interface to capture on"))...)
		}
		return nil
	}
	for _, i := range ifaces {
		found := false
		for _, n := range nodes {
			if _, err := n.host.LinkByName(i); err != nil {
				continue
			}
			if err := ts.Start(ctx, n.host, n.name, i); err != nil {
				return err
			}
			found = true
		}
		if !found {
			return usageError{fmt.Errorf("no traced node has an interface %q; they have: %s", i, nodeInterfaces(nodes))}
		}
	}
	return nil
}

// nodeInterfaces lists node/iface for every interface of the traced nodes
// but lo, for an -i that matched none.
func nodeInterfaces(nodes []tracedNode) string {
	var out []string
	for _, n := range nodes {
		links, err := n.host.Links()
		if err != nil {
			continue
		}
		for _, l := range links {
			if l.Name != "lo" {
				out = append(out, n.name+"/"+l.Name)
			}
		}
	}
	if len(out) == 0 {
		return "none"
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func describeCaptures(ifs []trace.Interface) string {
	var parts []string
	for _, i := range ifs {
		parts = append(parts, i.Node+"/"+i.Name)
	}
	return strings.Join(parts, ", ")
}

// holdBack is how long a line waits before it is printed, so that packets
// (stamped by the kernel, delivered by several capture goroutines), events
// and address changes come out in time order.
const holdBack = 100 * time.Millisecond

// watchAddresses prints the packets as they arrive (every 100 ms) and, once
// a second, the addresses that appeared on or left the traced nodes, until
// ctx ends: a trace shows an address appear soon after the packet that
// caused it. prev is the nodes' addresses before the trace started.
func watchAddresses(ctx context.Context, nodes []tracedNode, prev []map[string]bool, out *traceOutput, everySecond func()) {
	tick := time.NewTicker(holdBack)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if n%int(time.Second/holdBack) == 0 {
				everySecond()
				// A dump of every node's links and addresses: once a
				// second, not on every flush.
				for i, n := range nodes {
					cur := hostAddresses(n.host)
					out.addressChanges(n.name, prev[i], cur)
					prev[i] = cur
				}
			}
			out.flush(holdBack)
			if out.pcap != nil {
				out.pcap.writeNew()
			}
		}
	}
}

// followNewInterfaces starts captures on interfaces that appeared on the
// traced nodes (a tunnel's TUN device) and says so in the output.
func followNewInterfaces(ctx context.Context, ts *trace.Session, nodes []tracedNode, out *traceOutput) {
	before := map[trace.Interface]bool{}
	for _, i := range ts.Capturing() {
		before[i] = true
	}
	for _, n := range nodes {
		ts.StartAll(ctx, n.host, n.name) // a link that vanished meanwhile is not an error here
	}
	now := time.Now()
	for _, i := range ts.Capturing() {
		if !before[i] {
			out.note(now, i.Node, fmt.Sprintf("%s %s %s CAPTURE started (link type %d)", now.UTC().Format("15:04:05.000000"), i.Node, i.Name, i.LinkType),
				map[string]any{"kind": "trace.capture.started", "iface": i.Name, "link_type": int(i.LinkType)})
		}
	}
}

func nodeAddresses(nodes []tracedNode) []map[string]bool {
	prev := make([]map[string]bool, len(nodes))
	for i, n := range nodes {
		prev[i] = hostAddresses(n.host)
	}
	return prev
}

// hostAddresses lists "iface address" of every interface of h.
func hostAddresses(h engine.Host) map[string]bool {
	out := map[string]bool{}
	links, err := h.Links()
	if err != nil {
		return out
	}
	for _, l := range links {
		addrs, err := h.Addresses(l.Name)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			out[l.Name+" "+a.Prefix.String()] = true
		}
	}
	return out
}

// traceLine is one line waiting to be printed.
type traceLine struct {
	time int64 // Unix nanoseconds
	text string
	obj  any // what --json prints
}

// traceOutput merges packet, event and address lines into one time-ordered
// stream on w.
type traceOutput struct {
	mu      sync.Mutex
	w       io.Writer
	json    bool
	ring    *trace.Ring
	filter  *trace.Filter
	next    uint64
	shown   int
	pending []traceLine
	pcap    *traceFile // -w, or nil
	enc     *json.Encoder
}

// flush prints the lines older than hold, oldest first.
func (o *traceOutput) flush(hold time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.collectPackets()
	sort.SliceStable(o.pending, func(i, j int) bool { return o.pending[i].time < o.pending[j].time })
	cut := time.Now().Add(-hold).UnixNano()
	n := 0
	for n < len(o.pending) && (hold == 0 || o.pending[n].time <= cut) {
		l := o.pending[n]
		if o.json {
			o.encoder().Encode(l.obj)
		} else {
			fmt.Fprintln(o.w, l.text)
		}
		n++
	}
	o.pending = append(o.pending[:0], o.pending[n:]...)
}

// encoder writes JSON lines; summaries keep their ">" unescaped.
func (o *traceOutput) encoder() *json.Encoder {
	if o.enc == nil {
		o.enc = json.NewEncoder(o.w)
		o.enc.SetEscapeHTML(false)
	}
	return o.enc
}

// collectPackets queues the summaries that arrived since the last call.
func (o *traceOutput) collectPackets() {
	for {
		sums, next, missed := o.ring.Follow(o.filter, o.next, 4096)
		o.next = next
		if missed > 0 {
			text := fmt.Sprintf("--- %d packets dropped from the ring before they were shown", missed)
			o.pending = append(o.pending, traceLine{time: time.Now().UnixNano(), text: text, obj: map[string]any{"kind": "trace.dropped", "count": missed}})
		}
		for i := range sums {
			o.pending = append(o.pending, o.packetLine(&sums[i]))
		}
		if len(sums) < 4096 {
			return
		}
	}
}

func (o *traceOutput) packetLine(s *trace.Summary) traceLine {
	o.shown++
	line := o.ring.Line(s)
	ifc := trace.Interface{}
	if ifs := o.ring.Interfaces(); int(s.Iface) < len(ifs) {
		ifc = ifs[s.Iface]
	}
	return traceLine{time: s.Time, text: line, obj: map[string]any{
		"time": time.Unix(0, s.Time).UTC().Format(time.RFC3339Nano), "node": ifc.Node, "kind": "packet",
		"iface": ifc.Name, "seq": s.Seq, "proto": s.Proto.String(), "len": s.Len,
		"dir": engine.Direction(s.Dir).String(), "summary": line,
	}}
}

func (o *traceOutput) event(e engine.Event) {
	text := fmt.Sprintf("%s %s EVENT %s", e.Time.UTC().Format("15:04:05.000000"), e.Node, e.Kind) + eventFields(e)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending = append(o.pending, traceLine{time: e.Time.UnixNano(), text: text, obj: e})
}

// note queues a line about the trace itself.
func (o *traceOutput) note(t time.Time, node, text string, obj map[string]any) {
	obj["time"], obj["node"] = t.UTC().Format(time.RFC3339Nano), node
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending = append(o.pending, traceLine{time: t.UnixNano(), text: text, obj: obj})
}

func (o *traceOutput) addressChanges(node string, prev, cur map[string]bool) {
	now := time.Now()
	add := func(k, sign, kind string) {
		f := strings.Fields(k)
		o.pending = append(o.pending, traceLine{
			time: now.UnixNano(),
			text: fmt.Sprintf("%s %s %s ADDRESS %s %s", now.UTC().Format("15:04:05.000000"), node, f[0], sign, f[1]),
			obj: map[string]any{"time": now.UTC().Format(time.RFC3339Nano), "node": node, "kind": kind,
				"iface": f[0], "address": f[1], "observed": true},
		})
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range sortedKeys(cur) {
		if !prev[k] {
			add(k, "+", engine.KindAddressAdded)
		}
	}
	for _, k := range sortedKeys(prev) {
		if !cur[k] {
			add(k, "-", engine.KindAddressRemoved)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// traceFile streams the packets to a pcapng file while the trace runs, so
// the file keeps every packet however small the ring's byte arena is.
type traceFile struct {
	f    *os.File
	path string
	pw   *trace.PcapngWriter
	err  error
}

func newTraceFile(path string, r *trace.Ring, flt *trace.Filter) (*traceFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("-w: %w", err)}
	}
	pw, err := trace.NewPcapngWriter(f, r, flt, 0)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &traceFile{f: f, path: path, pw: pw}, nil
}

func (t *traceFile) writeNew() {
	if t.err == nil {
		t.err = t.pw.WriteNew()
	}
}

func (t *traceFile) close(stderr io.Writer) error {
	t.writeNew()
	err := t.err
	if err == nil {
		err = t.pw.Flush()
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export %s: %w", t.path, err)
	}
	res := t.pw.Result()
	fmt.Fprintf(stderr, "fieldcon trace: wrote %d packets to %s", res.Packets, t.path)
	if res.Missing > 0 {
		fmt.Fprintf(stderr, " (%d packets left the ring before they could be written)", res.Missing)
	}
	fmt.Fprintln(stderr)
	return nil
}
