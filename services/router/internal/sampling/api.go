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
