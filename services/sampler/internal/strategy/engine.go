package strategy

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

// ErrTuning is wrapped by every Tuning validation error.
var ErrTuning = errors.New("invalid sampler tuning")

// Tuning are the knobs of the math that the fleet configuration does not carry.
type Tuning struct {
	// Alpha is the EWMA weight of the newest observation, in (0, 1]. Higher follows
	// traffic faster, lower smooths noise more; 1 uses the latest observation only.
	Alpha float64
	// JumpRatio makes the estimate jump to the latest observation when traffic changes
	// by this factor or more either way between intervals (> 1). It lets a 10× step
	// land on target at once while the EWMA damps ordinary noise.
	JumpRatio float64
	// ServiceFloorQPS is the kept spans per second (fleet-wide) every seen service keeps
	// at least under the adaptive strategy and the cost cap (>= 0; 0 disables).
	ServiceFloorQPS float64
}

// DefaultTuning returns alpha 0.5, jumps at 2× and a floor of 1 span/s per service.
func DefaultTuning() Tuning { return Tuning{Alpha: 0.5, JumpRatio: 2, ServiceFloorQPS: 1} }

// Validate names each invalid field.
func (t Tuning) Validate() error {
	var errs []error
	if !(t.Alpha > 0 && t.Alpha <= 1) {
		errs = append(errs, fmt.Errorf("%w: alpha %v: want (0, 1]", ErrTuning, t.Alpha))
	}
	if !(t.JumpRatio > 1) {
		errs = append(errs, fmt.Errorf("%w: jump ratio %v: want > 1", ErrTuning, t.JumpRatio))
	}
	if !(t.ServiceFloorQPS >= 0) || t.ServiceFloorQPS > 1e9 {
		errs = append(errs, fmt.Errorf("%w: service floor %v spans/s: want [0, 1e9]", ErrTuning, t.ServiceFloorQPS))
	}
	return errors.Join(errs...)
}

// Observation is the fleet's load as the live collectors last reported it.
type Observation struct {
	// Services is the fleet-wide spans per second of each listed service.
	Services map[string]float64
	// FleetQPS is the total spans per second of the live collectors, plus what the live
	// routers received and did not forward; what exceeds the sum of Services is "other"
	// traffic (reporters list top services only).
	FleetQPS float64
	// LoadQPS and Capacity are the spans per second and the capacity of the live
	// collectors that report a capacity; utilisation is LoadQPS/Capacity.
	LoadQPS  float64
	Capacity float64
	// Collectors is the number of live collectors.
	Collectors int
	// Routers is the number of live OTLP routers whose received less forwarded traffic
	// is in FleetQPS and Services.
	Routers int
}

// Utilization returns LoadQPS/Capacity, and false when no collector reports capacity.
// A quotient too large for a float64 (a subnormal capacity) is math.MaxFloat64: the
// decision must stay encodable, and JSON has no +Inf.
func (o Observation) Utilization() (float64, bool) {
	if o.Capacity <= 0 {
		return 0, false
	}
	return min(o.LoadQPS/o.Capacity, math.MaxFloat64), true
}

// Transition is a change of degradation state.
type Transition struct {
	// Degraded is the new state: true for sampling.degraded, false for .recovered.
	Degraded bool
	// Reason says why, e.g. "utilization 0.85 >= threshold 0.8".
	Reason string
}

// Degrader is the degradation state machine with hysteresis: it enters at or above
// Threshold and leaves only below RecoveryThreshold. The zero value is not degraded.
type Degrader struct {
	Degraded bool
	Since    time.Time
}

// Update applies one utilisation reading (known is false when no collector reports a
// capacity: the state is then kept) and returns the transition, if any.
func (d *Degrader) Update(c fleetconfig.Degradation, util float64, known bool, now time.Time) *Transition {
	switch {
	case !c.Enabled:
		if d.Degraded {
			*d = Degrader{}
			return &Transition{Degraded: false, Reason: "degradation disabled in the config"}
		}
	case !known:
	case !d.Degraded && util >= c.Threshold:
		*d = Degrader{Degraded: true, Since: now}
		return &Transition{Degraded: true, Reason: fmt.Sprintf("utilization %.4g >= threshold %g", util, c.Threshold)}
	case d.Degraded && util < c.RecoveryThreshold:
		*d = Degrader{}
		return &Transition{Degraded: false, Reason: fmt.Sprintf("utilization %.4g < recovery_threshold %g", util, c.RecoveryThreshold)}
	}
	return nil
}

// Engine carries the state one decision hands to the next: the smoothed traffic per
// service and the degradation state. It is not safe for concurrent use.
type Engine struct {
	t     Tuning
	est   map[string]float64
	other float64
	deg   Degrader
}

// NewEngine returns an engine with no history.
func NewEngine(t Tuning) *Engine { return &Engine{t: t, est: map[string]float64{}} }

// Seed adopts the state of a stored decision (a new leader continues where the
// previous one stopped): its smoothed traffic and its degradation state.
func (e *Engine) Seed(d *events.Decision) {
	e.est = make(map[string]float64, len(d.Services))
	for name, s := range d.Services {
		if s.QPS > 0 {
			e.est[name] = s.QPS
		}
	}
	e.other = d.Inputs.OtherQPS
	e.deg = Degrader{Degraded: d.Degraded, Since: d.DegradedSince}
}

// Degraded returns the degradation state.
func (e *Engine) Degraded() Degrader { return e.deg }

// smooth merges observation obs into the estimate prev.
func (e *Engine) smooth(prev, obs float64) float64 {
	if prev <= 0 || obs <= 0 {
		return max(obs, 0)
	}
	if r := obs / prev; r >= e.t.JumpRatio || r <= 1/e.t.JumpRatio {
		return obs
	}
	return e.t.Alpha*obs + (1-e.t.Alpha)*prev
}

// Step folds obs into the state, updates the degradation state and computes the
// decision for p at now. It returns the transition of the degradation state, if any.
func (e *Engine) Step(p events.SamplingParams, obs Observation, now time.Time) (events.Decision, *Transition) {
	p.ServiceFloorQPS = e.t.ServiceFloorQPS
	var listed float64
	next := make(map[string]float64, len(obs.Services))
	for name, q := range obs.Services {
		if q <= 0 {
			continue
		}
		listed += q
		if s := e.smooth(e.est[name], q); s > 0 {
			next[name] = s
		}
	}
	// Services absent from obs have stopped (or dropped out of every top list): their
	// estimate goes to the latest observation, zero, and they are forgotten.
	e.est = next
	e.other = e.smooth(e.other, max(obs.FleetQPS-listed, 0))
	util, known := obs.Utilization()
	tr := e.deg.Update(p.Degradation, util, known, now)
	d := Compute(p, Inputs{
		Services: e.est, OtherQPS: e.other, FleetQPS: obs.FleetQPS, Capacity: obs.Capacity,
		Utilization: util, Collectors: obs.Collectors, Degraded: e.deg.Degraded, DegradedSince: e.deg.Since,
	})
	d.At = now
	return d, tr
}
