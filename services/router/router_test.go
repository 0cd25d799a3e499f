package routersvc

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/services/router/internal/balance"
	"github.com/otelfleet/otelfleet/services/router/internal/sampling"
)

// sendTraces sends n traces of spansPer spans each through exp (a real OTel SDK
// exporter) as service svc and returns the spans the SDK ended, by trace.
func sendTraces(t *testing.T, exp sdktrace.SpanExporter, svc string, n, spansPer int) map[[16]byte]int {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(svc))),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(rec),
		sdktrace.WithBatcher(exp, sdktrace.WithMaxExportBatchSize(256), sdktrace.WithMaxQueueSize(1<<20), sdktrace.WithBatchTimeout(20*time.Millisecond)),
	)
	tr := tp.Tracer("router-test")
	for range n {
		ctx, root := tr.Start(context.Background(), "root")
		for range spansPer - 1 {
			_, c := tr.Start(ctx, "child")
			c.End()
		}
		root.End()
	}
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatalf("SDK shutdown (export): %v", err)
	}
	sent := map[[16]byte]int{}
	for _, s := range rec.Ended() {
		sent[s.SpanContext().TraceID()]++
	}
	return sent
}

// keptBy returns the traces of sent a router keeps at rate and their spans.
func keptBy(sent map[[16]byte]int, rate float64) (map[[16]byte]int, int) {
	sm := sampling.New(rate)
	kept, spans := map[[16]byte]int{}, 0
	for id, n := range sent {
		if sm.Decide(id, nil, nil).Keep {
			kept[id] = n
			spans += n
		}
	}
	return kept, spans
}

// TestSDKExportersThroughRouter: the OTel Go SDK's OTLP/gRPC and OTLP/HTTP exporters send
// to the router with three backends behind it; every kept trace lands whole on exactly
// one backend, nothing else arrives, and the kept fraction matches the decision's rate
// within 3σ.
func TestSDKExportersThroughRouter(t *testing.T) {
	e := startRouter(t, testConfig())
	bs := []*backend{e.addBackend("b1"), e.addBackend("b2"), e.addBackend("b3")}
	const rate = 0.25
	e.putGlobal(unlimited())
	e.putDecision(rate)
	ctx := context.Background()
	ge, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(e.grpcAddr()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	_, h := e.r.Addrs()
	he, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(h), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	const traces, spansPer = 1500, 3
	sent := sendTraces(t, ge, "checkout", traces, spansPer)
	for id, n := range sendTraces(t, he, "cart", traces, spansPer) {
		sent[id] = n
	}
	kept, keptSpans := keptBy(sent, rate)
	defer func() {
		for _, b := range bs {
			_, n := b.counts()
			t.Logf("%s: %d spans", b.id, n)
		}
		t.Logf("status: %+v", e.r.Status())
	}()
	natstest.Eventually(t, 20*time.Second, func() bool { return total(bs...) >= keptSpans }, "backends got %d of %d kept spans", total(bs...), keptSpans)
	if got := total(bs...); got != keptSpans {
		t.Fatalf("backends got %d spans, want exactly the %d kept", got, keptSpans)
	}
	where := map[[16]byte]int{}
	for i, b := range bs {
		got, n := b.counts()
		if n == 0 {
			t.Errorf("backend %s got nothing", b.id)
		}
		for id, c := range got {
			if want, ok := kept[id]; !ok || c != want {
				t.Fatalf("backend %s has %d spans of trace %x, want %d (kept %v)", b.id, c, id, want, ok)
			}
			if j, dup := where[id]; dup {
				t.Fatalf("trace %x on backends %d and %d", id, j, i)
			}
			where[id] = i
		}
	}
	n := float64(len(sent))
	sigma := math.Sqrt(n * rate * (1 - rate))
	if d := math.Abs(float64(len(kept)) - n*rate); d > 3*sigma {
		t.Fatalf("kept %d of %v traces, want %v ± %v", len(kept), n, n*rate, 3*sigma)
	}
	st := e.r.Status()
	if st.Received != int64(len(sent)*spansPer) || st.Kept != int64(keptSpans) || st.Sampled != st.Received-st.Kept {
		t.Fatalf("status counters: %+v (sent %d, kept %d)", st, len(sent)*spansPer, keptSpans)
	}
}

// streamer sends requests of single-trace batches over gRPC until stopped, retrying
// UNAVAILABLE answers, and remembers what the router accepted.
type streamer struct {
	cc      *grpc.ClientConn
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	sent    map[[16]byte]int
	retried atomic.Int64
}

func startStreamer(t *testing.T, addr string, workers int) *streamer {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s := &streamer{cc: cc, stop: make(chan struct{}), sent: map[[16]byte]int{}}
	for w := range workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				select {
				case <-s.stop:
					return
				default:
				}
				var id [16]byte
				for i := range id {
					id[i] = byte(rng.Uint32())
				}
				req := traceRequest(t, "checkout", id, 4)
				for {
					var out rawMsg
					err := cc.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &rawMsg{b: req}, &out, grpc.ForceCodecV2(rawCodec{}))
					if err == nil {
						s.mu.Lock()
						s.sent[id] += 4
						s.mu.Unlock()
						break
					}
					if status.Code(err) != codes.Unavailable {
						t.Errorf("export: %v", err)
						return
					}
					s.retried.Add(1)
					time.Sleep(5 * time.Millisecond) // the client's retry delay, not synchronisation
				}
			}
		}()
	}
	return s
}

func (s *streamer) finish() map[[16]byte]int {
	close(s.stop)
	s.wg.Wait()
	_ = s.cc.Close()
	return s.sent
}

// streaming starts a router keeping everything with three backends and a stream of
// traces flowing through it to all three.
func streaming(t *testing.T) (*env, []*backend, *streamer) {
	t.Helper()
	e := startRouter(t, testConfig())
	bs := []*backend{e.addBackend("b1"), e.addBackend("b2"), e.addBackend("b3")}
	e.putGlobal(unlimited())
	e.putDecision(1)
	s := startStreamer(t, e.grpcAddr(), 4)
	natstest.Eventually(t, 30*time.Second, func() bool { _, n := bs[1].counts(); return n > 200 }, "no traffic on b2") // a bound on a failure only: slow under load
	return e, bs, s
}

// TestBackendLeavesMidStream: a backend deregisters and closes while traffic flows; it
// leaves the tables within a second and every accepted span still arrives.
func TestBackendLeavesMidStream(t *testing.T) {
	e, bs, s := streaming(t)
	left := time.Now()
	bs[1].leave()
	natstest.Eventually(t, time.Second, func() bool { _, ok := e.r.tables.Load().byKey["collector."+testRegion+".b2"]; return !ok }, "b2 still routed to 1s after it left")
	t.Logf("b2 out of the tables after %v", time.Since(left))
	natstest.Eventually(t, 10*time.Second, func() bool { _, n := bs[0].counts(); return n > 200 }, "traffic stopped")
	sent := s.finish()
	want := 0
	for _, n := range sent {
		want += n
	}
	natstest.Eventually(t, 20*time.Second, func() bool { return total(bs...) >= want }, "backends got %d of %d spans", total(bs...), want)
	got := map[[16]byte]int{}
	for _, b := range bs {
		c, _ := b.counts()
		for id, n := range c {
			got[id] += n
		}
	}
	lost, dup := 0, 0
	for id, n := range sent {
		if got[id] < n {
			lost += n - got[id]
		} else {
			dup += got[id] - n
		}
	}
	t.Logf("sent %d spans in %d traces; %d client retries; duplicates %d", want, len(sent), s.retried.Load(), dup)
	if lost > 0 {
		t.Fatalf("%d spans lost", lost)
	}
	if d := counterValue(t, e.r.m.dropped); d != 0 {
		t.Fatalf("dropped %v", d)
	}
}

// TestBackendJoins: a new backend takes its share and little else moves: at most
// 1/N + 5% of traces change backend, most of them to the new one.
func TestBackendJoins(t *testing.T) {
	e := startRouter(t, testConfig())
	e.addBackend("b1")
	e.addBackend("b2")
	e.addBackend("b3")
	pl := e.r.policy.Load().planFor([]byte("checkout"))
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]uint64, 20000)
	before := make([]string, len(keys))
	t0 := e.r.tables.Load()
	for i := range keys {
		var id [16]byte
		for j := range id {
			id[j] = byte(rng.Uint32())
		}
		keys[i] = balance.TraceKey(id)
		before[i] = t0.keys[t0.pick(pl, keys[i], nil)]
	}
	e.addBackend("b4")
	t1 := e.r.tables.Load()
	moved, toNew := 0, 0
	for i, k := range keys {
		if after := t1.keys[t1.pick(pl, k, nil)]; after != before[i] {
			moved++
			if after == "collector."+testRegion+".b4" {
				toNew++
			}
		}
	}
	f := float64(moved) / float64(len(keys))
	t.Logf("%.3f of traces moved, %.3f to the new backend", f, float64(toNew)/float64(len(keys)))
	if f > 0.25+0.05 || toNew < moved*3/4 {
		t.Fatalf("%.3f of traces moved (%d of them to the new backend), want at most 1/4 + 5%%, mostly to it", f, toNew)
	}
}

// TestOverload: with a tiny memory limit and many concurrent clients, some requests are
// refused with 503 + Retry-After or UNAVAILABLE + RetryInfo, and the router's memory
// never goes over its limit.
func TestOverload(t *testing.T) {
	cfg := testConfig()
	cfg.MemoryLimit, cfg.MaxRequestBytes, cfg.MaxDecompressedBytes = 160<<10, 32<<10, 64<<10 // the least that holds the largest request
	e := startRouter(t, cfg)
	bs := []*backend{e.addBackend("b1")}
	e.putGlobal(unlimited())
	e.putDecision(1)
	var busyHTTP, busyGRPC, okHTTP atomic.Int64
	var wg sync.WaitGroup
	body := traceRequest(t, "checkout", [16]byte{9}, 400) // ~20 KiB
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc, err := grpc.NewClient(e.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Error(err)
				return
			}
			defer cc.Close()
			for range 60 {
				if w%2 == 0 {
					code, hdr, _ := postQuiet(e.httpURL()+"/v1/traces", body)
					switch code {
					case http.StatusOK:
						okHTTP.Add(1)
					case http.StatusServiceUnavailable:
						if hdr.Get("Retry-After") == "" {
							t.Error("503 without Retry-After")
						}
						busyHTTP.Add(1)
					default:
						t.Errorf("HTTP %d", code)
					}
					continue
				}
				var out rawMsg
				err := cc.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &rawMsg{b: body}, &out, grpc.ForceCodecV2(rawCodec{}))
				if err != nil {
					if status.Code(err) != codes.Unavailable {
						t.Errorf("gRPC: %v", err)
						continue
					}
					if d, ok := retryAfterOf(err); !ok || d <= 0 {
						t.Errorf("UNAVAILABLE without RetryInfo: %v", err)
					}
					busyGRPC.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("busy: HTTP %d, gRPC %d; ok HTTP %d; peak %d of %d bytes", busyHTTP.Load(), busyGRPC.Load(), okHTTP.Load(), e.r.mem.peak.Load(), e.r.mem.limit)
	if busyHTTP.Load()+busyGRPC.Load() == 0 {
		t.Fatal("no request was refused under overload")
	}
	if p := e.r.mem.peak.Load(); p > e.r.mem.limit {
		t.Fatalf("memory peaked at %d bytes, over the %d limit", p, e.r.mem.limit)
	}
	_ = bs
	if d := counterValue(t, e.r.m.dropped); d != 0 {
		t.Fatalf("dropped %v", d)
	}
}

func postQuiet(url string, body []byte) (int, http.Header, error) {
	resp, err := http.Post(url, contentProto, bytesReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header, nil
}

// TestBackendKilledMidStream: a backend's server dies (as with kill -9: its registration
// stays until it expires) while traffic flows; every accepted span still arrives.
func TestBackendKilledMidStream(t *testing.T) {
	e, bs, s := streaming(t)
	bs[1].srv.Stop() // the process is gone; the registry does not know yet
	killed := time.Now()
	_, b1 := bs[0].counts()
	_, b3 := bs[2].counts()
	// The deadlines below bound a failure only: under load (the race detector, other
	// packages' tests) the same progress takes several times longer.
	natstest.Eventually(t, 30*time.Second, func() bool {
		_, n1 := bs[0].counts()
		_, n3 := bs[2].counts()
		return n1 > b1+400 && n3 > b3+400
	}, "traffic did not continue on the others")
	t.Logf("the others took 400 more spans each %v after the kill", time.Since(killed))
	// After its first hand-back the dead backend is avoided: new traffic goes elsewhere
	// for 5 s at a time, so while the others take 800 more spans it hands back far less
	// than its third of the traffic (only what the short probes after each 5 s bring).
	b2 := func() (st events.RouterBackend) {
		for _, st := range e.r.Status().Backends {
			if st.Key == "collector."+testRegion+".b2" {
				return st
			}
		}
		t.Fatal("b2 is not in the status")
		return st
	}
	handedBack := func() int64 { return b2().Rerouted }
	// Settled: b2 handed something back and holds nothing (what went to it before it
	// was avoided is back).
	natstest.Eventually(t, 30*time.Second, func() bool {
		st := b2()
		return st.Rerouted > 0 && st.InFlight == 0 && st.QueueBytes == 0
	}, "b2 did not hand its batches back")
	h0 := handedBack()
	_, n0 := bs[0].counts()
	var n1 int
	natstest.Eventually(t, 60*time.Second, func() bool { _, n1 = bs[0].counts(); return n1 > n0+800 }, "traffic stopped on b1")
	if grew := handedBack() - h0; grew*2 > int64(n1-n0) {
		t.Fatalf("b2 kept getting traffic: it handed back %d spans while b1 took %d", grew, n1-n0)
	}
	t.Logf("b2 handed back %d spans by %v after the kill, %d more while b1 took %d", h0, time.Since(killed), handedBack()-h0, n1-n0)
	sent := s.finish()
	want := 0
	for _, n := range sent {
		want += n
	}
	got := map[[16]byte]int{}
	natstest.Eventually(t, 30*time.Second, func() bool {
		clear(got)
		for _, b := range bs {
			c, _ := b.counts()
			for id, n := range c {
				got[id] += n
			}
		}
		for id, n := range sent {
			if got[id] < n {
				return false
			}
		}
		return true
	}, "accepted spans lost: %d sent, backends have %d (%s)", want, total(bs...), lostTraces(sent, bs))
	dup := total(bs...) - want
	t.Logf("sent %d spans in %d traces; %d client retries; duplicates %d; status %+v", want, len(sent), s.retried.Load(), dup, e.r.Status().Backends)
	if d := counterValue(t, e.r.m.dropped); d != 0 {
		t.Fatalf("dropped %v", d)
	}
}

// TestFullBackendFailsOver (--ack queued): a stuck backend's queue fills up; its traces fail over to the
// next backends instead of being refused, and once it recovers everything accepted has
// arrived somewhere.
func TestFullBackendFailsOver(t *testing.T) {
	cfg := testConfig()
	cfg.QueueBytes, cfg.ExportTimeout = 64<<10, time.Minute
	// Queued acks: a client is answered while its part waits in the stuck queue, so the
	// queue fills (in delivered mode the clients wait and the queue stays small).
	cfg.Ack = AckQueued
	e := startRouter(t, cfg)
	stuck := e.addBackend("b1", func(b *backend) { b.hold = make(chan struct{}) })
	bs := []*backend{stuck, e.addBackend("b2"), e.addBackend("b3")}
	e.putGlobal(unlimited())
	e.putDecision(1)
	s := startStreamer(t, e.grpcAddr(), 4)
	natstest.Eventually(t, 20*time.Second, func() bool { return counterValue(t, e.r.m.rerouted) > 500 }, "no fail-over from the full backend (rerouted %v)", counterValue(t, e.r.m.rerouted))
	close(stuck.hold)
	sent := s.finish()
	want := 0
	for _, n := range sent {
		want += n
	}
	natstest.Eventually(t, 30*time.Second, func() bool { return total(bs...) >= want }, "backends got %d of %d accepted spans", total(bs...), want)
	t.Logf("sent %d spans; rerouted %v; client retries %d; delivered %d", want, counterValue(t, e.r.m.rerouted), s.retried.Load(), total(bs...))
	if d := counterValue(t, e.r.m.dropped); d != 0 {
		t.Fatalf("dropped %v", d)
	}
}

// lostTraces describes the traces the backends have fewer spans of than were
// acknowledged (at most 10).
func lostTraces(sent map[[16]byte]int, bs []*backend) string {
	got := map[[16]byte]int{}
	for _, b := range bs {
		c, _ := b.counts()
		for id, n := range c {
			got[id] += n
		}
	}
	var out []string
	for id, n := range sent {
		if got[id] < n && len(out) < 10 {
			out = append(out, fmt.Sprintf("%x: %d of %d", id, got[id], n))
		}
	}
	return strings.Join(out, ", ")
}
