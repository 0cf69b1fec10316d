package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/fieldcon/fieldcon/engine/store"
)

// NodeSpec is a node to run: its host, its roles and its store.
type NodeSpec struct {
	Name  string
	Netns string // "" for the current namespace
	Host  Host
	Roles []Role
	// Store is the node's embedded store; may be nil.
	Store *store.Store
}

// Engine runs the roles of its nodes and publishes what they do on its bus.
type Engine struct {
	// StopTimeout is how long a role may take to return after its context
	// ends; a role still running then is reported and left running.
	StopTimeout time.Duration

	bus *Bus
	log *slog.Logger

	mu     sync.Mutex
	nodes  []*node
	runCtx context.Context // the context Run was given; roles started later live in it
}

type node struct {
	spec  NodeSpec
	roles []*runningRole
}

type runningRole struct {
	stopped  bool // stopped by StopRole; StartRole runs it again
	role     Role
	env      *Env
	cancel   context.CancelFunc
	done     chan struct{}
	progress *Progress
}

// New returns an engine publishing on bus.
func New(bus *Bus, log *slog.Logger) *Engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{bus: bus, log: log, StopTimeout: 10 * time.Second}
}

// Bus is the engine's event bus.
func (e *Engine) Bus() *Bus { return e.bus }

// AddNode registers a node; call before Run.
func (e *Engine) AddNode(spec NodeSpec) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nodes = append(e.nodes, &node{spec: spec})
}

// Run starts every role of every node and blocks until ctx ends. Then it
// stops the roles and undoes every change of roles that are not persistent,
// newest role first. The returned error joins undo failures.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	e.runCtx = ctx
	for _, n := range e.nodes {
		for _, r := range n.spec.Roles {
			n.roles = append(n.roles, e.start(ctx, n, r))
		}
	}
	e.mu.Unlock()
	<-ctx.Done()
	return e.stopAll()
}

func (e *Engine) start(ctx context.Context, n *node, r Role) *runningRole {
	emit := e.bus.NodeEmitter(n.spec.Name)
	rctx, cancel := context.WithCancel(ctx)
	rr := &runningRole{
		role:     r,
		cancel:   cancel,
		done:     make(chan struct{}),
		progress: NewProgress(r.Kind()),
	}
	rr.env = &Env{
		Node:     n.spec.Name,
		Host:     NewTracked(n.spec.Host, emit),
		Emit:     emit,
		Store:    n.spec.Store,
		Progress: rr.progress,
		Log:      e.log.With("node", n.spec.Name, "role", r.Kind()),
	}
	go func() {
		defer close(rr.done)
		rr.progress.SetStatus(StatusRunning)
		emit.Emit(KindRoleStarted, Fields{"role": r.Kind()})
		err := runGuarded(rctx, r, rr.env)
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			rr.progress.SetStatus(StatusFailed)
			rr.progress.SetError(err.Error())
			emit.Emit(KindError, Fields{"role": r.Kind(), "message": err.Error()})
		case rctx.Err() != nil:
			rr.progress.SetStatus(StatusStopped)
		default:
			rr.progress.SetStatus(StatusDone)
		}
		emit.Emit(KindRoleStopped, Fields{"role": r.Kind()})
	}()
	return rr
}

// runGuarded turns a role's panic into an error: one broken role must not
// take down the console and leave the host half-configured.
func runGuarded(ctx context.Context, r Role, env *Env) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: internal error (please report): %v", r.Kind(), p)
		}
	}()
	return r.Run(ctx, env)
}

func (e *Engine) stopAll() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for i := len(e.nodes) - 1; i >= 0; i-- {
		n := e.nodes[i]
		for j := len(n.roles) - 1; j >= 0; j-- {
			if n.roles[j].stopped {
				continue
			}
			if err := e.stopRole(n, n.roles[j]); err != nil {
				errs = append(errs, err)
			}
		}
		n.roles = nil
	}
	return errors.Join(errs...)
}

func (e *Engine) stopRole(n *node, rr *runningRole) error {
	rr.cancel()
	select {
	case <-rr.done:
	case <-time.After(e.StopTimeout):
		return fmt.Errorf("node %s: role %s did not stop within %s; its changes are left in place", n.spec.Name, rr.role.Kind(), e.StopTimeout)
	}
	if p, ok := rr.role.(Persister); ok && p.Persistent() {
		return nil
	}
	if err := rr.env.Host.Undo(); err != nil {
		return fmt.Errorf("node %s: role %s: %w", n.spec.Name, rr.role.Kind(), err)
	}
	return nil
}

// RestartRole stops a node's role (undoing its changes) and starts it again.
func (e *Engine) RestartRole(ctx context.Context, nodeName, kind string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, i, err := e.findLocked(nodeName, kind)
	if err != nil {
		return err
	}
	if rr := n.roles[i]; !rr.stopped {
		if err := e.stopRole(n, rr); err != nil {
			return err
		}
	}
	n.roles[i] = e.start(ctx, n, n.roles[i].role)
	return nil
}

// StopRole stops a node's role and undoes its changes (unless it persists);
// the overview shows it stopped until StartRole.
func (e *Engine) StopRole(nodeName, kind string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, i, err := e.findLocked(nodeName, kind)
	if err != nil {
		return err
	}
	rr := n.roles[i]
	if rr.stopped {
		return fmt.Errorf("node %s: role %s is already stopped", nodeName, kind)
	}
	err = e.stopRole(n, rr)
	select {
	case <-rr.done:
		// Only a role whose goroutine ended counts as stopped: StartRole
		// must never run a second copy beside one that did not stop.
		rr.stopped = true
		// A role that had finished its job ("done") is stopped now too.
		rr.progress.SetStatus(StatusStopped)
	default:
	}
	return err
}

// StartRole starts a role that StopRole stopped, in the engine's run context.
func (e *Engine) StartRole(nodeName, kind string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, i, err := e.findLocked(nodeName, kind)
	if err != nil {
		return err
	}
	if !n.roles[i].stopped {
		return fmt.Errorf("node %s: role %s is running; stop it first or restart it", nodeName, kind)
	}
	if e.runCtx == nil || e.runCtx.Err() != nil {
		return fmt.Errorf("the engine is not running")
	}
	n.roles[i] = e.start(e.runCtx, n, n.roles[i].role)
	return nil
}

func (e *Engine) findLocked(nodeName, kind string) (*node, int, error) {
	for _, n := range e.nodes {
		if n.spec.Name != nodeName {
			continue
		}
		var kinds []string
		for i, rr := range n.roles {
			if rr.role.Kind() == kind {
				return n, i, nil
			}
			kinds = append(kinds, rr.role.Kind())
		}
		return nil, 0, fmt.Errorf("node %s has no role %q; its roles: %v", nodeName, kind, kinds)
	}
	return nil, 0, fmt.Errorf("no node %q", nodeName)
}

// Container is implemented by roles that run other roles (the arbiter runs
// every address mechanism of a device), so that actions can reach them.
type Container interface {
	Roles() []Role
}

// Role returns a node's role by kind, also one run inside a Container, for
// actions (re-probe, FORCERENEW) that the TUI or CLI trigger.
func (e *Engine) Role(nodeName, kind string) (Role, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.nodes {
		if n.spec.Name != nodeName {
			continue
		}
		for _, rr := range n.roles {
			if r, ok := findRole(rr.role, kind); ok {
				return r, true
			}
		}
	}
	return nil, false
}

func findRole(r Role, kind string) (Role, bool) {
	if r.Kind() == kind {
		return r, true
	}
	if c, ok := r.(Container); ok {
		for _, inner := range c.Roles() {
			if found, ok := findRole(inner, kind); ok {
				return found, true
			}
		}
	}
	return nil, false
}

// Snapshot copies the state of every node: role progress, the addresses the
// engine configured, and what Reporter roles add.
func (e *Engine) Snapshot() Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Snapshot{Time: time.Now()}
	for _, n := range e.nodes {
		ns := NodeSnapshot{Name: n.spec.Name, Netns: n.spec.Netns}
		for _, rr := range n.roles {
			ns.Roles = append(ns.Roles, rr.progress.Snapshot())
			ns.Addresses = append(ns.Addresses, rr.env.Host.AddedAddresses()...)
			if rep, ok := rr.role.(Reporter); ok {
				rep.Report(&ns)
			}
		}
		sort.SliceStable(ns.Addresses, func(i, j int) bool { return ns.Addresses[i].Iface < ns.Addresses[j].Iface })
		s.Nodes = append(s.Nodes, ns)
	}
	return s
}
