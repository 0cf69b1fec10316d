// Package site assembles an engine from a profile: for each node it opens a
// Host (the current namespace, or the node's lab namespace), opens the node's
// embedded store, and builds the roles named by the node's profile sections.
// It is the one place that knows every role, so cmd/fieldcon and the TUI
// share it.
package site

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/fieldcon/fieldcon/engine"
	"github.com/fieldcon/fieldcon/engine/store"
	"github.com/fieldcon/fieldcon/profiles"
)

// HostOpener opens the Host of a network namespace ("" for the current one).
type HostOpener func(netns string) (engine.Host, error)

// Options say how to build a site.
type Options struct {
	// Nodes limits the site to these nodes; empty means all.
	Nodes []string
	// Netns maps a node to its namespace; nil means every node runs in the
	// current namespace (real interfaces).
	Netns func(node string) string
	// OpenHost opens a namespace's Host (drivers/linux.Open, or a fake).
	OpenHost HostOpener
	// StateDir holds one store per node (<StateDir>/<node>.db). Empty means
	// no stores (roles that need one fail with a clear error).
	StateDir string
	// Bus receives the events; nil makes a new one.
	Bus *engine.Bus
	Log *slog.Logger
}

// Site is a built engine and what it holds open.
type Site struct {
	Profile *profiles.Profile
	Engine  *engine.Engine
	Hosts   map[string]engine.Host
	Netns   map[string]string
	stores  []*store.Store
}

// DefaultStateDir is where stores live when no --state is given: per profile
// under /var/lib/fieldcon (leases and allocations must survive reboots).
func DefaultStateDir(p *profiles.Profile, lab string) string {
	if lab != "" {
		return filepath.Join("/var/lib/fieldcon/labs", lab)
	}
	return filepath.Join("/var/lib/fieldcon", p.Name)
}

// Build opens hosts and stores and builds every role. On error everything
// opened so far is closed.
func Build(p *profiles.Profile, opt Options) (s *Site, err error) {
	if opt.OpenHost == nil {
		return nil, errors.New("site: no host opener")
	}
	bus := opt.Bus
	if bus == nil {
		bus = engine.NewBus(10000)
	}
	built := &Site{Profile: p, Engine: engine.New(bus, opt.Log), Hosts: map[string]engine.Host{}, Netns: map[string]string{}}
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	s = built
	nodes, err := selectNodes(p, opt.Nodes)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		netns := ""
		if opt.Netns != nil {
			netns = opt.Netns(n.Name)
		}
		h, err := opt.OpenHost(netns)
		if err != nil {
			return nil, fmt.Errorf("node %s: open host %q: %w", n.Name, netns, err)
		}
		s.Hosts[n.Name], s.Netns[n.Name] = h, netns
		var st *store.Store
		if opt.StateDir != "" {
			if st, err = store.Open(filepath.Join(opt.StateDir, n.Name+".db")); err != nil {
				return nil, fmt.Errorf("node %s: %w", n.Name, err)
			}
			s.stores = append(s.stores, st)
		}
		roles, err := Roles(p, n)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		s.Engine.AddNode(engine.NodeSpec{Name: n.Name, Netns: netns, Host: h, Roles: roles, Store: st})
	}
	return s, nil
}

func selectNodes(p *profiles.Profile, names []string) ([]*profiles.Node, error) {
	if len(names) == 0 {
		out := make([]*profiles.Node, len(p.Nodes))
		for i := range p.Nodes {
			out[i] = &p.Nodes[i]
		}
		return out, nil
	}
	if err := p.CheckNodes(names); err != nil {
		return nil, err
	}
	out := make([]*profiles.Node, len(names))
	for i, name := range names {
		out[i] = p.Node(name)
	}
	return out, nil
}

// Close closes the stores and hosts. It does not undo role changes: the
// engine does that when its Run returns.
func (s *Site) Close() {
	for _, st := range s.stores {
		st.Close()
	}
	for _, h := range s.Hosts {
		h.Close()
	}
}
