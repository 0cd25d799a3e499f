package tracesample

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// mustID parses a 32-hex-digit trace ID.
func mustID(t testing.TB, s string) [16]byte {
	t.Helper()
	var id [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		t.Fatalf("bad trace ID %q: %v", s, err)
	}
	copy(id[:], b)
	return id
}

// randomIDs returns n pseudo-random trace IDs from a fixed seed, so that the
// statistical tests are deterministic.
func randomIDs(n int, seed uint64) [][16]byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	ids := make([][16]byte, n)
	for i := range ids {
		binary.BigEndian.PutUint64(ids[i][:8], r.Uint64())
		binary.BigEndian.PutUint64(ids[i][8:], r.Uint64())
	}
	return ids
}

func TestThresholdFor(t *testing.T) {
	tests := []struct {
		name string
		p    float64
		want uint64
	}{
		{name: "one keeps all", p: 1, want: 0},
		{name: "zero keeps none", p: 0, want: MaxThreshold},
		{name: "half", p: 0.5, want: 1 << 55},
		{name: "quarter", p: 0.25, want: 3 << 54},
		{name: "tenth", p: 0.1, want: 0xe6666666666666},
		{name: "hundredth", p: 0.01, want: MaxThreshold - 720575940379279}, // round(0.01·2^56)
		{name: "smallest representable", p: 1.0 / (1 << 56), want: MaxThreshold - 1},
		{name: "below resolution rounds to zero", p: 1.0 / (1 << 58), want: MaxThreshold},
		{name: "largest float below one", p: math.Nextafter(1, 0), want: 8}, // 1 − 2^-53
		{name: "NaN is zero", p: math.NaN(), want: MaxThreshold},
		{name: "negative is zero", p: -0.5, want: MaxThreshold},
		{name: "minus infinity is zero", p: math.Inf(-1), want: MaxThreshold},
		{name: "above one is one", p: 1.5, want: 0},
		{name: "infinity is one", p: math.Inf(1), want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ThresholdFor(tt.p); got != tt.want {
				t.Errorf("ThresholdFor(%v) = %#x, want %#x", tt.p, got, tt.want)
			}
		})
	}
}

// TestThresholdForIsExactlyRounded checks ThresholdFor against exact
// rational arithmetic: round((1−p)·2^56) for the exact value of the float64 p.
func TestThresholdForIsExactlyRounded(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	two56 := new(big.Rat).SetInt64(1 << 56)
	for i := range 20000 {
		var p float64
		switch i % 3 {
		case 0:
			p = r.Float64()
		case 1:
			p = math.Ldexp(r.Float64(), -r.IntN(50)) // small probabilities
		case 2:
			p = 1 - math.Ldexp(r.Float64(), -r.IntN(50)) // close to 1
		}
		exact := new(big.Rat).Sub(big.NewRat(1, 1), new(big.Rat).SetFloat64(p))
		exact.Mul(exact, two56)
		// round half up: floor(x + 1/2)
		exact.Add(exact, big.NewRat(1, 2))
		want := new(big.Int).Quo(exact.Num(), exact.Denom()).Uint64()
		if got := ThresholdFor(p); got != want {
			// Exact ties may legitimately resolve either way.
			if exact.IsInt() && (got == want || got+1 == want) {
				continue
			}
			t.Fatalf("ThresholdFor(%v) = %#x, want %#x", p, got, want)
		}
	}
}

func TestRandomness(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want uint64
	}{
		{name: "zero", id: "00000000000000000000000000000000", want: 0},
		{name: "all ones", id: "ffffffffffffffffffffffffffffffff", want: 1<<56 - 1},
		{name: "byte 8 is ignored", id: "0000000000000000ff00000000000001", want: 1},
		{name: "high bytes are ignored", id: "ffffffffffffffff0000000000000000", want: 0},
		{name: "big endian", id: "00000000000000000001020304050607", want: 0x01020304050607},
		{name: "W3C example", id: "4bf92f3577b34da6a3ce929d0e0e4736", want: 0xce929d0e0e4736},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Randomness(mustID(t, tt.id)); got != tt.want {
				t.Errorf("Randomness(%s) = %#x, want %#x", tt.id, got, tt.want)
			}
		})
	}
}

func TestKeepKnownTraceIDs(t *testing.T) {
	tests := []struct {
		name string
		id   string
		p    float64
		want bool
	}{
		{name: "randomness 0 kept at p=1", id: "ffffffffffffffffff00000000000000", p: 1, want: true},
		{name: "randomness 0 dropped just below p=1", id: "ffffffffffffffffff00000000000000", p: math.Nextafter(1, 0), want: false},
		{name: "max randomness kept at smallest p", id: "0000000000000000ffffffffffffffff", p: 1.0 / (1 << 56), want: true},
		{name: "max randomness dropped at p=0", id: "0000000000000000ffffffffffffffff", p: 0, want: false},
		{name: "exactly at half threshold is kept", id: "00000000000000000080000000000000", p: 0.5, want: true},
		{name: "just below half threshold is dropped", id: "0000000000000000007fffffffffffff", p: 0.5, want: false},
		{name: "W3C example kept at 0.25", id: "4bf92f3577b34da6a3ce929d0e0e4736", p: 0.25, want: true},
		{name: "W3C example dropped at 0.1", id: "4bf92f3577b34da6a3ce929d0e0e4736", p: 0.1, want: false},
		{name: "NaN keeps nothing", id: "0000000000000000ffffffffffffffff", p: math.NaN(), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := mustID(t, tt.id)
			if got := Keep(id, tt.p); got != tt.want {
				t.Errorf("Keep(%s, %v) = %v, want %v", tt.id, tt.p, got, tt.want)
			}
			if got := NewSampler(tt.p).Keep(id); got != tt.want {
				t.Errorf("NewSampler(%v).Keep(%s) = %v, want %v", tt.p, tt.id, got, tt.want)
			}
		})
	}
}

func TestThresholdTValue(t *testing.T) {
	tests := []struct {
		name string
		p    float64
		want string
	}{
		// Examples from the specification's table (exact powers of two need
		// one digit at any precision).
		{name: "one", p: 1, want: "0"},
		{name: "half", p: 0.5, want: "8"},
		{name: "quarter", p: 0.25, want: "c"},
		{name: "eighth", p: 0.125, want: "e"},
		{name: "sixteenth", p: 0.0625, want: "f"},
		{name: "three quarters", p: 0.75, want: "4"},
		// Full 56-bit precision; the spec's 4-digit SDK default would be
		// "e666", "cccd", "aaab" and "fd70a" respectively.
		{name: "tenth", p: 0.1, want: "e6666666666666"},
		{name: "fifth", p: 0.2, want: "cccccccccccccc"},
		{name: "third", p: 1.0 / 3, want: "aaaaaaaaaaaaac"},
		{name: "hundredth", p: 0.01, want: "fd70a3d70a3d71"},
		{name: "smallest", p: 1.0 / (1 << 56), want: "ffffffffffffff"},
		{name: "leading zeros kept", p: 1 - 1.0/(1<<20), want: "00001"},
		{name: "zero has no encoding", p: 0, want: ""},
		{name: "NaN has no encoding", p: math.NaN(), want: ""},
		{name: "above one", p: 3, want: "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ThresholdTValue(tt.p); got != tt.want {
				t.Errorf("ThresholdTValue(%v) = %q, want %q", tt.p, got, tt.want)
			}
			if got := NewSampler(tt.p).TValue(); got != tt.want {
				t.Errorf("NewSampler(%v).TValue() = %q, want %q", tt.p, got, tt.want)
			}
		})
	}
}

// TestThresholdTValueRoundTrip decodes T-values the way the specification
// tells readers to (pad with trailing zeros to 14 digits) and checks that the
// threshold comes back unchanged.
func TestThresholdTValueRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for range 10000 {
		p := r.Float64()
		if p == 0 {
			continue
		}
		tv := ThresholdTValue(p)
		if len(tv) == 0 || len(tv) > 14 || (tv != "0" && strings.HasSuffix(tv, "0")) {
			t.Fatalf("ThresholdTValue(%v) = %q: not 1–14 digits without trailing zeros", p, tv)
		}
		got, err := strconv.ParseUint(tv+strings.Repeat("0", 14-len(tv)), 16, 64)
		if err != nil {
			t.Fatalf("ThresholdTValue(%v) = %q: %v", p, tv, err)
		}
		if want := ThresholdFor(p); got != want {
			t.Fatalf("ThresholdTValue(%v) = %q decodes to %#x, want %#x", p, tv, got, want)
		}
	}
}

func TestSamplerProbability(t *testing.T) {
	tests := []struct {
		name string
		s    Sampler
		want float64
	}{
		{name: "zero value keeps all", s: Sampler{}, want: 1},
		{name: "one", s: NewSampler(1), want: 1},
		{name: "zero", s: NewSampler(0), want: 0},
		{name: "half", s: NewSampler(0.5), want: 0.5},
		{name: "tenth", s: NewSampler(0.1), want: 0.1},
		{name: "clamped above", s: NewSampler(7), want: 1},
		{name: "clamped below", s: NewSampler(-7), want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Probability(); math.Abs(got-tt.want) > 1.0/(1<<56) {
				t.Errorf("Probability() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMonotonicity checks consistency: whatever a lower probability keeps,
// every higher probability keeps too.
func TestMonotonicity(t *testing.T) {
	ids := randomIDs(100_000, 1)
	pairs := [][2]float64{
		{0.001, 0.01}, {0.01, 0.1}, {0.1, 0.5}, {0.25, 0.75}, {0.5, 0.9}, {0.9, 0.99}, {0, 1e-6}, {0.999, 1},
	}
	for _, pair := range pairs {
		lo, hi := NewSampler(pair[0]), NewSampler(pair[1])
		t.Run(fmt.Sprintf("%v_within_%v", pair[0], pair[1]), func(t *testing.T) {
			var keptLo, keptHi int
			for _, id := range ids {
				kl, kh := lo.Keep(id), hi.Keep(id)
				if kl && !kh {
					t.Fatalf("trace %x kept at p=%v but dropped at p=%v", id, pair[0], pair[1])
				}
				if kl {
					keptLo++
				}
				if kh {
					keptHi++
				}
			}
			if keptLo > keptHi {
				t.Errorf("kept %d at p=%v, more than %d at p=%v", keptLo, pair[0], keptHi, pair[1])
			}
		})
	}
}

// TestKeepFraction checks that the observed keep rate is within 1 percentage
// point of p, and also within 5 binomial standard deviations (the tighter
// bound for these sizes).
func TestKeepFraction(t *testing.T) {
	const n = 200_000
	ids := randomIDs(n, 2)
	for _, p := range []float64{0.01, 0.1, 0.5, 0.9} {
		t.Run(strconv.FormatFloat(p, 'g', -1, 64), func(t *testing.T) {
			s := NewSampler(p)
			kept := 0
			for _, id := range ids {
				if s.Keep(id) {
					kept++
				}
			}
			got := float64(kept) / n
			sigma := math.Sqrt(p * (1 - p) / n)
			if d := math.Abs(got - p); d > 0.01 || d > 5*sigma {
				t.Errorf("kept fraction %.5f, want %v ± min(0.01, %.5f)", got, p, 5*sigma)
			}
		})
	}
}

var sink bool

func BenchmarkKeep(b *testing.B) {
	ids := randomIDs(1024, 9)
	b.Run("Sampler", func(b *testing.B) {
		s := NewSampler(0.1)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink = s.Keep(ids[i&1023])
		}
	})
	b.Run("func", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			sink = Keep(ids[i&1023], 0.1)
		}
	})
}

func TestParseThreshold(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"8", 1 << 55, true},
		{"c", 0xc0000000000000, true},
		{"e6666666666666", 0xe6666666666666, true},
		{"fffffffffffff", 0xfffffffffffff0, true},
		{"", 0, false},
		{"C", 0, false},
		{"0123456789abcde", 0, false},
		{"g", 0, false},
		{"8 ", 0, false},
	} {
		got, err := ParseThreshold(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseThreshold(%q) = %#x, %v; want %#x ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidValue) {
			t.Errorf("ParseThreshold(%q): %v does not wrap ErrInvalidValue", tc.in, err)
		}
		if tc.ok {
			if back := string(AppendThreshold(nil, got)); back != strings.TrimRight(tc.in, "0") && !(tc.in == "0" && back == "0") {
				t.Errorf("AppendThreshold(%#x) = %q, want %q", got, back, tc.in)
			}
		}
	}
	if b := AppendThreshold([]byte("x"), MaxThreshold); string(b) != "x" {
		t.Errorf("AppendThreshold(MaxThreshold) appended %q", b)
	}
}

// TestParseMalformedAllocatesNothing: a malformed th or rv is refused with a sentinel,
// without an allocation (the router meets them per span).
func TestParseMalformedAllocatesNothing(t *testing.T) {
	th, rv := []byte("zz"), []byte("0123")
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ParseThreshold(th); !errors.Is(err, ErrThreshold) || !errors.Is(err, ErrInvalidValue) {
			t.Fatalf("ParseThreshold(%q): %v", th, err)
		}
		if _, err := ParseRandomness(rv); !errors.Is(err, ErrRandomness) || !errors.Is(err, ErrInvalidValue) {
			t.Fatalf("ParseRandomness(%q): %v", rv, err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per malformed th and rv", n)
	}
}

func TestParseRandomness(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"00000000000000", 0, true},
		{"0123456789abcd", 0x0123456789abcd, true},
		{"ffffffffffffff", 1<<56 - 1, true},
		{"fffffffffffff", 0, false},
		{"0123456789ABCD", 0, false},
		{"0123456789abcde", 0, false},
	} {
		got, err := ParseRandomness([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRandomness(%q) = %#x, %v; want %#x ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && string(AppendRandomness(nil, got)) != tc.in {
			t.Errorf("AppendRandomness(%#x) = %q", got, AppendRandomness(nil, got))
		}
	}
}

func TestParseAppendDoNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 32)
	b := []byte("e6666666666666")
	if n := testing.AllocsPerRun(100, func() {
		v, _ := ParseThreshold(b)
		r, _ := ParseRandomness(b)
		buf = AppendRandomness(AppendThreshold(buf[:0], v), r)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
