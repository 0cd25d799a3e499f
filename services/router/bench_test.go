package routersvc

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/otelfleet/otelfleet/services/router/internal/backends"
	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
	"github.com/otelfleet/otelfleet/services/router/internal/ratelimit"
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
func BenchmarkSplitRoute(b *testing.B) { benchSplitRoute(b, nil) }

// BenchmarkSplitRouteLimited is BenchmarkSplitRoute under the example config's rate
// limits (4 services, each well under its share: every trace passes by tokens).
func BenchmarkSplitRouteLimited(b *testing.B) {
	benchSplitRoute(b, ratelimit.NewFleet(ratelimit.Limits{MaxQPS: 1e12, Burst: 1e10, PerServiceLimit: 1e10}, 16))
}

// BenchmarkSplitRouteShedding is BenchmarkSplitRoute with every service far over its
// share: traces are decided by their hash.
func BenchmarkSplitRouteShedding(b *testing.B) {
	benchSplitRoute(b, ratelimit.NewFleet(ratelimit.Limits{PerServiceLimit: 1000}, 16))
}

func benchSplitRoute(b *testing.B, lim *ratelimit.Fleet) {
	s := &Service{}
	if lim != nil {
		s.limiter.Store(lim)
	}
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
// backends draining them (gzip on the wire), in --ack queued (answered once queued). It
// reports the spans per second the router accepted; refusals (queues full) are counted,
// not hidden.
func BenchmarkExport(b *testing.B) { benchSerial(b, AckQueued, "b1", "b2", "b3") }

// benchSerial sends one request after the other through a router in mode ack with the
// backends ids, reporting the spans per second accepted and the share refused.
func benchSerial(b *testing.B, ack string, ids ...string) {
	cfg := testConfig()
	cfg.Ack = ack
	e := startRouter(b, cfg)
	for _, id := range ids {
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

// BenchmarkExportDelivered is BenchmarkExport in --ack delivered with 32 concurrent
// clients: each request returns once a backend took all of it, so the figure includes
// the batch linger and the backends' export calls.
func BenchmarkExportDelivered(b *testing.B) {
	e := startRouter(b, testConfig())
	for _, id := range []string{"b1", "b2", "b3"} {
		e.addBackend(id)
	}
	e.putGlobal(unlimited())
	e.putDecision(1)
	req := benchRequest(b, 128, 4)
	var busy, done atomic.Int64
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, r := e.r.export(context.Background(), otlpwire.Traces, req); r != nil {
				busy.Add(1)
			}
			done.Add(1)
		}
	})
	b.ReportMetric(float64(done.Load()-busy.Load())*512/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(float64(busy.Load())/float64(max(done.Load(), 1)), "refused/op")
}

// BenchmarkExportSequential is one sequential client in --ack delivered (an SDK's batch
// exporter: the next request only once the last was answered) with two backends: the
// figure is the client's throughput, so it includes the batch linger and the backend's
// export call.
func BenchmarkExportSequential(b *testing.B) { benchSerial(b, AckDelivered, "b1", "b2") }
