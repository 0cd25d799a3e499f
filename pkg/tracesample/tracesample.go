package tracesample

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

const (
	// MaxThreshold is 2^56, the threshold of probability 0: no 56-bit
	// randomness value reaches it, so nothing is kept.
	MaxThreshold uint64 = 1 << 56

	// randomnessMask keeps the 56 least-significant bits.
	randomnessMask = MaxThreshold - 1

	// thresholdHexDigits is the width of a 56-bit threshold in hex.
	thresholdHexDigits = 14
)

// ThresholdFor returns the rejection threshold for sampling probability p:
// round((1−p)·2^56), so 0 for p = 1 (keep everything) and [MaxThreshold]
// for p = 0 (keep nothing). NaN and negative p are treated as 0, p > 1 as 1.
//
// The value is computed as 2^56 − round(p·2^56). Scaling p by a power of two
// is exact in floating point, so this rounds the exact (1−p)·2^56 of the
// given float64 p (an exact .5 tie resolves to the lower threshold),
// whereas evaluating 1−p first would lose up to three low bits: for p = 0.1
// it would give 0xe6666666666668 instead of 0xe6666666666666. Probabilities
// below 2^-57 round to threshold 2^56 and keep nothing.
func ThresholdFor(p float64) uint64 {
	switch {
	case !(p > 0): // also NaN
		return MaxThreshold
	case p >= 1:
		return 0
	}
	// p·2^56 < 2^56, so the conversion cannot overflow.
	return MaxThreshold - uint64(math.Round(p*float64(MaxThreshold)))
}

// Randomness returns the 56-bit randomness value of a trace ID: bytes 9 to
// 15 read as a big-endian integer, in [0, 2^56).
func Randomness(traceID [16]byte) uint64 {
	return binary.BigEndian.Uint64(traceID[8:]) & randomnessMask
}

// Keep reports whether a trace is sampled at probability p, that is whether
// Randomness(traceID) >= ThresholdFor(p). For many decisions at the same
// probability, [NewSampler] avoids recomputing the threshold.
func Keep(traceID [16]byte, p float64) bool {
	return Randomness(traceID) >= ThresholdFor(p)
}

// ThresholdTValue returns the OpenTelemetry tracestate "th" value for
// probability p, the sub-key written as "ot=th:<value>".
//
// Per the specification the threshold is written as 14 lowercase hex digits
// (56 bits) with trailing zeros removed; a reader pads the digits back with
// zeros on the right. Probability 1 (threshold 0) is written "0". Examples:
// p = 0.5 → "8", p = 0.25 → "c", p = 0.1 → "e6666666666666".
//
// The value is the full-precision threshold that [Sampler] and [Keep] apply,
// so it describes the decision exactly. (The specification suggests SDKs
// round to 4 digits, e.g. "e666" for 0.1; a sampler doing so must also decide
// with the rounded threshold.) Probability 0 has no encoding: 2^56 does not
// fit in 14 digits and unsampled spans carry no tracestate. For p <= 0 or
// NaN the result is "".
func ThresholdTValue(p float64) string {
	return thresholdTValue(ThresholdFor(p))
}

func thresholdTValue(t uint64) string {
	var buf [thresholdHexDigits]byte
	return string(AppendThreshold(buf[:0], t))
}

// Sampler makes consistent probability sampling decisions with a
// precomputed threshold. Create it with [NewSampler]; the zero value has
// threshold 0 and keeps every trace (probability 1). A Sampler is an
// immutable value and safe for concurrent use.
type Sampler struct {
	threshold uint64
}

// NewSampler returns a Sampler for probability p, clamped as by
// [ThresholdFor].
func NewSampler(p float64) Sampler {
	return Sampler{threshold: ThresholdFor(p)}
}

// Keep reports whether the trace with this ID is sampled. It does not
// allocate.
func (s Sampler) Keep(traceID [16]byte) bool {
	return Randomness(traceID) >= s.threshold
}

// Probability returns the probability the Sampler actually applies,
// (2^56 − threshold)/2^56. It can differ from the p given to [NewSampler] by
// up to 2^-57 because of rounding, and is clamped to [0,1].
func (s Sampler) Probability() float64 {
	return float64(MaxThreshold-s.threshold) / float64(MaxThreshold)
}

// Threshold returns the rejection threshold in [0, 2^56].
func (s Sampler) Threshold() uint64 {
	return s.threshold
}

// TValue returns the tracestate "th" value for the Sampler's threshold; see
// [ThresholdTValue].
func (s Sampler) TValue() string {
	return thresholdTValue(s.threshold)
}

// ErrInvalidValue is wrapped by the errors of [ParseThreshold] and [ParseRandomness]
// for a tracestate "th" or "rv" value that does not follow the specification.
var ErrInvalidValue = errors.New("invalid tracestate sampling value")

// ErrThreshold and ErrRandomness are what ParseThreshold and ParseRandomness return for a
// malformed value (both wrap ErrInvalidValue). They are sentinels, so a malformed value
// costs no allocation: a hot path that meets one in every span's tracestate stays
// allocation-free; a caller that reports it holds the value.
var (
	ErrThreshold  = fmt.Errorf("%w: th must be 1 to %d lowercase hex digits", ErrInvalidValue, thresholdHexDigits)
	ErrRandomness = fmt.Errorf("%w: rv must be %d lowercase hex digits", ErrInvalidValue, thresholdHexDigits)
)

// ParseThreshold parses a tracestate "th" value: 1 to 14 lowercase hex digits, padded
// with zeros on the right to 56 bits ("c" is 0xc0000000000000). It does not allocate;
// a malformed value returns ErrThreshold.
func ParseThreshold[T ~string | ~[]byte](s T) (uint64, error) {
	if len(s) == 0 || len(s) > thresholdHexDigits {
		return 0, ErrThreshold
	}
	v, ok := parseHex(s)
	if !ok {
		return 0, ErrThreshold
	}
	return v << (4 * (thresholdHexDigits - len(s))), nil
}

// ParseRandomness parses a tracestate "rv" value: exactly 14 lowercase hex digits, a
// 56-bit randomness value. It does not allocate; a malformed value returns
// ErrRandomness.
func ParseRandomness[T ~string | ~[]byte](s T) (uint64, error) {
	if len(s) != thresholdHexDigits {
		return 0, ErrRandomness
	}
	v, ok := parseHex(s)
	if !ok {
		return 0, ErrRandomness
	}
	return v, nil
}

func parseHex[T ~string | ~[]byte](s T) (uint64, bool) {
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

const hexDigits = "0123456789abcdef"

// AppendThreshold appends the tracestate "th" value of threshold t (as
// [ThresholdTValue] writes it: 14 digits, trailing zeros removed, "0" for 0) to dst.
// A threshold of [MaxThreshold] or more has no encoding and appends nothing.
func AppendThreshold(dst []byte, t uint64) []byte {
	switch {
	case t >= MaxThreshold:
		return dst
	case t == 0:
		return append(dst, '0')
	}
	n := thresholdHexDigits
	for t&0xf == 0 {
		t >>= 4
		n--
	}
	return appendHex(dst, t, n)
}

// AppendRandomness appends the tracestate "rv" value of the 56-bit randomness r
// (14 lowercase hex digits; bits above 56 are ignored) to dst.
func AppendRandomness(dst []byte, r uint64) []byte {
	return appendHex(dst, r&randomnessMask, thresholdHexDigits)
}

// appendHex appends the low n hex digits of v, most significant first.
func appendHex(dst []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[(v>>(4*uint(i)))&0xf])
	}
	return dst
}
