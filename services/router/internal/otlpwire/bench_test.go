package otlpwire

import (
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// benchTraces is a realistic request: 10 resources × 2 scopes × 26 spans = 520 spans,
// each with 3 attributes, a third with a trace state.
func benchTraces(b *testing.B) ([]byte, int) {
	td := testTraces(10, 26, 11)
	return marshalTraces(b, td), td.SpanCount()
}

const benchDests = 4

// processCPU is the CPU time (user + system) of the process so far: on a shared
// machine it measures the work, where wall time also measures the neighbours.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportPerSpan reports wall and CPU nanoseconds per span since cpu0.
func reportPerSpan(b *testing.B, spans int, cpu0 time.Duration) {
	n := float64(b.N * spans)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/span")
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/n, "cpu-ns/span")
}

// BenchmarkSplitTraces splits the request over 4 destinations, rewriting the trace
// state of a quarter of the spans, and hands the payloads back to the pool.
func BenchmarkSplitTraces(b *testing.B) {
	req, spans := benchTraces(b)
	ts := []byte("ot=th:c;rv:0123456789abcd")
	route := func(it *Item) Verdict {
		v := Verdict{Dest: int(it.TraceID[0] % benchDests)}
		if it.TraceID[1]%4 == 0 {
			v.TraceState = ts
		}
		return v
	}
	var s Splitter
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		res, err := s.Split(Traces, req, benchDests, route)
		if err != nil {
			b.Fatal(err)
		}
		for i := range res.Parts {
			res.Parts[i].Release()
		}
	}
	reportPerSpan(b, spans, cpu0)
}

// BenchmarkPdataSplitTraces does the same split the way a pdata-based router does:
// unmarshal into objects, copy each span with its resource and scope into the request
// of its destination, marshal each request.
func BenchmarkPdataSplitTraces(b *testing.B) {
	req, spans := benchTraces(b)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(req)
		if err != nil {
			b.Fatal(err)
		}
		var outs [benchDests]ptrace.Traces
		for d := range outs {
			outs[d] = ptrace.NewTraces()
		}
		for r := 0; r < td.ResourceSpans().Len(); r++ {
			rs := td.ResourceSpans().At(r)
			var dstRS [benchDests]ptrace.ResourceSpans
			var made [benchDests]bool
			for sc := 0; sc < rs.ScopeSpans().Len(); sc++ {
				ss := rs.ScopeSpans().At(sc)
				var dstSS [benchDests]ptrace.ScopeSpans
				var madeSS [benchDests]bool
				for i := 0; i < ss.Spans().Len(); i++ {
					sp := ss.Spans().At(i)
					d := int(sp.TraceID()[0] % benchDests)
					if !made[d] {
						dstRS[d] = outs[d].ResourceSpans().AppendEmpty()
						rs.Resource().CopyTo(dstRS[d].Resource())
						dstRS[d].SetSchemaUrl(rs.SchemaUrl())
						made[d] = true
					}
					if !madeSS[d] {
						dstSS[d] = dstRS[d].ScopeSpans().AppendEmpty()
						ss.Scope().CopyTo(dstSS[d].Scope())
						dstSS[d].SetSchemaUrl(ss.SchemaUrl())
						madeSS[d] = true
					}
					out := dstSS[d].Spans().AppendEmpty()
					sp.CopyTo(out)
					if sp.TraceID()[1]%4 == 0 {
						out.TraceState().FromRaw("ot=th:c;rv:0123456789abcd")
					}
				}
			}
		}
		for d := range outs {
			if _, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(outs[d]); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportPerSpan(b, spans, cpu0)
}
