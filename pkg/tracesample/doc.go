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
// The package only reads randomness from the trace ID. An explicit "rv"
// randomness value in tracestate, and the W3C Level 2 "random" trace flag,
// are the caller's concern.
package tracesample
