package platform

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

var (
	errNotConnected = errors.New("not connected to NATS")
	errNotYet       = errors.New("not done yet")
)

// Readiness aggregates named checks; the process is ready when every check passes.
// Safe for concurrent use.
type Readiness struct {
	mu     sync.Mutex
	checks map[string]func() error
}

// NewReadiness returns an empty Readiness.
func NewReadiness() *Readiness { return &Readiness{checks: map[string]func() error{}} }

// Add registers a check under name; a later Add with the same name replaces it.
func (r *Readiness) Add(name string, check func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks[name] = check
}

// Gate registers a check that fails until the returned Gate is opened, e.g. once a
// service has done its first KV load, and fails again, with the reason, once the gate is
// failed.
func (r *Readiness) Gate(name string) *Gate {
	g := &Gate{}
	r.Add(name, g.check)
	return g
}

// CheckResult is one check's outcome.
type CheckResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Check runs every check and returns their results sorted by name, and whether all passed.
func (r *Readiness) Check() ([]CheckResult, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]CheckResult, 0, len(r.checks))
	all := true
	for name, c := range r.checks {
		res := CheckResult{Name: name, OK: true}
		if err := c(); err != nil {
			res.OK, res.Error, all = false, err.Error(), false
		}
		out = append(out, res)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, all
}

// Gate is a readiness check with three states: not yet (the initial state: the check
// fails with "not done yet"), open (passes) and failed (fails with the reason given to
// Fail). Safe for concurrent use.
type Gate struct {
	mu     sync.Mutex
	open   bool
	reason error
}

// Open makes the gate's check pass, also after a Fail.
func (g *Gate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open, g.reason = true, nil
}

// Fail makes the gate's check fail with "failed: <reason>" until the next Open, e.g.
// when a service's work stops after it was ready.
func (g *Gate) Fail(reason error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open, g.reason = false, reason
}

// IsOpen reports whether the gate's check passes.
func (g *Gate) IsOpen() bool { return g.check() == nil }

func (g *Gate) check() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.reason != nil:
		return fmt.Errorf("failed: %w", g.reason)
	case !g.open:
		return errNotYet
	}
	return nil
}
