package fleetconfig

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// TailSampling is the tail_sampling block: whole-trace decisions made in the
// router tier once a trace has stopped receiving spans. The policies are tried
// in order and the first whose condition the trace meets decides it; a trace
// no policy matches is dropped (end the list with a policy without `when` to
// keep a share of the rest). An absent block means no tail sampling: every
// span head sampling kept goes on at once.
type TailSampling struct {
	// DecisionWait is how long after a trace's last span arrived its decision
	// is made; positive, at most MaxDecisionWait.
	DecisionWait Duration `yaml:"decision_wait" json:"decision_wait"`

	// MaxTraceSpans bounds the spans held for one trace; a trace that reaches
	// it is decided at once (and its later spans follow that decision).
	// Between 1 and MaxTailTraceSpans.
	MaxTraceSpans int `yaml:"max_trace_spans" json:"max_trace_spans"`

	// Policies decide each trace: the first whose When the trace meets wins.
	// At least one, at most MaxTailPolicies, names unique.
	Policies []TailPolicy `yaml:"policies" json:"policies"`

	// Throughput optionally caps the traces kept per second fleet-wide.
	Throughput *TailThroughput `yaml:"throughput,omitempty" json:"throughput,omitempty"`

	// DryRun decides and counts every trace but keeps all of them, marking
	// the spans with the decision (otelfleet.tail.kept, otelfleet.tail.policy),
	// so policies can be tried on real traffic before they drop anything.
	DryRun bool `yaml:"dry_run,omitempty" json:"dry_run,omitempty"`
}

// Limits of global.tail_sampling.
const (
	// MaxDecisionWait is the longest decision_wait accepted.
	MaxDecisionWait = 5 * time.Minute
	// MaxTailTraceSpans is the largest max_trace_spans accepted.
	MaxTailTraceSpans = 1_000_000
	// MaxTailPolicies is the most policies one config may list.
	MaxTailPolicies = 64
	// MaxTailConditionItems bounds each list or map of a condition (services,
	// attributes) and a dynamic policy's key fields.
	MaxTailConditionItems = 32
	// MaxDynamicGoalRate is the largest goal_rate accepted.
	MaxDynamicGoalRate = 1_000_000
)

// TailPolicy is one tail-sampling policy. Exactly one of Keep and Dynamic is
// set.
type TailPolicy struct {
	// Name identifies the policy in metrics, status and span marks;
	// letters, digits, '-', '_' and '.', unique.
	Name string `yaml:"name" json:"name"`

	// When is the condition; absent, every trace matches.
	When *TailCondition `yaml:"when,omitempty" json:"when,omitempty"`

	// Keep is the probability in [0, 1] that a matching trace is kept.
	Keep *float64 `yaml:"keep,omitempty" json:"keep,omitempty"`

	// Dynamic keeps matching traces at a per-key rate instead of Keep.
	Dynamic *DynamicSampling `yaml:"dynamic,omitempty" json:"dynamic,omitempty"`
}

// SpanStatus is a span status code a condition can require.
type SpanStatus string

// The span statuses a condition can name.
const (
	StatusError SpanStatus = "error"
	StatusOK    SpanStatus = "ok"
	StatusUnset SpanStatus = "unset"
)

// TailCondition says which traces a policy applies to. Its span conditions
// (status, min_duration, root, attributes, services) must all hold on one
// span of the trace; its trace conditions (min_spans) on the trace. An empty
// condition matches every trace.
type TailCondition struct {
	// Status requires a span with this status: error, ok or unset.
	Status SpanStatus `yaml:"status,omitempty" json:"status,omitempty"`

	// MinDuration requires a span that lasted at least this long.
	MinDuration Duration `yaml:"min_duration,omitempty" json:"min_duration,omitempty"`

	// Root restricts the span conditions to the trace's root span (the span
	// without a parent): {root: true, min_duration: 2s} is "the root span
	// took 2 s or more".
	Root bool `yaml:"root,omitempty" json:"root,omitempty"`

	// Attributes requires a span whose attributes, or whose resource's
	// attributes, hold each key with the value (a glob, path.Match syntax,
	// matched against the value's string form).
	Attributes map[string]string `yaml:"attributes,omitempty" json:"attributes,omitempty"`

	// Services requires a span of a service whose name matches one of these
	// globs.
	Services []string `yaml:"services,omitempty" json:"services,omitempty"`

	// MinSpans requires the trace to have at least this many spans.
	MinSpans int `yaml:"min_spans,omitempty" json:"min_spans,omitempty"`
}

// DynamicSampling keeps the traces of each key (the values of the Key fields)
// at a rate that follows how often the key is seen, in the manner of an EMA
// dynamic sampler: rare keys are kept more often, frequent ones less, and the
// traces the policy matches are kept one in GoalRate on average.
type DynamicSampling struct {
	// Key names the span or resource attributes whose values form the key
	// (service.name included); 1 to MaxTailConditionItems, unique.
	Key []string `yaml:"key" json:"key"`

	// GoalRate is the average one-in-N kept; 1 keeps everything.
	GoalRate int `yaml:"goal_rate" json:"goal_rate"`

	// AdjustmentInterval is how often the per-key rates are recomputed from
	// the counts seen (default 15s when zero).
	AdjustmentInterval Duration `yaml:"adjustment_interval,omitempty" json:"adjustment_interval,omitempty"`

	// Weight is the EMA weight of the newest interval's counts, in (0, 1]
	// (default 0.5 when zero).
	Weight float64 `yaml:"weight,omitempty" json:"weight,omitempty"`

	// MaxKeys bounds the keys tracked; keys past it share one rate (default
	// 500 when zero, at most 100,000).
	MaxKeys int `yaml:"max_keys,omitempty" json:"max_keys,omitempty"`
}

// TailThroughput caps the traces kept per second across the fleet; the
// sampler leader splits it among the routers by their demand.
type TailThroughput struct {
	// TracesPerSecond is the fleet-wide cap; positive.
	TracesPerSecond float64 `yaml:"traces_per_second" json:"traces_per_second"`
}

// DynamicSampling defaults, used when the field is zero.
const (
	DefaultDynamicInterval = 15 * time.Second
	DefaultDynamicWeight   = 0.5
	DefaultDynamicMaxKeys  = 500
	MaxDynamicKeys         = 100_000
)

// Interval returns AdjustmentInterval or its default.
func (d DynamicSampling) Interval() time.Duration {
	if d.AdjustmentInterval > 0 {
		return time.Duration(d.AdjustmentInterval)
	}
	return DefaultDynamicInterval
}

// EMAWeight returns Weight or its default.
func (d DynamicSampling) EMAWeight() float64 {
	if d.Weight > 0 {
		return d.Weight
	}
	return DefaultDynamicWeight
}

// KeyLimit returns MaxKeys or its default.
func (d DynamicSampling) KeyLimit() int {
	if d.MaxKeys > 0 {
		return d.MaxKeys
	}
	return DefaultDynamicMaxKeys
}

func (t TailSampling) check(c *checker, p string) {
	switch {
	case t.DecisionWait <= 0:
		c.duration(p+".decision_wait", t.DecisionWait)
	case time.Duration(t.DecisionWait) > MaxDecisionWait:
		c.add(p+".decision_wait", "%v is longer than the maximum %v", t.DecisionWait, MaxDecisionWait)
	}
	if t.MaxTraceSpans < 1 || t.MaxTraceSpans > MaxTailTraceSpans {
		c.add(p+".max_trace_spans", "%d is outside [1, %d]", t.MaxTraceSpans, MaxTailTraceSpans)
	}
	switch {
	case len(t.Policies) == 0:
		c.add(p+".policies", "must list at least one policy")
	case len(t.Policies) > MaxTailPolicies:
		c.add(p+".policies", "%d policies; at most %d", len(t.Policies), MaxTailPolicies)
	}
	seen := make(map[string]int, len(t.Policies))
	for i, pol := range t.Policies {
		pp := fmt.Sprintf("%s.policies[%d]", p, i)
		if first, dup := seen[pol.Name]; dup && pol.Name != "" {
			c.add(pp+".name", "%q is already the name of policies[%d]", pol.Name, first)
		} else {
			seen[pol.Name] = i
		}
		pol.check(c, pp)
	}
	if t.Throughput != nil {
		c.positive(p+".throughput.traces_per_second", t.Throughput.TracesPerSecond)
	}
}

func (pol TailPolicy) check(c *checker, p string) {
	if !validPolicyName(pol.Name) {
		c.add(p+".name", "%q is not a policy name: 1 to 64 ASCII letters, digits, '-', '_' or '.'", pol.Name)
	}
	switch {
	case pol.Keep == nil && pol.Dynamic == nil:
		c.add(p, "set keep (a probability) or dynamic (a per-key sampler)")
	case pol.Keep != nil && pol.Dynamic != nil:
		c.add(p, "set keep or dynamic, not both")
	case pol.Keep != nil:
		c.rate(p+".keep", *pol.Keep)
	default:
		pol.Dynamic.check(c, p+".dynamic")
	}
	if pol.When != nil {
		pol.When.check(c, p+".when")
	}
}

func (w TailCondition) check(c *checker, p string) {
	switch w.Status {
	case "", StatusError, StatusOK, StatusUnset:
	default:
		c.add(p+".status", "%q is not a span status: error, ok or unset", string(w.Status))
	}
	if w.MinDuration < 0 {
		c.add(p+".min_duration", "must not be negative, got %v", w.MinDuration)
	}
	if len(w.Attributes) > MaxTailConditionItems {
		c.add(p+".attributes", "%d attributes; at most %d", len(w.Attributes), MaxTailConditionItems)
	}
	for k, v := range w.Attributes {
		if strings.TrimSpace(k) == "" {
			c.add(p+".attributes", "keys must not be empty")
			continue
		}
		c.glob(p+".attributes."+k, v)
	}
	if len(w.Services) > MaxTailConditionItems {
		c.add(p+".services", "%d globs; at most %d", len(w.Services), MaxTailConditionItems)
	}
	for i, g := range w.Services {
		c.glob(fmt.Sprintf("%s.services[%d]", p, i), g)
	}
	if w.MinSpans < 0 {
		c.add(p+".min_spans", "must not be negative, got %d", w.MinSpans)
	}
}

func (d DynamicSampling) check(c *checker, p string) {
	switch {
	case len(d.Key) == 0:
		c.add(p+".key", "must name at least one attribute")
	case len(d.Key) > MaxTailConditionItems:
		c.add(p+".key", "%d fields; at most %d", len(d.Key), MaxTailConditionItems)
	}
	seen := make(map[string]bool, len(d.Key))
	for i, k := range d.Key {
		kp := fmt.Sprintf("%s.key[%d]", p, i)
		switch {
		case strings.TrimSpace(k) == "":
			c.add(kp, "must not be empty")
		case seen[k]:
			c.add(kp, "%q is listed twice", k)
		}
		seen[k] = true
	}
	if d.GoalRate < 1 || d.GoalRate > MaxDynamicGoalRate {
		c.add(p+".goal_rate", "%d is outside [1, %d]", d.GoalRate, MaxDynamicGoalRate)
	}
	if d.AdjustmentInterval < 0 || (d.AdjustmentInterval > 0 && time.Duration(d.AdjustmentInterval) < time.Second) {
		c.add(p+".adjustment_interval", "%v: use at least 1s (or leave it out for %v)", d.AdjustmentInterval, DefaultDynamicInterval)
	}
	if d.Weight < 0 || d.Weight > 1 || d.Weight != d.Weight {
		c.add(p+".weight", "%v is outside (0, 1]", d.Weight)
	}
	if d.MaxKeys < 0 || d.MaxKeys > MaxDynamicKeys {
		c.add(p+".max_keys", "%d is outside [1, %d]", d.MaxKeys, MaxDynamicKeys)
	}
}

// validPolicyName reports whether s is 1..64 of [A-Za-z0-9_.-].
func validPolicyName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.') {
			return false
		}
	}
	return true
}

// ParseTailSamplingYAML decodes a tail_sampling block strictly (unknown fields, type
// mismatches and bare-number durations are errors wrapping ErrDecode that name the
// line). It does not validate.
//
// The block is not yet a field of Global: it becomes one when the routers apply it, so
// that no stored config carries a setting nothing acts on.
func ParseTailSamplingYAML(data []byte) (TailSampling, error) {
	return guard(func() (TailSampling, error) {
		if err := checkYAMLDocument(data); err != nil {
			return TailSampling{}, err
		}
		var t TailSampling
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&t); err != nil {
			return TailSampling{}, yamlError(err)
		}
		return t, nil
	})
}

// Validate checks t and returns a *ValidationError listing every problem, with paths
// under "tail_sampling.", or nil.
func (t TailSampling) Validate() error {
	var c checker
	t.check(&c, "tail_sampling")
	return c.err()
}
