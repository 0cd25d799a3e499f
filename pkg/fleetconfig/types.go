package fleetconfig

import (
	"slices"
	"strings"
	"time"
)

// File is the content of a configuration file as accepted by
// `otelfleet config set -f FILE` and by the config service's first start: the
// global configuration and optional regional overrides.
type File struct {
	// Global is the configuration every service and region shares.
	Global Global `yaml:"global" json:"global"`

	// Regions holds per-region overrides keyed by region name. A region name is
	// used as a NATS subject token and in the KV key "region.<name>", so it is
	// made of ASCII letters, digits, '-' and '_'.
	Regions map[string]Region `yaml:"regions,omitempty" json:"regions,omitempty"`
}

// Global is the fleet-wide configuration, stored as JSON under the key
// "global" of the KV bucket otlp_config.
type Global struct {
	// SamplingRate is the fraction of traces kept, in [0, 1], when no strategy
	// decides otherwise: 0.1 keeps one trace in ten, 1 keeps all, 0 none.
	SamplingRate float64 `yaml:"sampling_rate" json:"sampling_rate"`

	// SamplingStrategies are the strategies the sampler leader combines; each
	// type may appear at most once. Empty means SamplingRate alone applies.
	SamplingStrategies []Strategy `yaml:"sampling_strategies,omitempty" json:"sampling_strategies,omitempty"`

	// Degradation lowers sampling when the fleet is overloaded.
	Degradation Degradation `yaml:"degradation" json:"degradation"`

	// RateLimiting caps the spans per second the fleet admits; an absent block means no limits.
	RateLimiting RateLimiting `yaml:"rate_limiting,omitempty" json:"rate_limiting,omitzero"`

	// RoutingRules send the traces of matching services to a region; the
	// first matching rule wins.
	RoutingRules []RoutingRule `yaml:"routing_rules,omitempty" json:"routing_rules,omitempty"`

	// Metadata is free-form operator information (owner, ticket, ...). Keys
	// must not be empty.
	Metadata map[string]string `yaml:"metadata,omitempty" json:"metadata,omitempty"`

	// Version is the stored version number, set by the config service on
	// each write; ignored on input.
	Version uint64 `yaml:"version,omitempty" json:"version,omitempty"`

	// UpdatedAt is when the config service stored this version; ignored on
	// input.
	UpdatedAt time.Time `yaml:"updated_at,omitempty" json:"updated_at,omitzero"`

	// UpdatedBy names who stored this version (user or tool); ignored on
	// input.
	UpdatedBy string `yaml:"updated_by,omitempty" json:"updated_by,omitempty"`
}

// StrategyType names a sampling strategy. The known types are the Strategy*
// constants; decoders reject any other value.
type StrategyType string

// The sampling strategy types.
const (
	// StrategyFixed keeps a fixed fraction of traces: field rate.
	StrategyFixed StrategyType = "fixed"
	// StrategyAdaptive moves the rate within [min_rate, max_rate] so that the
	// kept spans per second approach target_qps.
	StrategyAdaptive StrategyType = "adaptive"
	// StrategyPriorityBased gives each service the rate of the first priority
	// rule whose globs match it: field rules.
	StrategyPriorityBased StrategyType = "priority_based"
	// StrategyCostBased keeps as many spans as budget_per_hour allows at
	// cost_per_span each.
	StrategyCostBased StrategyType = "cost_based"
)

// strategyTypes lists the known strategy types in documentation order.
var strategyTypes = []StrategyType{StrategyFixed, StrategyAdaptive, StrategyPriorityBased, StrategyCostBased}

// Known reports whether t is one of the Strategy* constants.
func (t StrategyType) Known() bool { return slices.Contains(strategyTypes, t) }

// knownStrategyTypes returns the known types as "fixed, adaptive, ...".
func knownStrategyTypes() string {
	names := make([]string, len(strategyTypes))
	for i, t := range strategyTypes {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// Strategy is one sampling strategy. It holds the union of the fields of all
// strategy types; only the fields of its Type may be set, and all of them must
// be (Validate enforces both). Pointer fields are nil when absent.
type Strategy struct {
	// Type selects the strategy and which of the fields below apply.
	Type StrategyType `yaml:"type" json:"type"`

	// Rate is the fraction of traces kept, in [0, 1] (fixed).
	Rate *float64 `yaml:"rate,omitempty" json:"rate,omitempty"`

	// MinRate is the lowest rate the adaptive strategy may choose, in [0, 1],
	// at most MaxRate (adaptive).
	MinRate *float64 `yaml:"min_rate,omitempty" json:"min_rate,omitempty"`

	// MaxRate is the highest rate the adaptive strategy may choose, in [0, 1]
	// (adaptive).
	MaxRate *float64 `yaml:"max_rate,omitempty" json:"max_rate,omitempty"`

	// TargetQPS is the number of kept spans per second, fleet-wide, the
	// adaptive strategy steers toward; positive (adaptive).
	TargetQPS *float64 `yaml:"target_qps,omitempty" json:"target_qps,omitempty"`

	// Rules give per-service rates; the first rule whose globs match a
	// service wins and at most one rule, the catch-all, lists no services
	// (priority_based).
	Rules []PriorityRule `yaml:"rules,omitempty" json:"rules,omitempty"`

	// BudgetPerHour is the spending allowed per hour, in the same cost unit as
	// CostPerSpan; positive (cost_based).
	BudgetPerHour *float64 `yaml:"budget_per_hour,omitempty" json:"budget_per_hour,omitempty"`

	// CostPerSpan is the cost of keeping one span; positive (cost_based).
	CostPerSpan *float64 `yaml:"cost_per_span,omitempty" json:"cost_per_span,omitempty"`
}

// Conventional priority names. Any non-empty token is accepted; PriorityHigh
// is the one Degradation.KeepHighPriority protects.
const (
	// PriorityHigh marks services that matter most, e.g. payment.
	PriorityHigh = "high"
	// PriorityNormal marks ordinary services, usually the catch-all rule.
	PriorityNormal = "normal"
	// PriorityLow marks services whose traces matter least, e.g. debug.
	PriorityLow = "low"
)

// PriorityRule is one rule of a priority_based strategy.
type PriorityRule struct {
	// Priority names the class of service, e.g. "high", "normal", "low";
	// must not be empty.
	Priority string `yaml:"priority" json:"priority"`

	// Rate is the fraction of traces kept for matching services, in [0, 1].
	// An absent rate reads as 0, which drops every matching trace.
	Rate float64 `yaml:"rate" json:"rate"`

	// Services are globs (path.Match syntax, e.g. "payment-*") matched against
	// the service name. Empty makes this rule the catch-all used when no other
	// rule matches.
	Services []string `yaml:"services,omitempty" json:"services,omitempty"`
}

// Degradation lowers sampling while the fleet is overloaded. Load is the
// fraction of collector capacity in use, in (0, 1].
type Degradation struct {
	// Enabled turns degradation on. When false and every number below is 0
	// (the block is absent), the block is not validated.
	Enabled bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`

	// Threshold is the load, in (0, 1], at or above which degradation starts.
	Threshold float64 `yaml:"threshold,omitempty" json:"threshold,omitempty"`

	// TargetRate is the sampling rate, in [0, 1], applied while degraded.
	TargetRate float64 `yaml:"target_rate,omitempty" json:"target_rate,omitempty"`

	// RecoveryThreshold is the load, in (0, 1] and below Threshold, under
	// which degradation ends; the gap avoids flapping.
	RecoveryThreshold float64 `yaml:"recovery_threshold,omitempty" json:"recovery_threshold,omitempty"`

	// KeepHighPriority keeps the rate of services whose priority rule is
	// PriorityHigh while degraded. Decoders default it to true when absent,
	// so it is always encoded.
	KeepHighPriority bool `yaml:"keep_high_priority" json:"keep_high_priority"`
}

// RateLimiting caps the spans the fleet admits.
type RateLimiting struct {
	// MaxQPS is the fleet-wide limit in spans per second; positive.
	MaxQPS float64 `yaml:"max_qps,omitempty" json:"max_qps,omitempty"`

	// BurstSize is how many spans may be admitted at once above the steady
	// rate (token bucket depth); at least 1.
	BurstSize int `yaml:"burst_size,omitempty" json:"burst_size,omitempty"`

	// PerServiceLimit is the limit for any one service in spans per second;
	// 0 means no per-service limit.
	PerServiceLimit float64 `yaml:"per_service_limit,omitempty" json:"per_service_limit,omitempty"`
}

// RoutingRule sends the traces of matching services to a region.
type RoutingRule struct {
	// Service is a glob (path.Match syntax) matched against the service name;
	// required.
	Service string `yaml:"service" json:"service"`

	// TargetRegion is the region that receives the traces; a region name
	// (letters, digits, '-', '_').
	TargetRegion string `yaml:"target_region" json:"target_region"`

	// Priority is an optional free-form priority class, e.g. "high".
	Priority string `yaml:"priority,omitempty" json:"priority,omitempty"`
}

// Region is the configuration of one region, stored as JSON under the key
// "region.<name>" of the KV bucket otlp_config. Decoders apply no defaults:
// start from DefaultRegion when building one.
type Region struct {
	// RegionalSamplingRate multiplies the global decision, in [0, 1]: 1 means
	// no extra regional reduction, 0.5 keeps half of what the global
	// configuration keeps, 0 drops everything in the region.
	RegionalSamplingRate float64 `yaml:"regional_sampling_rate" json:"regional_sampling_rate"`

	// LocalRoutingPreference lists region names to prefer, in order, when
	// routing from this region.
	LocalRoutingPreference []string `yaml:"local_routing_preference,omitempty" json:"local_routing_preference,omitempty"`

	// BufferSize is how many spans may wait in the region's send queue; at
	// least 1. Larger absorbs longer backend outages at the cost of memory.
	BufferSize int `yaml:"buffer_size,omitempty" json:"buffer_size,omitempty"`

	// Batch controls how spans are grouped before sending.
	Batch BatchConfig `yaml:"batch,omitempty" json:"batch,omitzero"`

	// Retry controls how failed sends are retried.
	Retry RetryPolicy `yaml:"retry,omitempty" json:"retry,omitzero"`

	// Version is the stored version number, set by the config service on
	// each write; ignored on input.
	Version uint64 `yaml:"version,omitempty" json:"version,omitempty"`

	// UpdatedAt is when the config service stored this version; ignored on
	// input.
	UpdatedAt time.Time `yaml:"updated_at,omitempty" json:"updated_at,omitzero"`

	// UpdatedBy names who stored this version; ignored on input.
	UpdatedBy string `yaml:"updated_by,omitempty" json:"updated_by,omitempty"`
}

// BatchConfig controls batching: a batch is sent when it holds MaxBatchSize
// spans or when its oldest span has waited MaxWaitTime, whichever comes first.
type BatchConfig struct {
	// MaxBatchSize is the most spans in one batch; at least 1.
	MaxBatchSize int `yaml:"max_batch_size,omitempty" json:"max_batch_size,omitempty"`

	// MaxWaitTime is the longest a span waits for its batch to fill; positive.
	// Shorter lowers latency, longer makes bigger, cheaper batches.
	MaxWaitTime Duration `yaml:"max_wait_time,omitempty" json:"max_wait_time,omitempty"`
}

// RetryPolicy controls retries of failed sends with exponential backoff from
// InitialBackoff up to MaxBackoff.
type RetryPolicy struct {
	// MaxRetries is how many times a failed send is retried; 0 means never.
	MaxRetries int `yaml:"max_retries,omitempty" json:"max_retries,omitempty"`

	// InitialBackoff is the wait before the first retry; positive and at most
	// MaxBackoff.
	InitialBackoff Duration `yaml:"initial_backoff,omitempty" json:"initial_backoff,omitempty"`

	// MaxBackoff caps the wait between retries; positive.
	MaxBackoff Duration `yaml:"max_backoff,omitempty" json:"max_backoff,omitempty"`
}
