package sampling

import (
	"encoding/binary"
	"math"

	"github.com/otelfleet/otelfleet/pkg/tracesample"
)

// Sampler decides per span at probability p. It is immutable and safe for concurrent use;
// build one per rate and reuse it. Decide appends any new tracestate into buf (pass a
// reused buffer to avoid allocations) and returns it in Outcome.TraceState.
//
// The rule, for a span whose tracestate carries neither a valid ot th nor rv:
// keep iff the trace ID passes the OpenTelemetry SDK's TraceIDRatioBased predicate at p
// (bytes 8..15 of the trace ID, big-endian, shifted right by one, below p·2^63), and
// write on kept spans rv = the bitwise complement of bytes 8..14 and th = ratioThreshold
// (every kept span has rv ≥ th). A router behind an SDK that sampled by that ratio thus
// keeps what the SDK kept, and downstream threshold samplers see consistent values.
//
// For a span with a valid th and/or rv (an OpenTelemetry threshold sampler upstream),
// the randomness is rv when present, else bytes 9..15 of the trace ID, and the span is
// kept iff randomness ≥ max(incoming th, the threshold of p): the threshold only ever
// goes up, and th = that maximum is written when it changed. An incoming th that the
// span's own randomness does not reach is inconsistent and is erased (ignored); a
// malformed th or rv is ignored and erased when the tracestate is rewritten. See
// docs/SAMPLING.md, "Routers and SDKs".
type Sampler struct {
	p float64
	// threshold is the 56-bit threshold of p (pkg/tracesample).
	threshold uint64
	// ratioBound is the SDK's bound uint64(p·2^63) for p in (0, 1).
	ratioBound uint64
	// ratioThreshold is the threshold written with the ratio rule.
	ratioThreshold uint64
}

// New returns the sampler for probability p in [0, 1] (clamped; NaN is 0).
func New(p float64) Sampler {
	switch {
	case math.IsNaN(p) || p < 0:
		p = 0
	case p > 1:
		p = 1
	}
	s := Sampler{p: p, threshold: tracesample.ThresholdFor(p)}
	switch {
	case p >= 1:
		s.ratioThreshold = 0
	case p <= 0:
		s.ratioThreshold = tracesample.MaxThreshold
	default:
		s.ratioBound = uint64(p * (1 << 63))
		s.ratioThreshold = ratioThreshold(s.ratioBound)
	}
	return s
}

// ratioThreshold is the threshold every span kept by the ratio predicate at bound
// reaches with rv = ^u >> 8 (u = bytes 8..15): kept means u < 2·bound, so
// ^u ≥ 2^64 − 2·bound and rv ≥ 2^56 − ⌈bound/128⌉.
func ratioThreshold(bound uint64) uint64 {
	return tracesample.MaxThreshold - (bound+127)/128
}

// ratioRandomness is the rv written with the ratio rule: the complement of bytes 8..14
// of the trace ID, so that a low SDK value (kept) is a high randomness value.
func ratioRandomness(id [16]byte) uint64 {
	return ^binary.BigEndian.Uint64(id[8:]) >> 8
}

// Probability returns p.
func (s Sampler) Probability() float64 { return s.p }

// Decide decides for one span with trace ID id and W3C trace_state ts.
func (s Sampler) Decide(id [16]byte, ts []byte, buf []byte) Outcome {
	st := parseTraceState(ts)
	if !st.hasTh && !st.hasRv {
		return s.decideRatio(id, &st, ts, buf)
	}
	r := tracesample.Randomness(id)
	if st.hasRv {
		r = st.rv
	}
	tIn := uint64(0)
	if st.hasTh {
		if r < st.th { // the span should not have been kept upstream: ignore th
			st.hasTh, st.thBad = false, true
		} else {
			tIn = st.th
		}
	}
	t := max(tIn, s.threshold)
	if r < t {
		return Outcome{Threshold: t}
	}
	out := Outcome{Keep: true, Threshold: t}
	switch {
	case st.hasTh && t == tIn && !st.rvBad: // unchanged
	case !st.hasTh && t == 0 && !st.thBad && !st.rvBad: // nothing to record
	default:
		st.hasTh, st.th = t > 0 || st.hasTh, t
		out.TraceState = st.appendTo(buf, ts)
	}
	return out
}

// decideRatio is the rule for a span without th or rv: agree with the SDK's
// TraceIDRatioBased sampler at p.
func (s Sampler) decideRatio(id [16]byte, st *traceState, ts, buf []byte) Outcome {
	switch {
	case s.p >= 1:
		if st.thBad || st.rvBad {
			return Outcome{Keep: true, TraceState: st.appendTo(buf, ts)}
		}
		return Outcome{Keep: true}
	case s.p <= 0:
		return Outcome{Threshold: tracesample.MaxThreshold}
	}
	if binary.BigEndian.Uint64(id[8:])>>1 >= s.ratioBound {
		return Outcome{Threshold: s.ratioThreshold}
	}
	st.hasTh, st.th = true, s.ratioThreshold
	st.hasRv, st.rv = true, ratioRandomness(id)
	return Outcome{Keep: true, Threshold: s.ratioThreshold, TraceState: st.appendTo(buf, ts)}
}
