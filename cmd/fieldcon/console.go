package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/term"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/dhcp"
	"github.com/fieldcon/fieldcon/engine/rhcp"
	"github.com/fieldcon/fieldcon/engine/trace"
	"github.com/fieldcon/fieldcon/profiles"
	"github.com/fieldcon/fieldcon/ui"
)

// cmdConsole is `fieldcon` without a subcommand: the TUI. With no profile it
// runs the embedded demo lab (built in namespaces, torn down on exit);
// `-p PROFILE [--lab]` opens any profile, on real interfaces or in its lab.
func cmdConsole(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f siteFlags
	var exportDir string
	fs := newFlags("console", stdout, stderr)
	t := runTexts()
	t.profile = "the profile to open: a file path or an embedded profile's name (default: the embedded demo, in its lab)"
	t.lab = "run the nodes in the profile's lab namespaces; the lab is built if it is not up, and then removed when the console ends"
	f.register(fs, t)
	fs.stringVar(&exportDir, "export-dir", "DIR", "where w in the trace view writes pcapng files (default: the working directory)")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if fs.nArg() > 0 {
		fmt.Fprintf(stderr, "fieldcon: unexpected argument %q (the commands are: %s; `fieldcon help` lists them)\n", fs.arg(0), strings.Join(commandNames(), ", "))
		return exitUsage
	}
	if f.profile == "" {
		f.profile, f.useLab = "demo", true
	}
	out, ok := stdout.(*os.File)
	if !ok || !term.IsTerminal(out.Fd()) {
		fmt.Fprintf(stderr, "fieldcon: the console needs a terminal; for scripts and pipes run `fieldcon run -p %s%s --json`\n", f.profile, labFlag(f.useLab))
		return exitUsage
	}
	if f.useLab && os.Geteuid() != 0 {
		fmt.Fprintf(stderr, "fieldcon: the %s lab needs root for its network namespaces: run `sudo fieldcon%s`, or `fieldcon check %s` to validate the profile without it\n",
			f.profile, profileArgs(f), f.profile)
		return exitUsage
	}
	return runConsole(ctx, &f, exportDir, out, stderr)
}

func labFlag(on bool) string {
	if on {
		return " --lab"
	}
	return ""
}

func profileArgs(f siteFlags) string {
	if f.profile == "demo" && f.useLab {
		return ""
	}
	return " -p " + f.profile + labFlag(f.useLab)
}

// runConsole builds the site, starts the captures and the engine, runs the
// TUI until q, then stops the engine (undoing its changes) and removes the
// lab it built.
func runConsole(ctx context.Context, f *siteFlags, exportDir string, out *os.File, stderr io.Writer) int {
	// A dropped SSH session hangs the terminal up: stop as on q, undoing the
	// engine's changes and removing the lab, instead of dying half-configured.
	ctx, stopHangup := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stopHangup()
	if os.Getenv("GOGC") == "" {
		// The trace ring (up to ~180 MB) is pointer-free, so collecting
		// more often costs little CPU but keeps the heap near what is live:
		// measured with a full ring at 20k packets/s, RSS 264 MB instead of
		// 428 MB with Go's default of 100 (bench/ui.md).
		debug.SetGCPercent(25)
	}
	bus := engine.NewBus(10000)
	if f.useLab {
		fmt.Fprintf(stderr, "fieldcon: starting %s in its lab…\n", f.profile)
	}
	sess, err := f.open(ctx, bus)
	if err != nil {
		fmt.Fprintf(stderr, "fieldcon: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailure
	}
	if n := sess.note(); n != "" {
		fmt.Fprintln(stderr, "fieldcon: "+n)
	}
	ectx, stopEngine := context.WithCancel(ctx)
	defer stopEngine()

	// Capture before the engine starts, so the first probes are in the trace.
	ts := trace.NewSession(trace.SessionConfig{Decoder: trace.OptionsFromProfile(sess.profile)})
	var captureErr error
	var nodes []tracedNode
	for _, n := range sess.profile.Nodes {
		if h, ok := sess.site.Hosts[n.Name]; ok {
			nodes = append(nodes, tracedNode{name: n.Name, netns: sess.site.Netns[n.Name], host: h})
		}
	}
	nodes = uniqueNamespaces(nodes)
	if err := startCaptures(ectx, ts, nodes, nil); err != nil {
		captureErr = err
	}
	if captureErr == nil {
		for _, n := range nodes {
			go captureNewLinks(ectx, ts, n)
		}
	}

	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = sess.site.Engine.Run(ectx)
	}()

	opt := consoleOptions(ectx, sess, bus, exportDir)
	opt.Renderer = lipgloss.NewRenderer(out)
	if len(ts.Capturing()) > 0 {
		opt.Trace, opt.TraceOptions = ts.Ring(), trace.OptionsFromProfile(sess.profile)
	}
	m := ui.New(opt)
	if captureErr != nil {
		m.Notice("trace: " + captureErr.Error())
	}
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithOutput(out), tea.WithContext(ctx))
	_, tuiErr := p.Run()

	if sess.builtLab {
		fmt.Fprintf(stderr, "fieldcon: stopping: undoing the engine's changes and removing lab %s…\n", sess.labName)
	} else {
		fmt.Fprintln(stderr, "fieldcon: stopping: undoing the engine's changes…")
	}
	stopEngine()
	ts.StopAll()
	wg.Wait()
	bus.Close()
	code := exitOK
	if tuiErr != nil && !errors.Is(tuiErr, tea.ErrProgramKilled) && !errors.Is(tuiErr, context.Canceled) {
		fmt.Fprintf(stderr, "fieldcon: console: %v\n", tuiErr)
		code = exitFailure
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "fieldcon: undo: %v\n", runErr)
		code = exitFailure
	}
	if err := sess.close(); err != nil {
		fmt.Fprintf(stderr, "fieldcon: lab down: %v\n", err)
		code = exitFailure
	}
	return code
}

// captureNewLinks adds interfaces that appear while the console runs (the
// tunnel's TUN devices, a PPP link coming up) to the trace.
func captureNewLinks(ctx context.Context, ts *trace.Session, n tracedNode) {
	links, err := n.host.WatchLinks(ctx)
	if err != nil {
		return
	}
	for l := range links {
		if !l.Up || l.Name == "lo" || l.Kind == "loopback" || capturing(ts, n.name, l.Name) {
			continue
		}
		_ = ts.Start(ctx, n.host, n.name, l.Name) // a link that vanished again is not worth an alarm
	}
}

func capturing(ts *trace.Session, node, iface string) bool {
	for _, i := range ts.Capturing() {
		if i.Node == node && i.Name == iface {
			return true
		}
	}
	return false
}

// consoleOptions wires the console to the site: its engine, its lab links,
// and the actions the keyboard can trigger.
func consoleOptions(ectx context.Context, sess *session, bus *engine.Bus, exportDir string) ui.Options {
	host, _ := os.Hostname()
	eng := sess.site.Engine
	opt := ui.Options{
		Profile: sess.profile.Name, Host: host, Lab: sess.labName != "",
		Engine: eng, Bus: bus, ExportDir: exportDir, Context: ectx,
	}
	// Roles live as long as the engine, not as long as the key press.
	opt.Actions.Restart = func(ctx context.Context, node, role string) error {
		if err := eng.RestartRole(ectx, node, role); err != nil {
			return err
		}
		return reprobeStarted(ctx, eng, sess.profile, node, role)
	}
	opt.Actions.Stop = func(_ context.Context, node, role string) error { return eng.StopRole(node, role) }
	opt.Actions.Start = func(ctx context.Context, node, role string) error {
		if err := eng.StartRole(node, role); err != nil {
			return err
		}
		return reprobeStarted(ctx, eng, sess.profile, node, role)
	}
	opt.Actions.Container = func(node, role string) string { return container(eng, node, role) }
	opt.Actions.ForceRenew = func(_ context.Context, node, client string) error {
		r, ok := eng.Role(node, "dhcp_server")
		srv, isDHCP := r.(*dhcp.ServerRole)
		if !ok || !isDHCP {
			return fmt.Errorf("node %s runs no dhcp_server", node)
		}
		return srv.ForceRenew(client)
	}
	opt.Actions.Reprobe = func(ctx context.Context, node, client string) error {
		srv, ok := rhcpServer(eng, node)
		if !ok {
			return fmt.Errorf("node %s runs no rhcp_server", node)
		}
		return srv.Reprobe(ctx, client)
	}
	if sess.labName != "" && sess.profile.Lab != nil {
		for _, l := range sess.profile.Lab.Links {
			opt.Links = append(opt.Links, ui.LabLink{A: l.A.String(), B: l.B.String()})
		}
		name := sess.labName
		opt.Actions.FlapLink = func(ctx context.Context, l ui.LabLink) error { return flapLink(ctx, name, l) }
		opt.LinkStates = func() (map[string]bool, error) { return labLinkStates(name) }
	}
	return opt
}

// rhcpServer is the RHCP server role running on node, if any.
func rhcpServer(eng *engine.Engine, node string) (*rhcp.Server, bool) {
	r, ok := eng.Role(node, "rhcp_server")
	if !ok {
		return nil, false
	}
	s, ok := r.(*rhcp.Server)
	return s, ok
}

// reprobeStarted asks the site's RHCP servers to probe a device whose RHCP
// client (alone or under its arbiter) was just started again. Its stop
// indication ended the server's probes (DESIGN.md §1), and the fresh client
// has undone the address it had: without a new probe it would wait forever.
func reprobeStarted(ctx context.Context, eng *engine.Engine, p *profiles.Profile, node, role string) error {
	n := p.Node(node)
	if n == nil || n.RHCPClient == nil || (role != "rhcp_client" && role != "arbiter") {
		return nil
	}
	id := n.RHCPClient.ClientID
	var errs []error
	for _, srv := range p.Nodes {
		rs, ok := rhcpServer(eng, srv.Name)
		if !ok {
			continue
		}
		err := rs.Reprobe(ctx, id)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", srv.Name, err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("started, but no RHCP server re-probes %s: %w", id, errors.Join(errs...))
	}
	return nil
}

// container names the role of a node that runs role inside it (the arbiter
// runs every address mechanism of a device), or "" when the engine runs it:
// the engine starts and stops only the roles it runs itself.
func container(eng *engine.Engine, node, role string) string {
	const arbiter = "arbiter"
	if role == arbiter {
		return ""
	}
	r, ok := eng.Role(node, arbiter)
	if !ok {
		return ""
	}
	c, ok := r.(engine.Container)
	if !ok {
		return ""
	}
	for _, inner := range c.Roles() {
		if inner.Kind() == role {
			return arbiter
		}
	}
	return ""
}

// labLinkStates reads whether each interface of the lab is up, keyed
// "node:iface".
func labLinkStates(name string) (map[string]bool, error) {
	st, err := lab.Status(name)
	if err != nil {
		return nil, err
	}
	up := map[string]bool{}
	for _, n := range st.Nodes {
		for _, l := range n.Links {
			up[n.Name+":"+l.Name] = l.Up
		}
	}
	return up, nil
}

// flapLink takes the A end of a lab link down for two seconds and brings it
// back: a cable pulled and plugged in again.
func flapLink(ctx context.Context, labName string, l ui.LabLink) error {
	var end profiles.Endpoint
	if err := end.UnmarshalText([]byte(l.A)); err != nil {
		return err
	}
	lb := &lab.Lab{Name: labName}
	if err := lab.SetLinkUp(lb, end, false); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
	}
	return lab.SetLinkUp(lb, end, true)
}
