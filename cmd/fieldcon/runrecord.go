package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/fieldcon/fieldcon/engine/site"
	"github.com/fieldcon/fieldcon/profiles"
)

// defaultRunDir is where every fieldcon that runs roles (run, the console,
// trace --run) leaves a record of what it runs and where its stores are,
// beside the labs' markers: the commands that read a running server's store
// (leases, forcerenew, nat) find it there without --state. FIELDCON_RUN_DIR
// names another directory, for users who cannot write /run.
const defaultRunDir = "/run/fieldcon/runs"

func runDir() string {
	if d := os.Getenv("FIELDCON_RUN_DIR"); d != "" {
		return d
	}
	return defaultRunDir
}

// runRecord is the record of one running fieldcon.
type runRecord struct {
	PID         int       `json:"pid"`
	Profile     string    `json:"profile"`      // profileID: the file's absolute path, or embedded:NAME
	ProfileName string    `json:"profile_name"` // the profile's name
	Lab         string    `json:"lab,omitempty"`
	Nodes       []string  `json:"nodes"` // the nodes it runs
	State       string    `json:"state"` // absolute
	Started     time.Time `json:"started"`
}

// runs reports whether the record's fieldcon runs node.
func (r runRecord) runs(node string) bool { return slices.Contains(r.Nodes, node) }

// where names where the run runs, for messages.
func (r runRecord) where() string {
	if r.Lab != "" {
		return "in lab " + r.Lab
	}
	return "on this machine's interfaces"
}

// profileID names a profile the same way however -p spelled it: a file by
// its absolute path (symbolic links resolved), an embedded profile by its
// source, embedded:NAME.
func profileID(p *profiles.Profile) string {
	if strings.HasPrefix(p.Source, "embedded:") {
		return p.Source
	}
	path, err := filepath.Abs(p.Source)
	if err != nil {
		return p.Source
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real
	}
	return path
}

// recordRun writes r into dir and keeps it until release. The record is
// flock(2)ed while its process lives, so a record a crash left behind is
// known stale (and removed by the next reader) instead of pointing at
// stores nobody serves. It is locked before it gets its name, so no reader
// ever sees it unlocked while its run lives.
func recordRun(dir string, r runRecord) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("record the run in %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".new-*")
	if err != nil {
		return nil, fmt.Errorf("record the run in %s: %w", dir, err)
	}
	fail := func(err error) (func(), error) {
		os.Remove(f.Name())
		f.Close()
		return nil, fmt.Errorf("record the run in %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fail(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fail(err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	path := filepath.Join(dir, "run-"+strings.TrimPrefix(filepath.Base(f.Name()), ".new-")+".json")
	if err := os.Rename(f.Name(), path); err != nil {
		return fail(err)
	}
	return func() {
		os.Remove(path) // while still locked, so no reader takes it for stale
		f.Close()
	}, nil
}

// liveRuns reads the records of the fieldcons running now, oldest first;
// records of processes that ended without removing theirs are removed (when
// the caller may) and skipped.
func liveRuns(dir string) ([]runRecord, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "run-*.json"))
	if err != nil {
		return nil, err
	}
	var out []runRecord
	for _, path := range paths {
		r, live, err := readRun(path)
		if err != nil {
			return nil, err
		}
		if live {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

func readRun(path string) (r runRecord, live bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, false, nil // its run ended meanwhile
	}
	if err != nil {
		if permissionDenied(err) {
			return r, false, needRoot("reading the record of a running fieldcon, " + path)
		}
		return r, false, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		// Nobody holds it: a crashed run's. Removed under our lock, which
		// the run never takes again.
		os.Remove(path)
		return r, false, nil
	} else if !errors.Is(err, syscall.EWOULDBLOCK) {
		return r, false, fmt.Errorf("%s: %w", path, err)
	}
	if err := json.NewDecoder(f).Decode(&r); err != nil {
		return r, false, nil // damaged: no run can be found from it
	}
	return r, true, nil
}

// serverStore is where a server node keeps its store.
type serverStore struct {
	dir     string
	running *runRecord // the fieldcon that runs the node; nil if none
	note    string     // what the user should know about dir, or ""
}

// findServerStore finds the state directory of node's server: --state when
// given; else the one of the fieldcon that runs node of this profile, in
// the lab --lab names or (without --lab) on this machine's interfaces; else
// the node's default store when there is one. Anything else is an error
// that says which --state to pass: reading an empty, fresh store would
// report "no leases" of a server that has some. again is the command line,
// after the site flags, that repeats this one (for the hints).
func (f *siteFlags) findServerStore(cmd string, p *profiles.Profile, node string, again ...string) (serverStore, error) {
	labName := ""
	if f.useLab {
		var err error
		if labName, err = f.checkedLab(p); err != nil {
			return serverStore{}, err
		}
	}
	id := profileID(p)
	runs, err := liveRuns(runDir())
	if err != nil && f.stateDir == "" {
		return serverStore{}, err
	}
	var mine, others []runRecord
	for _, r := range runs {
		switch {
		case !r.runs(node):
		case r.Profile == id && r.Lab == labName:
			mine = append(mine, r)
		case r.Profile == id || r.ProfileName == p.Name:
			others = append(others, r)
		}
	}
	hint := func(r runRecord) string {
		g := *f
		g.useLab, g.labName, g.stateDir = r.Lab != "", r.Lab, r.State
		return fmt.Sprintf("pid %d runs it %s with --state %s: `fieldcon %s %s`", r.PID, r.where(), r.State, cmd, strings.Join(append(g.asArgs(), again...), " "))
	}
	where := "on this machine's interfaces"
	if labName != "" {
		where = "in lab " + labName
	}
	if f.stateDir != "" {
		dir := f.stateDir
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		s := serverStore{dir: dir}
		for i, r := range mine {
			if r.State == dir {
				s.running = &mine[i]
				return s, nil
			}
		}
		if len(mine) > 0 {
			s.note = fmt.Sprintf("note: node %s's running server keeps its store elsewhere: %s", node, hint(mine[0]))
		}
		return s, nil
	}
	switch len(mine) {
	case 1:
		return serverStore{dir: mine[0].State, running: &mine[0]}, nil
	case 0:
	default:
		var hints []string
		for _, r := range mine {
			hints = append(hints, "  "+hint(r))
		}
		return serverStore{}, usageError{fmt.Errorf("%d fieldcon runs of profile %s are running node %s %s; say which with --state DIR:\n%s",
			len(mine), p.Name, node, where, strings.Join(hints, "\n"))}
	}
	def := site.DefaultStateDir(p, labName)
	if _, err := os.Stat(filepath.Join(def, node+".db")); err == nil {
		return serverStore{dir: def, note: fmt.Sprintf("note: no fieldcon run of profile %s is running node %s %s; read the store it left in %s", p.Name, node, where, def)}, nil
	}
	msg := fmt.Sprintf("no fieldcon run of profile %s is running node %s %s, and the node has no store in %s", p.Name, node, where, def)
	if len(others) == 0 {
		return serverStore{}, fmt.Errorf("%s; start the server (`fieldcon run -p %s%s`), or give --state DIR, the directory it ran with", msg, f.profile, labFlag(f.useLab)+labNameFlag(*f))
	}
	var hints []string
	for _, r := range others {
		hints = append(hints, "  "+hint(r))
	}
	return serverStore{}, fmt.Errorf("%s; it runs elsewhere:\n%s", msg, strings.Join(hints, "\n"))
}
