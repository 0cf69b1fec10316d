package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

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

func (f *siteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.profile, "p", "", "profile: a file path or an embedded profile's name")
	fs.Var(&f.nodes, "node", "run only this node (repeatable; default all)")
	fs.BoolVar(&f.useLab, "lab", false, "run the nodes in the profile's lab namespaces (built if not up)")
	fs.StringVar(&f.labName, "lab-name", "", "lab name (namespaces fc-NAME-NODE); default the profile's name")
	fs.StringVar(&f.stateDir, "state", "", "directory of the nodes' stores (default /var/lib/fieldcon/…)")
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// usageError marks errors that exit 2.
type usageError struct{ error }

// session is a built site, with the lab it runs in.
type session struct {
	profile  *profiles.Profile
	labName  string
	builtLab bool // we built the lab and remove it on close
	site     *site.Site
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

// open loads the profile, brings its lab up when asked (reusing one that is
// already up), and builds the site.
func (f *siteFlags) open(ctx context.Context, bus *engine.Bus) (*session, error) {
	p, err := f.loadProfile()
	if err != nil {
		return nil, err
	}
	s := &session{profile: p}
	opt := site.Options{Nodes: f.nodes, Bus: bus, StateDir: f.stateDir, OpenHost: openLinux}
	if f.useLab {
		if p.Lab == nil {
			return nil, usageError{fmt.Errorf("profile %s has no [lab] section; run without --lab on real interfaces", p.Source)}
		}
		if os.Geteuid() != 0 {
			return nil, errors.New("a lab needs root for network namespaces: run with sudo")
		}
		s.labName = f.lab(p)
		if !lab.Exists(s.labName) {
			if _, err := lab.Up(ctx, p, s.labName); err != nil {
				return nil, fmt.Errorf("lab %s: %w", s.labName, err)
			}
			s.builtLab = true
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
		return nil, err
	}
	return s, nil
}

// close releases the site and removes the lab if this session built it.
func (s *session) close() error {
	if s.site != nil {
		s.site.Close()
	}
	if s.builtLab {
		return lab.Down(s.labName)
	}
	return nil
}

func openLinux(netns string) (engine.Host, error) { return linux.Open(netns) }
