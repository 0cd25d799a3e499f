package events

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

// Decision is the sampling decision in force: the value of key "decision" in the KV
// bucket otlp_sampling, written by the sampler leader by compare-and-set every interval,
// watched by every sampler replica (which serve it to SDKs through the Jaeger
// remote-sampling API) and by routers (which apply it with pkg/tracesample).
//
// How a consumer applies it to a span of service S in region R:
//
//	rate := d.RateFor(S) * d.RegionRate(R)
//	keep := tracesample.NewSampler(rate).Keep(traceID)
//
// RateFor returns Services[S].Rate when the leader saw traffic from S, else the rate of
// the first priority rule in Rules whose globs match S, else DefaultRate.
//
// A decision is self-describing: Params holds the configuration values it was computed
// from and Inputs the observations and scale factors, so that `otelfleet sampling
// explain` can show how any rate was derived without the config history.
type Decision struct {
	V int `json:"v"`
	// Version counts decisions: every write stores the previous stored version plus one.
	Version uint64 `json:"version"`
	// Leader is the instance id of the sampler leader that computed the decision.
	Leader string `json:"leader"`
	// Token is the fencing token of the leader's term (the otlp_leases revision that won
	// it). Stored decisions never go back to a smaller token: a leader refuses to
	// overwrite a decision made under a newer term.
	Token uint64 `json:"token"`
	// At is when the decision was computed (leader clock).
	At time.Time `json:"at"`
	// IntervalMS is the leader's decision interval in milliseconds: a decision older
	// than a few intervals means no leader is computing.
	IntervalMS int64 `json:"interval_ms"`
	// ConfigVersion is the version of the global config the decision used (0: built-in
	// defaults, no config stored yet).
	ConfigVersion uint64 `json:"config_version"`
	// Strategy names the strategies combined, in the order they were applied, joined by
	// "+", e.g. "priority_based+adaptive"; "sampling_rate" when none is configured.
	Strategy string `json:"strategy"`
	// GlobalRate is the fraction of the fleet's spans kept at these rates (predicted kept
	// spans per second over observed spans per second); DefaultRate when there is no
	// traffic.
	GlobalRate float64 `json:"global_rate"`
	// DefaultRate is the rate of a service that matches no priority rule and was not seen
	// in the load reports.
	DefaultRate float64 `json:"default_rate"`
	// Degraded is true while the fleet is overloaded (see fleetconfig.Degradation).
	Degraded bool `json:"degraded"`
	// DegradedSince is when the current degradation began; zero when not degraded.
	DegradedSince time.Time `json:"degraded_since,omitzero"`
	// LowerBoundTPS is served to SDKs as operationSampling.defaultLowerBoundTracesPerSecond
	// (each SDK keeps at least this many traces per second per operation); 0 means the
	// decision serves plain probabilistic sampling.
	LowerBoundTPS float64 `json:"lower_bound_tps,omitempty"`
	// Services holds a rate for every service seen in the load reports, by name.
	Services map[string]ServiceDecision `json:"services"`
	// Truncated counts services left out of Services to keep the value within the NATS
	// payload limit (the least busy ones); they get their rule's or the default rate.
	Truncated int `json:"truncated,omitempty"`
	// Rules holds, for each rule of the priority_based strategy in order, its globs and
	// the rate of a service that matches it but was not seen in the load reports.
	Rules []RuleDecision `json:"rules,omitempty"`
	// Regions maps region name to its regional_sampling_rate multiplier, for regions
	// whose multiplier is not 1. Unlisted regions multiply by 1.
	Regions map[string]float64 `json:"regions,omitempty"`
	// Inputs are the observations and intermediate results the rates come from.
	Inputs DecisionInputs `json:"inputs"`
	// Params are the configuration values the decision was computed from.
	Params SamplingParams `json:"params"`
}

// ServiceDecision is the decision for one service.
type ServiceDecision struct {
	// Rate is the probability, in [0, 1], that a trace rooted in this service is kept.
	Rate float64 `json:"rate"`
	// QPS is the smoothed fleet-wide spans per second of the service the rate was
	// computed from (sum over live collectors).
	QPS float64 `json:"qps"`
	// Priority is the priority of the rule that applies to the service ("" when none).
	Priority string `json:"priority,omitempty"`
}

// RuleDecision is the decision for services that match one priority rule but were not
// seen in the load reports.
type RuleDecision struct {
	// Priority is the rule's priority name.
	Priority string `json:"priority"`
	// Services are the rule's globs; empty for the catch-all rule.
	Services []string `json:"services,omitempty"`
	// Rate is the rate of an unseen service matching the rule.
	Rate float64 `json:"rate"`
}

// DecisionInputs are what a decision was computed from.
type DecisionInputs struct {
	// Collectors is the number of live collectors whose load reports were used.
	Collectors int `json:"collectors"`
	// FleetQPS is the sum of the live collectors' latest span rates (spans/s).
	FleetQPS float64 `json:"fleet_qps"`
	// OtherQPS is the smoothed spans/s not attributed to any listed service (collectors
	// list their top services only); it is sampled at DefaultRate.
	OtherQPS float64 `json:"other_qps,omitempty"`
	// Capacity is the sum of the live collectors' capacities (spans/s) that report one.
	Capacity float64 `json:"capacity"`
	// Utilization is the load over capacity of the collectors that report a capacity,
	// in [0, ∞); 0 when none does.
	Utilization float64 `json:"utilization"`
	// KeptQPS is the predicted kept spans per second at these rates.
	KeptQPS float64 `json:"kept_qps"`
	// TargetQPS is the kept spans/s the adaptive strategy steered to: target_qps, or the
	// cost budget when that is lower; 0 without adaptive.
	TargetQPS float64 `json:"target_qps,omitempty"`
	// BudgetQPS is the cost budget in spans per second (budget_per_hour / cost_per_span
	// / 3600); 0 without cost_based.
	BudgetQPS float64 `json:"budget_qps,omitempty"`
	// AdaptiveScale is the multiplier the adaptive strategy applied to base rates; 0
	// without adaptive.
	AdaptiveScale float64 `json:"adaptive_scale,omitempty"`
	// CostScale is the multiplier, at most 1, the cost cap applied to the rates of
	// non-high-priority services; 0 when the cap did not bind.
	CostScale float64 `json:"cost_scale,omitempty"`
	// CostScaleAll is the multiplier, below 1, applied to every rate (high priority
	// included) when high-priority traffic alone exceeds the budget; 0 when unused.
	CostScaleAll float64 `json:"cost_scale_all,omitempty"`
}

// SamplingParams are the configuration values (global config, plus the sampler's own
// tuning) a decision was computed from.
type SamplingParams struct {
	// SamplingRate is global.sampling_rate.
	SamplingRate float64 `json:"sampling_rate"`
	// Strategies is global.sampling_strategies.
	Strategies []fleetconfig.Strategy `json:"sampling_strategies,omitempty"`
	// Degradation is global.degradation.
	Degradation fleetconfig.Degradation `json:"degradation"`
	// ServiceFloorQPS is the kept spans per second (fleet-wide) the adaptive strategy and
	// the cost cap leave every seen service at least, so small services are not starved.
	ServiceFloorQPS float64 `json:"service_floor_qps,omitempty"`
}

// Strategy returns the strategy of type t and true, or false when Strategies has none.
func (p SamplingParams) Strategy(t fleetconfig.StrategyType) (fleetconfig.Strategy, bool) {
	for _, s := range p.Strategies {
		if s.Type == t {
			return s, true
		}
	}
	return fleetconfig.Strategy{}, false
}

// DecisionVersion is the schema version of Decision.
const DecisionVersion = 1

// Kind implements Payload.
func (Decision) Kind() string { return "sampling.decision.state" }

// SchemaVersion implements Payload.
func (Decision) SchemaVersion() int { return DecisionVersion }

// RateFor returns the rate for service before any regional multiplier: its own entry,
// else the first rule whose globs match it (fleetconfig.MatchGlob), else the catch-all
// rule, else DefaultRate.
func (d *Decision) RateFor(service string) float64 {
	if s, ok := d.Services[service]; ok {
		return s.Rate
	}
	if i := d.RuleFor(service); i >= 0 {
		return d.Rules[i].Rate
	}
	return d.DefaultRate
}

// RuleFor returns the index in Rules of the rule that applies to service: the first
// whose globs match, else the catch-all; -1 when none applies.
func (d *Decision) RuleFor(service string) int {
	catchAll := -1
	for i, r := range d.Rules {
		if len(r.Services) == 0 {
			if catchAll < 0 {
				catchAll = i
			}
			continue
		}
		for _, g := range r.Services {
			if fleetconfig.MatchGlob(g, service) {
				return i
			}
		}
	}
	return catchAll
}

// RegionRate returns the regional multiplier of region: Regions[region], or 1.
func (d *Decision) RegionRate(region string) float64 {
	if m, ok := d.Regions[region]; ok {
		return m
	}
	return 1
}

// Validate implements Payload.
func (d Decision) Validate() error {
	var errs []error
	if d.Version == 0 {
		errs = append(errs, errors.New("version: must be > 0"))
	}
	if d.Token == 0 {
		errs = append(errs, errors.New("token: must be > 0"))
	}
	if d.Leader == "" {
		errs = append(errs, errors.New("leader: empty"))
	}
	if d.At.IsZero() {
		errs = append(errs, errors.New("at: missing"))
	}
	if d.IntervalMS < 0 {
		errs = append(errs, fmt.Errorf("interval_ms: %d is negative", d.IntervalMS))
	}
	rate := func(field string, v float64) {
		if !(v >= 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("%s: %v is outside [0,1]", field, v))
		}
	}
	num := func(field string, v float64) {
		if !(v >= 0) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("%s: %v is not a finite number >= 0", field, v))
		}
	}
	rate("global_rate", d.GlobalRate)
	rate("default_rate", d.DefaultRate)
	num("lower_bound_tps", d.LowerBoundTPS)
	if d.Truncated < 0 {
		errs = append(errs, fmt.Errorf("truncated: %d is negative", d.Truncated))
	}
	for name, s := range d.Services {
		if name == "" || len(name) > 256 {
			errs = append(errs, fmt.Errorf("services[%.40q]: name must be 1..256 bytes", name))
			continue
		}
		rate(fmt.Sprintf("services[%q].rate", name), s.Rate)
		num(fmt.Sprintf("services[%q].qps", name), s.QPS)
	}
	for i, r := range d.Rules {
		rate(fmt.Sprintf("rules[%d].rate", i), r.Rate)
	}
	for region, m := range d.Regions {
		if err := CheckToken("region", region); err != nil {
			errs = append(errs, fmt.Errorf("regions: %w", err))
		}
		rate(fmt.Sprintf("regions[%q]", region), m)
	}
	in := d.Inputs
	if in.Collectors < 0 {
		errs = append(errs, fmt.Errorf("inputs.collectors: %d is negative", in.Collectors))
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"inputs.fleet_qps", in.FleetQPS}, {"inputs.other_qps", in.OtherQPS},
		{"inputs.capacity", in.Capacity}, {"inputs.utilization", in.Utilization},
		{"inputs.kept_qps", in.KeptQPS}, {"inputs.target_qps", in.TargetQPS},
		{"inputs.budget_qps", in.BudgetQPS}, {"inputs.adaptive_scale", in.AdaptiveScale},
		{"inputs.cost_scale", in.CostScale}, {"inputs.cost_scale_all", in.CostScaleAll},
		{"params.service_floor_qps", d.Params.ServiceFloorQPS},
	} {
		num(f.name, f.v)
	}
	rate("params.sampling_rate", d.Params.SamplingRate)
	for i, s := range d.Params.Strategies {
		if !s.Type.Known() {
			errs = append(errs, fmt.Errorf("params.sampling_strategies[%d].type: %q is not a known strategy", i, s.Type))
		}
	}
	return errors.Join(errs...)
}

// DecodeDecision decodes and validates a sampling bucket value.
func DecodeDecision(data []byte) (Decision, error) {
	var d Decision
	if err := Decode(data, &d); err != nil {
		return Decision{}, err
	}
	return d, nil
}

// SamplingEvent is published by the sampler leader on <root>.events.sampling.decision
// after each decision it stores, and on <root>.events.sampling.degraded and
// .recovered when the fleet enters or leaves degradation. It summarises the decision
// (the full one, with every service, is in the KV bucket). Its ce-id and Nats-Msg-Id
// are EventID(), so a retried publish is stored once.
type SamplingEvent struct {
	V int `json:"v"`
	// Event is sampling.decision, sampling.degraded or sampling.recovered.
	Event EventType `json:"event"`
	// Version, Token and Leader identify the decision.
	Version uint64 `json:"version"`
	Token   uint64 `json:"token"`
	Leader  string `json:"leader"`
	// Strategy, GlobalRate, DefaultRate and Degraded repeat the decision's fields.
	Strategy    string  `json:"strategy"`
	GlobalRate  float64 `json:"global_rate"`
	DefaultRate float64 `json:"default_rate"`
	Degraded    bool    `json:"degraded"`
	// Utilization is the fleet's load over capacity the decision saw.
	Utilization float64 `json:"utilization"`
	// FleetQPS and KeptQPS are the observed and predicted kept spans per second.
	FleetQPS float64 `json:"fleet_qps"`
	KeptQPS  float64 `json:"kept_qps"`
	// Services is how many services have their own rate.
	Services int `json:"services"`
	// Reason explains a degraded or recovered transition, e.g. "utilization 0.85 >=
	// threshold 0.8".
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// SamplingEventVersion is the schema version of SamplingEvent.
const SamplingEventVersion = 1

// Kind implements Payload: the event type, e.g. "sampling.degraded".
func (e SamplingEvent) Kind() string {
	if e.Event == "" {
		return "sampling.event"
	}
	return string(e.Event)
}

// SchemaVersion implements Payload.
func (SamplingEvent) SchemaVersion() int { return SamplingEventVersion }

// Validate implements Payload.
func (e SamplingEvent) Validate() error {
	var errs []error
	switch e.Event {
	case EventSamplingDecision, EventSamplingDegraded, EventSamplingRecovered:
	default:
		errs = append(errs, fmt.Errorf("event: %q is not a sampling event", e.Event))
	}
	if e.Version == 0 || e.Token == 0 {
		errs = append(errs, errors.New("version and token: must be > 0"))
	}
	if e.Leader == "" {
		errs = append(errs, errors.New("leader: empty"))
	}
	return errors.Join(errs...)
}

// EventID is the deterministic id of the event: <event>/<token>/<version>.
func (e SamplingEvent) EventID() string {
	return fmt.Sprintf("%s/%d/%d", e.Event, e.Token, e.Version)
}
