package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fieldcon/fieldcon/drivers/lab"
	"github.com/fieldcon/fieldcon/drivers/linux"
	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/site"
	"github.com/fieldcon/fieldcon/profiles"
)

// siteFlags are the flags every command that runs a site shares.
type siteFlags struct {
	profile  string
	nodes    stringList
	useLab   bool
	labName  string
	stateDir string
}

// siteTexts are what the site flags mean to one command; a flag with no
// text is not one of the command's.
type siteTexts struct {
	profile  string
	node     string // --node's text
	nodeMeta string // its value's placeholder: NODE, SERVER
	lab      string
	labName  string
	state    string
}

// register adds the site flags the command takes, with its texts.
func (f *siteFlags) register(c *cmdFlags, t siteTexts) {
	if t.profile != "" {
		c.stringVar(&f.profile, "p", "PROFILE", t.profile)
	}
	if t.node != "" {
		c.listVar(&f.nodes, "node", t.nodeMeta, t.node)
	}
	if t.lab != "" {
		c.boolVar(&f.useLab, "lab", t.lab)
	}
	if t.labName == "" {
		t.labName = "the lab's name, whose namespaces are fc-NAME-NODE (default: the profile's name)"
	}
	c.stringVar(&f.labName, "lab-name", "NAME", t.labName)
	if t.state != "" {
		c.stringVar(&f.stateDir, "state", "DIR", t.state)
	}
}

// runningState is --state's text for the commands that read a running
// server's store.
const runningState = "the state directory the server was run with (default: the one of the fieldcon that runs the node — fieldcon run, the console or trace --run — else the node's default store)"

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// usageError marks errors that exit 2.
type usageError struct{ error }

// session is a built site, with the lab it runs in.
type session struct {
	profile  *profiles.Profile
	labName  string
	builtLab bool   // we built the lab and remove it on close
	unlock   func() // releases lab.Lock
	site     *site.Site
	// unrecord removes the run's record (recordRun); recordErr says why
	// there is none, for the caller to tell the user.
	unrecord  func()
	recordErr error
	stateDir  string // absolute
}

// note is what the user should know about the session once it runs.
func (s *session) note() string {
	if s.recordErr == nil {
		return ""
	}
	return fmt.Sprintf("note: %v; fieldcon leases, forcerenew and nat will need this run's --state %s", s.recordErr, s.stateDir)
}

// loadProfile loads -p, naming the problem and the fix when it is missing.
func (f *siteFlags) loadProfile() (*profiles.Profile, error) {
	if f.profile == "" {
		return nil, usageError{fmt.Errorf("no profile: give -p PROFILE (a file, or one of: %s)", strings.Join(profiles.Embedded(), ", "))}
	}
	p, err := profiles.Load(f.profile)
	if err != nil {
		return nil, usageError{err}
	}
	return p, nil
}

func (f *siteFlags) lab(p *profiles.Profile) string {
	if f.labName != "" {
		return f.labName
	}
	return p.Name
}

// checkedLab is lab, refusing a name that cannot name namespaces (the
// profile's name may be one, e.g. with capitals) and saying how to pick one.
func (f *siteFlags) checkedLab(p *profiles.Profile) (string, error) {
	name := f.lab(p)
	if err := lab.ValidName(name); err != nil {
		return "", usageError{fmt.Errorf("%w; choose one with --lab-name NAME", err)}
	}
	return name, nil
}

// open loads the profile, brings its lab up when asked (reusing one that is
// already up), and builds the site.
func (f *siteFlags) open(ctx context.Context, bus *engine.Bus) (*session, error) {
	p, err := f.loadProfile()
	if err != nil {
		return nil, err
	}
	if err := p.CheckNodes(f.nodes); err != nil {
		return nil, usageError{err}
	}
	if !f.useLab && len(f.nodes) == 0 && len(p.Nodes) > 1 {
		// Several nodes in one namespace would all configure this machine's
		// interfaces at once: a lab profile run without --lab by mistake.
		return nil, usageError{fmt.Errorf("profile %s has %d nodes (%s); on this machine's own interfaces run one of them with --node NAME, or all of them in network namespaces with --lab", p.Name, len(p.Nodes), strings.Join(p.NodeNames(), ", "))}
	}
	s := &session{profile: p}
	opt := site.Options{Nodes: f.nodes, Bus: bus, StateDir: f.stateDir, OpenHost: openLinux}
	if f.useLab {
		if p.Lab == nil {
			return nil, usageError{fmt.Errorf("profile %s has no [lab] section; run without --lab on real interfaces", p.Source)}
		}
		if os.Geteuid() != 0 {
			return nil, needRoot("a lab needs root for its network namespaces")
		}
		if s.labName, err = f.checkedLab(p); err != nil {
			return nil, err
		}
		if s.unlock, err = lab.Lock(s.labName); err != nil {
			return nil, err
		}
		if lab.Exists(s.labName) {
			if err := labFits(p, s.labName); err != nil {
				s.close()
				return nil, err
			}
		} else {
			if _, err := lab.Up(ctx, p, s.labName); err != nil {
				s.close()
				if ctx.Err() != nil {
					return nil, fmt.Errorf("lab %s: interrupted while building it; nothing was left behind", s.labName)
				}
				return nil, fmt.Errorf("lab %s: %w", s.labName, err)
			}
			s.builtLab = true
			if f.stateDir == "" {
				if err := resetLabState(p, s.labName); err != nil {
					s.close()
					return nil, err
				}
			}
		}
		name := s.labName
		opt.Netns = func(node string) string { return lab.NetnsName(name, node) }
	}
	if opt.StateDir == "" {
		opt.StateDir = site.DefaultStateDir(p, s.labName)
	}
	s.site, err = site.Build(p, opt)
	if err != nil {
		s.close()
		if permissionDenied(err) {
			return nil, usageError{fmt.Errorf("%w: run it as root (sudo fieldcon ...), or give the binary CAP_NET_ADMIN and CAP_NET_RAW", err)}
		}
		return nil, err
	}
	s.record(opt.StateDir, f.nodes)
	return s, nil
}

// record leaves the record by which leases, forcerenew and nat find this
// run's stores (runrecord.go).
func (s *session) record(stateDir string, nodes []string) {
	if abs, err := filepath.Abs(stateDir); err == nil {
		stateDir = abs
	}
	s.stateDir = stateDir
	if len(nodes) == 0 {
		nodes = s.profile.NodeNames()
	}
	s.unrecord, s.recordErr = recordRun(runDir(), runRecord{PID: os.Getpid(), Profile: profileID(s.profile), ProfileName: s.profile.Name,
		Lab: s.labName, Nodes: nodes, State: stateDir, Started: time.Now()})
}

// labFits checks that a lab that is already up was built for this profile:
// reusing another profile's lab of the same name would run the roles in
// namespaces that lack nodes or links.
func labFits(p *profiles.Profile, name string) error {
	l, err := lab.Status(name)
	if err != nil {
		return fmt.Errorf("lab %s: %w", name, err)
	}
	have := map[string]bool{}
	for _, n := range l.Nodes {
		have[n.Name] = true
	}
	var missing []string
	for _, n := range p.Nodes {
		if !have[n.Name] {
			missing = append(missing, n.Name)
		}
	}
	if (l.Profile != "" && l.Profile != p.Name) || len(missing) > 0 {
		return usageError{fmt.Errorf("lab %s is up but was built from profile %q, not %q (missing nodes: %s); remove it with `fieldcon lab down -p %s --lab-name %s`, or run this profile under another --lab-name",
			name, l.Profile, p.Name, strings.Join(missing, ", "), l.Profile, name)}
	}
	return nil
}

// asArgs repeats the flags that name the site, for hints that give a
// command to run next.
func (f *siteFlags) asArgs() []string {
	args := []string{"-p", f.profile}
	for _, n := range f.nodes {
		args = append(args, "--node", n)
	}
	if f.useLab {
		args = append(args, "--lab")
	}
	if f.labName != "" {
		args = append(args, "--lab-name", f.labName)
	}
	if f.stateDir != "" {
		args = append(args, "--state", f.stateDir)
	}
	return args
}

// exitCode is 2 for a usage error (wrong invocation, missing root), else 1.
func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

// needRoot is the error of a command run without the privileges it needs:
// it says what to do, and exits 2 like the console does (the invocation is
// wrong, not the run).
func needRoot(what string) error {
	return usageError{fmt.Errorf("%s: run it as root (sudo fieldcon ...)", what)}
}

// permissionDenied reports whether err comes from missing privileges. The
// netlink library flattens some errno values into text, hence the fallback.
func permissionDenied(err error) bool {
	return errors.Is(err, fs.ErrPermission) || strings.Contains(err.Error(), "operation not permitted")
}

// resetLabState empties the default stores of a lab that was just built.
// The namespaces are new, so whatever the stores remember about their
// devices is stale: an RHCP server would otherwise keep a client
// "confirmed" from an earlier run and never probe the new, unaddressed
// device. A lab that was already up keeps its state (its devices do too).
func resetLabState(p *profiles.Profile, labName string) error {
	if err := lab.ValidName(labName); err != nil {
		return err
	}
	dir := site.DefaultStateDir(p, labName)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("lab %s: clear the stores a previous run left in %s: %w", labName, dir, err)
	}
	return nil
}

// close releases the site and removes the lab if this session built it.
func (s *session) close() error {
	if s.unrecord != nil {
		s.unrecord()
		s.unrecord = nil
	}
	if s.site != nil {
		s.site.Close()
	}
	var err error
	if s.builtLab {
		err = lab.Down(s.labName)
	}
	if s.unlock != nil {
		s.unlock()
		s.unlock = nil
	}
	return err
}

func openLinux(netns string) (engine.Host, error) { return linux.Open(netns) }
