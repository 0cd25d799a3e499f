package routersvc

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testRegion = "eu-west-1"

// testConfig is DefaultConfig on loopback ports chosen by the kernel.
func testConfig() Config {
	c := DefaultConfig()
	c.GRPCAddr, c.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	c.ReportInterval = 100 * time.Millisecond
	return c
}

// env is a router running the way its binary runs it, on a real in-process NATS.
type env struct {
	t   testing.TB
	srv *natstest.Server
	js  jetstream.JetStream
	r   *Service
	app *fxtest.App
	reg jetstream.KeyValue
	// backends are closed after the router stops.
	backends []*backend
}

// startRouter starts a router with cfg and waits until it is ready.
func startRouter(t testing.TB, cfg Config) *env {
	t.Helper()
	srv := natstest.Run(t)
	s := platform.DefaultSettings("router")
	s.NATS.URL, s.AdminAddr, s.LogLevel, s.LogFormat, s.Region = srv.URL(), "127.0.0.1:0", "error", "text", testRegion
	e := &env{t: t, srv: srv}
	var ready *platform.Readiness
	e.app = fxtest.New(t, platform.Options(s), platform.Module(s), configwatch.Module, Module(cfg), fx.Populate(&e.r, &ready))
	e.app.RequireStart()
	// Cleanups run last-in first-out: the router stops (flushing to its backends) before
	// the backends close.
	t.Cleanup(func() {
		for _, b := range e.backends {
			b.close()
		}
	})
	t.Cleanup(e.app.RequireStop)
	natstest.Eventually(t, 15*time.Second, func() bool { _, ok := ready.Check(); return ok }, "router not ready")
	_, e.js = srv.JetStream(t)
	kv, err := e.js.KeyValue(context.Background(), events.Default.RegistryBucket())
	if err != nil {
		t.Fatal(err)
	}
	e.reg = kv
	return e
}

// putDecision stores a sampling decision keeping every service at rate.
func (e *env) putDecision(rate float64) {
	e.t.Helper()
	kv, err := e.js.KeyValue(context.Background(), events.Default.SamplingBucket())
	if err != nil {
		e.t.Fatal(err)
	}
	d := events.Decision{
		V: events.DecisionVersion, Version: 1, Leader: "test", Token: 1, At: time.Now(), IntervalMS: 1000,
		Strategy: "sampling_rate", GlobalRate: rate, DefaultRate: rate, Services: map[string]events.ServiceDecision{},
	}
	b, err := events.Encode(d)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), events.DecisionKey, b); err != nil {
		e.t.Fatal(err)
	}
	// Requests read the policy, not the decision: wait until the policy in force holds it
	// (a stream started before would be sampled at the previous rate, answered OK).
	natstest.Eventually(e.t, 5*time.Second, func() bool {
		dec := e.r.policy.Load().decision
		return dec != nil && dec.DefaultRate == rate
	}, "decision not applied")
}

// grpcAddr and httpURL are the router's receivers.
func (e *env) grpcAddr() string { g, _ := e.r.Addrs(); return g }
func (e *env) httpURL() string  { _, h := e.r.Addrs(); return "http://" + h }

// backend is a fake backend collector: a real OTLP/gRPC trace server that counts the
// spans of every trace, registered in the registry with its address.
type backend struct {
	ptraceotlp.UnimplementedGRPCServer
	logs    logsServer
	metrics metricsServer
	id      string
	srv     *grpc.Server
	ln      net.Listener
	reg     *registration.Client
	wg      sync.WaitGroup
	stop    sync.Once

	// host, when set, is where its registration reads the host CPU.
	host *processCPU
	// hold, when set before traffic, makes Export wait until it is closed (a stuck backend).
	hold chan struct{}
	// entered counts trace Export calls that started (a held one included).
	entered atomic.Int64

	mu     sync.Mutex
	traces map[[16]byte]int
	spans  int
	// logTraces counts log records per trace ID (zero ID: none); services counts log
	// records and data points per service.name.
	logTraces map[[16]byte]int
	services  map[string]int
}

// logsServer and metricsServer count what the backend's logs and metrics services get.
type logsServer struct {
	plogotlp.UnimplementedGRPCServer
	b *backend
}

func (s *logsServer) Export(_ context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	rls := req.Logs().ResourceLogs()
	for i := range rls.Len() {
		svc, _ := rls.At(i).Resource().Attributes().Get("service.name")
		sls := rls.At(i).ScopeLogs()
		for j := range sls.Len() {
			lrs := sls.At(j).LogRecords()
			for k := range lrs.Len() {
				b.logTraces[lrs.At(k).TraceID()]++
				b.services[svc.Str()]++
			}
		}
	}
	return plogotlp.NewExportResponse(), nil
}

type metricsServer struct {
	pmetricotlp.UnimplementedGRPCServer
	b *backend
}

func (s *metricsServer) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	rms := req.Metrics().ResourceMetrics()
	for i := range rms.Len() { // one data point per resource in the tests
		svc, _ := rms.At(i).Resource().Attributes().Get("service.name")
		b.services[svc.Str()]++
	}
	return pmetricotlp.NewExportResponse(), nil
}

// fixedReadings keeps registration health checks away from the shared machine's load.
type fixedReadings struct{}

func (fixedReadings) Sample() (sysstat.Reading, error) { return sysstat.Reading{}, nil }

// processCPU is a registration sampler whose process CPU share (of its allowed CPUs) a
// test sets (0 to 1); the host reads fully busy throughout, which health ignores.
type processCPU struct{ busy atomic.Uint64 } // math.Float64bits

func (h *processCPU) Sample() (sysstat.Reading, error) {
	return sysstat.Reading{HostCPU: 1, ProcessCPUShare: math.Float64frombits(h.busy.Load())}, nil
}

func (h *processCPU) set(f float64) { h.busy.Store(math.Float64bits(f)) }

// withCPU makes b's registration read its process CPU from h; b may start unhealthy, so
// addBackend does not wait for it to enter the tables.
func withCPU(h *processCPU) func(*backend) { return func(b *backend) { b.host = h } }

// addBackend starts and registers a backend and waits until the router routes to it.
func (e *env) addBackend(id string, opts ...func(*backend)) *backend {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	b := &backend{id: id, ln: ln, srv: grpc.NewServer(), traces: map[[16]byte]int{}, logTraces: map[[16]byte]int{}, services: map[string]int{}}
	for _, o := range opts {
		o(b)
	}
	ptraceotlp.RegisterGRPCServer(b.srv, b)
	b.logs.b, b.metrics.b = b, b
	plogotlp.RegisterGRPCServer(b.srv, &b.logs)
	pmetricotlp.RegisterGRPCServer(b.srv, &b.metrics)
	b.wg.Add(1)
	go func() { defer b.wg.Done(); _ = b.srv.Serve(ln) }()
	var sampler registration.Sampler = fixedReadings{}
	if b.host != nil {
		sampler = b.host
	}
	b.reg, err = registration.New(e.reg, registration.Config{
		Kind: events.KindCollector, ID: id, Region: testRegion, Address: ln.Addr().String(),
		Sampler: sampler, Interval: time.Second,
	}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := b.reg.Register(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.backends = append(e.backends, b)
	if b.host != nil {
		return b
	}
	key := "collector." + testRegion + "." + id
	natstest.Eventually(e.t, 5*time.Second, func() bool { _, ok := e.r.tables.Load().byKey[key]; return ok }, "backend %s not in the tables", id)
	return b
}

// leave deregisters b and closes its server at once (its in-flight calls fail).
func (b *backend) leave() {
	_ = b.reg.Deregister(context.Background())
	b.close()
}

func (b *backend) close() {
	b.stop.Do(func() {
		_ = b.reg.Deregister(context.Background())
		b.srv.Stop()
		b.wg.Wait()
	})
}

// Export counts the request's spans per trace.
func (b *backend) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	b.entered.Add(1)
	if b.hold != nil {
		select {
		case <-b.hold:
		case <-ctx.Done():
			return ptraceotlp.NewExportResponse(), ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	rss := req.Traces().ResourceSpans()
	for i := range rss.Len() {
		sss := rss.At(i).ScopeSpans()
		for j := range sss.Len() {
			spans := sss.At(j).Spans()
			for k := range spans.Len() {
				b.traces[spans.At(k).TraceID()]++
				b.spans++
			}
		}
	}
	return ptraceotlp.NewExportResponse(), nil
}

// counts returns a copy of the per-trace span counts and the total.
func (b *backend) counts() (map[[16]byte]int, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[[16]byte]int, len(b.traces))
	for k, v := range b.traces {
		out[k] = v
	}
	return out, b.spans
}

// logsAndServices returns copies of the log records per trace and the items per service.
func (b *backend) logsAndServices() (map[[16]byte]int, map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	lt := make(map[[16]byte]int, len(b.logTraces))
	for k, v := range b.logTraces {
		lt[k] = v
	}
	sv := make(map[string]int, len(b.services))
	for k, v := range b.services {
		sv[k] = v
	}
	return lt, sv
}

// total sums the spans received by bs.
func total(bs ...*backend) int {
	n := 0
	for _, b := range bs {
		_, s := b.counts()
		n += s
	}
	return n
}

func flagSet() *flag.FlagSet { return flag.NewFlagSet("router", flag.ContinueOnError) }

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// putGlobal stores g as the global config and waits until the router applied it.
func (e *env) putGlobal(g fleetconfig.Global) {
	e.t.Helper()
	kv, err := e.js.KeyValue(context.Background(), events.Default.ConfigBucket())
	if err != nil {
		e.t.Fatal(err)
	}
	g.Version = 7
	b, err := json.Marshal(g)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), events.GlobalConfigKey, b); err != nil {
		e.t.Fatal(err)
	}
	natstest.Eventually(e.t, 5*time.Second, func() bool {
		s := e.r.policy.Load().snap
		return s != nil && s.Global.Version == 7
	}, "config not applied")
}

// unlimited returns the default global config without rate limits.
func unlimited() fleetconfig.Global {
	g := fleetconfig.Defaults().Global
	g.RateLimiting = fleetconfig.RateLimiting{}
	return g
}
