package platform

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
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
// service has done its first KV load.
func (r *Readiness) Gate(name string) *Gate {
	g := &Gate{}
	r.Add(name, func() error {
		if !g.open.Load() {
			return errNotYet
		}
		return nil
	})
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

// Gate is a readiness check that passes once opened.
type Gate struct{ open atomic.Bool }

// Open makes the gate's check pass from now on.
func (g *Gate) Open() { g.open.Store(true) }

// IsOpen reports whether Open was called.
func (g *Gate) IsOpen() bool { return g.open.Load() }
