package sampling

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/otelfleet/otelfleet/pkg/tracesample"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func randomIDs(n int, seed uint64) [][16]byte {
	rng := rand.New(rand.NewPCG(seed, 99))
	ids := make([][16]byte, n)
	for i := range ids {
		binary.BigEndian.PutUint64(ids[i][:8], rng.Uint64())
		binary.BigEndian.PutUint64(ids[i][8:], rng.Uint64())
	}
	return ids
}

// sdkKeeps reports whether the SDK sampler keeps a root span of trace id.
func sdkKeeps(s sdktrace.Sampler, id [16]byte) bool {
	r := s.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: trace.TraceID(id), Name: "op"})
	return r.Decision == sdktrace.RecordAndSample
}

// within3Sigma fails unless kept out of n matches probability p within 3σ.
func within3Sigma(t *testing.T, what string, kept, n int, p float64) {
	t.Helper()
	sigma := math.Sqrt(float64(n) * p * (1 - p))
	if d := math.Abs(float64(kept) - float64(n)*p); d > 3*sigma+1 {
		t.Errorf("%s: kept %d of %d, want %.1f ± %.1f (3σ)", what, kept, n, float64(n)*p, 3*sigma)
	}
}

// TestSDKRatioVersusThreshold pins down what the SDK does and why the router cannot
// apply plain threshold sampling behind it: the SDK keeps LOW values of bytes 8..15,
// the threshold scheme HIGH values of bytes 9..15, so the two decisions are
// independent (byte 8 leads the SDK's value and is not part of the threshold's) and a
// plain threshold router at p keeps p² overall.
func TestSDKRatioVersusThreshold(t *testing.T) {
	const n = 100000
	ids := randomIDs(n, 1)
	for _, p := range []float64{0.1, 0.25, 0.5} {
		sdk := sdktrace.TraceIDRatioBased(p)
		var sdkKept, both int
		for _, id := range ids {
			if !sdkKeeps(sdk, id) {
				continue
			}
			sdkKept++
			if got, want := true, binary.BigEndian.Uint64(id[8:])>>1 < uint64(p*(1<<63)); got != want {
				t.Fatalf("SDK kept a trace its documented predicate drops")
			}
			if tracesample.Keep(id, p) {
				both++
			}
		}
		within3Sigma(t, "SDK at p", sdkKept, n, p)
		within3Sigma(t, "plain threshold behind the SDK (of the SDK-kept)", both, sdkKept, p)
	}
}

func TestRouterBehindSDK(t *testing.T) {
	const n = 100000
	ids := randomIDs(n, 2)
	for _, tc := range []struct{ sdkP, routerP float64 }{
		{0.01, 0.01}, {0.1, 0.1}, {0.25, 0.25}, {0.5, 0.5}, {0.9, 0.9},
		{0.5, 0.1}, {0.2, 0.05}, {0.1, 0.5},
	} {
		sdk := sdktrace.TraceIDRatioBased(tc.sdkP)
		s := New(tc.routerP)
		var sdkKept, kept int
		buf := make([]byte, 0, 64)
		for _, id := range ids {
			if !sdkKeeps(sdk, id) {
				continue
			}
			sdkKept++
			out := s.Decide(id, nil, buf[:0])
			if !out.Keep {
				continue
			}
			kept++
			st := parseTraceState(out.TraceState)
			if !st.hasTh || !st.hasRv || st.rv < st.th || st.th != out.Threshold {
				t.Fatalf("p=%v: kept span has tracestate %q (threshold %#x)", tc.routerP, out.TraceState, out.Threshold)
			}
		}
		if tc.routerP >= tc.sdkP {
			if kept != sdkKept {
				t.Errorf("sdk %v, router %v: router kept %d of the SDK's %d, want all", tc.sdkP, tc.routerP, kept, sdkKept)
			}
		} else {
			within3Sigma(t, "router below the SDK's rate", kept, sdkKept, tc.routerP/tc.sdkP)
		}
	}
}

func TestRouterBehindAlwaysOn(t *testing.T) {
	const n = 100000
	ids := randomIDs(n, 3)
	on := sdktrace.AlwaysSample()
	for _, p := range []float64{0.01, 0.1, 0.3, 0.75} {
		s := New(p)
		kept := 0
		for _, id := range ids {
			if sdkKeeps(on, id) && s.Decide(id, nil, nil).Keep {
				kept++
			}
		}
		within3Sigma(t, "AlwaysOn then router", kept, n, p)
	}
}

// TestNestedAndDownstream checks that a lower rate keeps a subset of what a higher one
// kept, and that a downstream equalizing sampler (this one, at a lower rate) reading the
// written tracestate keeps a subset at the right rate.
func TestNestedAndDownstream(t *testing.T) {
	const n = 50000
	ids := randomIDs(n, 4)
	hi, lo := New(0.4), New(0.1)
	var keptHi, keptBoth int
	for _, id := range ids {
		a := hi.Decide(id, []byte("vendor=x"), nil)
		b := lo.Decide(id, nil, nil)
		if b.Keep && !a.Keep {
			t.Fatalf("p=0.1 kept a trace p=0.4 dropped")
		}
		if !a.Keep {
			continue
		}
		keptHi++
		c := lo.Decide(id, a.TraceState, nil)
		if c.Keep != b.Keep {
			t.Fatalf("downstream at 0.1 on %q decided %v, direct %v", a.TraceState, c.Keep, b.Keep)
		}
		if c.Keep {
			keptBoth++
			if c.Threshold != tracesample.ThresholdFor(0.1) {
				t.Fatalf("downstream threshold %#x", c.Threshold)
			}
		}
	}
	within3Sigma(t, "downstream 0.1 after 0.4", keptBoth, keptHi, 0.25)
}

func TestEqualizing(t *testing.T) {
	// Randomness from the trace ID (bytes 9..15) is 0xa0000000000000; rv overrides it.
	id := [16]byte{9: 0xa0}
	for _, tc := range []struct {
		name   string
		p      float64
		ts     string
		keep   bool
		wantTS string // "" = unchanged
	}{
		{"incoming th lower, ours raises", 0.25, "ot=th:8", false, ""},
		{"incoming th lower, kept, raised", 0.5, "ot=th:4", true, "ot=th:8"},
		{"incoming th higher stays", 0.9, "ot=th:8", true, ""},
		{"incoming th equal", 0.5, "ot=th:8", true, ""},
		{"rv overrides trace id (drop)", 0.5, "ot=rv:10000000000000", false, ""},
		{"rv overrides trace id (keep)", 0.25, "ot=rv:f0000000000000", true, "ot=th:c;rv:f0000000000000"},
		{"rv and th", 0.9, "ot=th:c;rv:f0000000000000", true, ""},
		{"other sub-keys and members kept", 0.5, "a=1, ot=x:y;th:4;z:w ,b=2", true, "ot=th:8;x:y;z:w,a=1,b=2"},
		{"inconsistent th is erased", 1, "ot=th:c,a=1", true, "a=1"},
		{"p=1 keeps th", 1, "ot=th:8", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := New(tc.p).Decide(id, []byte(tc.ts), nil)
			if out.Keep != tc.keep {
				t.Fatalf("keep %v, want %v", out.Keep, tc.keep)
			}
			if !out.Keep {
				return
			}
			if got := string(out.TraceState); (out.TraceState == nil) != (tc.wantTS == "") || got != tc.wantTS {
				t.Fatalf("tracestate %q (nil %v), want %q", got, out.TraceState == nil, tc.wantTS)
			}
		})
	}
}

func TestMalformedTraceState(t *testing.T) {
	// An ID the ratio rule keeps at 0.5 (bytes 8..15 low).
	id := [16]byte{8: 0x10}
	s := New(0.5)
	for _, ts := range []string{"ot=th:", "ot=th:XYZ", "ot=th:0123456789abcdef", "ot=rv:123", "ot=rv:ABCDEFABCDEFAB", "ot=th:c;rv:zz"} {
		t.Run(ts, func(t *testing.T) {
			out := s.Decide(id, []byte(ts), nil)
			st := parseTraceState(out.TraceState)
			if out.Keep && (st.thBad || st.rvBad) {
				t.Fatalf("malformed value kept in %q", out.TraceState)
			}
			if out.Keep && st.hasTh && st.hasRv && st.rv < st.th {
				t.Fatalf("written rv below th: %q", out.TraceState)
			}
		})
	}
	// Garbage never panics and never writes an unparsable ot member.
	rng := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < 20000; i++ {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			b[j] = "ot=thrv:;,0123456789abcdefX \t"[rng.IntN(29)]
		}
		out := s.Decide(randomIDs(1, uint64(i))[0], b, nil)
		if st := parseTraceState(out.TraceState); out.TraceState != nil && (st.thBad || st.rvBad) {
			t.Fatalf("%q → %q", b, out.TraceState)
		}
	}
}

func TestRatioBoundary(t *testing.T) {
	// At the predicate's boundary u = 2·bound−1 (kept) and 2·bound (dropped), the written
	// rv must still reach th for the kept one.
	for _, p := range []float64{0.1, 0.25, 1.0 / 3, 0.999} {
		s := New(p)
		for _, u := range []uint64{2*s.ratioBound - 1, 2 * s.ratioBound, 0} {
			var id [16]byte
			binary.BigEndian.PutUint64(id[8:], u)
			out := s.Decide(id, nil, nil)
			if want := u>>1 < s.ratioBound; out.Keep != want {
				t.Fatalf("p=%v u=%#x: keep %v, want %v", p, u, out.Keep, want)
			}
			if out.Keep && ratioRandomness(id) < s.ratioThreshold {
				t.Fatalf("p=%v u=%#x: rv %#x below th %#x", p, u, ratioRandomness(id), s.ratioThreshold)
			}
		}
		if d := int64(s.ratioThreshold) - int64(tracesample.ThresholdFor(p)); d < -1 || d > 1 {
			t.Fatalf("p=%v: ratio threshold %#x is not th(p) %#x", p, s.ratioThreshold, tracesample.ThresholdFor(p))
		}
	}
}

func TestNewClamps(t *testing.T) {
	for in, want := range map[float64]float64{math.NaN(): 0, -1: 0, 2: 1, 0.3: 0.3} {
		if got := New(in).Probability(); got != want {
			t.Errorf("New(%v).Probability() = %v, want %v", in, got, want)
		}
	}
	if New(0).Decide([16]byte{8: 0}, nil, nil).Keep {
		t.Error("p=0 kept a span")
	}
	if out := New(1).Decide([16]byte{8: 0xff}, []byte("a=b"), nil); !out.Keep || out.TraceState != nil {
		t.Errorf("p=1: %+v", out)
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	s := New(0.5)
	buf := make([]byte, 0, 256)
	ts := []byte("vendor=abc,ot=th:4;x:y")
	bad := []byte("ot=th:zz;rv:0123") // malformed th and rv: rewritten, refused without an error allocated
	ids := randomIDs(64, 6)
	if n := testing.AllocsPerRun(200, func() {
		for _, id := range ids {
			s.Decide(id, ts, buf[:0])
			s.Decide(id, nil, buf[:0])
			s.Decide(id, bad, buf[:0])
		}
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func BenchmarkDecide(b *testing.B) {
	s := New(0.25)
	buf := make([]byte, 0, 256)
	ids := randomIDs(1024, 7)
	for _, bc := range []struct{ name, ts string }{
		{"no-tracestate", ""}, {"ot-and-vendor", "vendor=abc,ot=th:8;rv:f0000000000000"},
		{"malformed-th-rv", "ot=th:zz;rv:0123"}, // refused by a sentinel: 0 allocs
	} {
		b.Run(bc.name, func(b *testing.B) {
			ts := []byte(bc.ts)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Decide(ids[i&1023], ts, buf[:0])
				i++
			}
		})
	}
}
