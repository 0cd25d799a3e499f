// Package promreg registers Prometheus collectors so that several components of one
// process share their series instead of failing: the services of `otelfleet dev` share
// one registry, and so do several election candidates, load-report publishers or
// registration clients in one process.
package promreg

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Shared registers c on reg and returns it, or returns the collector already registered
// under the same descriptor (when it has c's type). A nil reg registers nothing and
// returns c. Any other registration error is returned, with c.
func Shared[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("register metrics: %w", err)
}

// Registrar registers many collectors with Shared and keeps every error, so a
// constructor can build its metrics in one struct literal and check Err once.
type Registrar struct {
	Reg  prometheus.Registerer
	errs []error
}

// Add registers c with Shared on r.Reg and returns the collector to use.
func Add[C prometheus.Collector](r *Registrar, c C) C {
	got, err := Shared(r.Reg, c)
	if err != nil {
		r.errs = append(r.errs, err)
	}
	return got
}

// Err returns every registration error so far, joined.
func (r *Registrar) Err() error { return errors.Join(r.errs...) }

// Sum gathers g and returns the sum of the counter and gauge series of family name whose
// labels include every pair of labels (nil: every series); 0 when there is none. Tests
// and status pages read one figure with it.
func Sum(g prometheus.Gatherer, name string, labels map[string]string) (float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
						break
					}
				}
				if !found {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum, nil
}
