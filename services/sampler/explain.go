package samplersvc

import (
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/services/sampler/internal/strategy"
)

// Explanation is how a decision's rate for one service was derived.
type Explanation = strategy.Explanation

// Explain recomputes, from the parameters and inputs stored in d, how the rate of
// service was derived: one line per step (base rate and where it came from, adaptive
// scaling and clamps, the cost cap, degradation, regional multipliers). Rate is the
// recomputed rate and Stored the rate d serves; they agree unless d was written by a
// build with different math.
func Explain(d *events.Decision, service string) Explanation { return strategy.Explain(d, service) }
