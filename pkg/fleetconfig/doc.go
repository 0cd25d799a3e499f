// Package fleetconfig defines the otelfleet configuration schema: the global
// configuration every service shares (sampling, degradation, rate limiting,
// routing) and the per-region overrides, together with their decoding,
// validation, defaults and comparison.
//
// It is the single source of truth for these types: the config service stores
// them in the KV bucket otlp_config (key "global" holds a [Global], keys
// "region.<name>" hold a [Region], both as JSON), and the config watch client,
// the sampler and the router decode what they read with [DecodeGlobalJSON] and
// [DecodeRegionJSON]. A user's YAML file (see examples/global-config.yaml) is a
// [File] and is read with [ParseYAML] or, parsed and validated at once,
// [LoadFile].
//
// # Decoding and validation
//
// Decoding is strict and separate from validation. Every decoder rejects empty
// input, unknown fields, type mismatches and bare numbers where a duration is
// expected, reporting the line (YAML) or the field and offset (JSON); such
// errors wrap [ErrDecode]. Decoders never validate: callers run
// [File.Validate], [Global.Validate] or [Region.Validate], which report every
// broken rule at once as a [*ValidationError] that matches [ErrInvalid]. Each
// problem names the field path and the rule, for example
//
//	global.sampling_rate: 1.5 is outside [0, 1]
//	global.sampling_strategies[0].min_rate: 0.6 is greater than max_rate 0.5
//	regions.eu-west.batch.max_wait_time: must be positive
//
// # Sampling strategies
//
// A [Strategy] is one struct holding the union of the fields of every strategy
// type; the optional numeric fields are pointers so that validation can tell
// "absent" from "zero". Validation requires the fields that belong to the
// strategy's type and rejects the ones that do not, so after a successful
// Validate the pointers of a strategy's own type are non-nil and the others are
// nil.
//
// The package is pure Go: it does not talk to NATS and holds no state, so all of
// its functions are safe for concurrent use.
package fleetconfig
