package routersvc

import (
	"context"
	"flag"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
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
	t   *testing.T
	srv *natstest.Server
	js  jetstream.JetStream
	r   *Service
	app *fxtest.App
	reg jetstream.KeyValue
}

// startRouter starts a router with cfg and waits until it is ready.
func startRouter(t *testing.T, cfg Config) *env {
	t.Helper()
	srv := natstest.Run(t)
	s := platform.DefaultSettings("router")
	s.NATS.URL, s.AdminAddr, s.LogLevel, s.LogFormat, s.Region = srv.URL(), "127.0.0.1:0", "error", "text", testRegion
	e := &env{t: t, srv: srv}
	var ready *platform.Readiness
	e.app = fxtest.New(t, platform.Options(s), platform.Module(s), configwatch.Module, Module(cfg), fx.Populate(&e.r, &ready))
	e.app.RequireStart()
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
	natstest.Eventually(e.t, 5*time.Second, func() bool {
		dec := e.r.decision.Load()
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
	id   string
	srv  *grpc.Server
	ln   net.Listener
	reg  *registration.Client
	wg   sync.WaitGroup
	stop sync.Once

	mu     sync.Mutex
	traces map[[16]byte]int
	spans  int
}

// fixedReadings keeps registration health checks away from the shared machine's load.
type fixedReadings struct{}

func (fixedReadings) Sample() (sysstat.Reading, error) { return sysstat.Reading{}, nil }

// addBackend starts and registers a backend and waits until the router routes to it.
func (e *env) addBackend(id string) *backend {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	b := &backend{id: id, ln: ln, srv: grpc.NewServer(), traces: map[[16]byte]int{}}
	ptraceotlp.RegisterGRPCServer(b.srv, b)
	b.wg.Add(1)
	go func() { defer b.wg.Done(); _ = b.srv.Serve(ln) }()
	b.reg, err = registration.New(e.reg, registration.Config{
		Kind: events.KindCollector, ID: id, Region: testRegion, Address: ln.Addr().String(),
		Sampler: fixedReadings{}, Interval: time.Second,
	}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := b.reg.Register(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(b.close)
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
func (b *backend) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
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
