// Package tracesample implements OpenTelemetry consistent probability
// sampling on trace IDs, as specified in "TraceState: Probability Sampling"
// of the OpenTelemetry specification.
//
// Every participant derives the same 56-bit randomness value R from the
// trace ID: the 7 least-significant bytes (bytes 9 to 15), read big-endian.
// A sampling probability p becomes a rejection threshold
//
//	T = round((1 − p) · 2^56), clamped to [0, 2^56]
//
// and a trace is kept when R >= T. Because T only grows as p shrinks, a
// trace kept at probability p is kept at every probability above p, so
// collectors and SDKs sampling at different rates keep nested subsets of
// traces and traces stay complete.
//
// The threshold is propagated in the W3C tracestate as the "th" sub-key of
// the "ot" entry, e.g. "ot=th:c" for p = 0.25; see [ThresholdTValue].
//
// The package reads randomness from the trace ID, and parses and formats the
// tracestate "th" and "rv" values ([ParseThreshold], [ParseRandomness],
// [AppendThreshold], [AppendRandomness]); parsing the tracestate list and
// deciding which randomness applies (an explicit "rv" overrides the trace ID's)
// is the caller's concern.
package tracesample
