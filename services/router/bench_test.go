package routersvc

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/otelfleet/otelfleet/services/router/internal/backends"
	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// benchRequest is a request of traces traces × spansPer spans over 4 services.
func benchRequest(b *testing.B, traces, spansPer int) []byte {
	b.Helper()
	td := ptrace.NewTraces()
	for r := range 4 {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("svc-%d", r))
		ss := rs.ScopeSpans().AppendEmpty()
		for i := range traces / 4 {
			var id [16]byte
			id[0], id[1], id[15], id[8] = byte(r), byte(i), byte(i*7), byte(i*13)
			for j := range spansPer {
				sp := ss.Spans().AppendEmpty()
				sp.SetTraceID(pcommon.TraceID(id))
				sp.SetSpanID(pcommon.SpanID{byte(j), 2, 3, 4, 5, 6, 7, 8})
				sp.SetName("GET /api/items")
				sp.Attributes().PutStr("http.method", "GET")
			}
		}
	}
	req, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		b.Fatal(err)
	}
	return req
}

// BenchmarkSplitRoute measures the router's per-request work without the network: the
// wire-level split with sampling (rate 0.5, th written on kept spans), the routing rules
// and the table pick for every span, over 3 backends. ns/span is ns/op ÷ 512.
func BenchmarkSplitRoute(b *testing.B) {
	s := &Service{}
	s.policy.Store(&policy{region: testRegion, configRate: 0.5, plans: map[string]*plan{}})
	list := []backends.Backend{{Key: "collector.r.b1", Region: testRegion}, {Key: "collector.r.b2", Region: testRegion}, {Key: "collector.r.b3", Region: testRegion}}
	t, err := buildTables(DefaultConfig().balanceConfig(), list, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	req := benchRequest(b, 128, 4)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		st := s.getSplitState(otlpwire.Traces, t)
		res, err := st.sp.Split(otlpwire.Traces, req, len(t.keys)+1, st.fn)
		if err != nil {
			b.Fatal(err)
		}
		for i := range res.Parts {
			res.Parts[i].Release()
		}
		putSplitState(st)
	}
}

// BenchmarkExport measures one request's whole path in the router — split, sampling at
// rate 1, picks, and hand-off to the exporter's queues — with three real OTLP/gRPC
// backends draining them (gzip on the wire). It reports the spans per second the router
// accepted; refusals (queues full) are counted, not hidden.
func BenchmarkExport(b *testing.B) {
	e := startRouter(b, testConfig())
	for _, id := range []string{"b1", "b2", "b3"} {
		e.addBackend(id)
	}
	e.putGlobal(unlimited())
	e.putDecision(1)
	req := benchRequest(b, 128, 4)
	busy := 0
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, r := e.r.export(context.Background(), otlpwire.Traces, req); r != nil {
			busy++
		}
	}
	b.ReportMetric(float64(b.N-busy)*512/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(float64(busy)/float64(b.N), "refused/op")
}
