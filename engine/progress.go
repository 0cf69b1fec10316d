package engine

import (
	"sync"
	"time"
)

// RoleStatus is where a role is in its life.
type RoleStatus string

const (
	StatusStarting RoleStatus = "starting"
	StatusRunning  RoleStatus = "running"
	StatusDone     RoleStatus = "done"
	StatusStopped  RoleStatus = "stopped"
	StatusFailed   RoleStatus = "failed"
)

// Step is one stage of a mechanism, e.g. "probe received".
type Step struct {
	Name string    `json:"name"`
	Done bool      `json:"done"`
	At   time.Time `json:"at,omitempty"`
}

// Progress tracks a role's status and steps for the overview. Safe for
// concurrent use.
type Progress struct {
	mu     sync.Mutex
	kind   string
	status RoleStatus
	steps  []Step
	err    string
	now    func() time.Time
}

// NewProgress returns the progress of one role.
func NewProgress(kind string) *Progress {
	return &Progress{kind: kind, status: StatusStarting, now: time.Now}
}

// Plan sets the steps the role expects to go through, in order.
func (p *Progress) Plan(names ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.steps = p.steps[:0]
	for _, n := range names {
		p.steps = append(p.steps, Step{Name: n})
	}
}

// Done marks a step done, adding it when it was not planned.
func (p *Progress) Done(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.steps {
		if p.steps[i].Name == name {
			if !p.steps[i].Done {
				p.steps[i].Done, p.steps[i].At = true, p.now()
			}
			return
		}
	}
	p.steps = append(p.steps, Step{Name: name, Done: true, At: p.now()})
}

// SetStatus records the role's status.
func (p *Progress) SetStatus(s RoleStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = s
}

// SetError records the last error (a message a person can act on).
func (p *Progress) SetError(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = msg
}

// Snapshot copies the progress.
func (p *Progress) Snapshot() RoleSnapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return RoleSnapshot{Kind: p.kind, Status: p.status, Steps: append([]Step(nil), p.steps...), Error: p.err}
}
