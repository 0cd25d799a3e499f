// Package sampling is the router's per-trace keep decision: OpenTelemetry consistent
// probability sampling (threshold vs 56-bit randomness, pkg/tracesample), equalizing
// toward an incoming ot=th / rv in the span's tracestate (a threshold only ever goes up),
// and compatible with SDKs that already sampled by trace-ID ratio (see Decide).
package sampling

// Outcome is the decision for one span.
type Outcome struct {
	// Keep reports whether the span is forwarded.
	Keep bool
	// TraceState, when non-nil, is the span's new trace_state (with ot=th written, and rv
	// where the decision needs it); nil means unchanged.
	TraceState []byte
	// Threshold is the 56-bit rejection threshold applied (0 keeps everything).
	Threshold uint64
}

// Sampler decides per span at probability p. It is immutable and safe for concurrent use;
// build one per rate and reuse it. Decide appends any new tracestate into buf (pass a
// reused buffer to avoid allocations) and returns it in Outcome.TraceState.
type Sampler struct {
	_ struct{}
}

// New returns the sampler for probability p in [0, 1] (clamped; NaN is 0).
func New(p float64) Sampler { panic("sampling: New not built yet") }

// Probability returns p.
func (s Sampler) Probability() float64 { panic("sampling: not built yet") }

// Decide decides for one span with trace ID id and W3C trace_state ts.
func (s Sampler) Decide(id [16]byte, ts []byte, buf []byte) Outcome {
	panic("sampling: Decide not built yet")
}
