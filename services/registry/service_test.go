package registrysvc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
	registrysvc "github.com/otelfleet/otelfleet/services/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ttl = time.Second

func testLog() *slog.Logger {
	if os.Getenv("TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// provision creates the contract on srv with the registry TTL set to ttl.
func provision(t testing.TB, srv *natstest.Server) *natsconn.Buckets {
	t.Helper()
	_, js := srv.JetStream(t)
	l := natsconn.DefaultLayout()
	l.RegistryTTL, l.LeaseTTL = ttl, ttl
	b, err := natsconn.Provision(context.Background(), js, l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// connect returns a connection that reconnects quickly, its JetStream context and the
// registry bucket.
func connect(t testing.TB, srv *natstest.Server) (*nats.Conn, jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	nc := srv.Connect(t, nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), events.Default.RegistryBucket())
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, kv
}

type replica struct {
	svc *registrysvc.Service
	reg *prometheus.Registry
	nc  *nats.Conn
}

// startReplica runs one registry replica on its own connection until the test ends and
// waits for its first load.
func startReplica(t testing.TB, srv *natstest.Server, id string) *replica {
	t.Helper()
	nc, js, kv := connect(t, srv)
	reg := prometheus.NewRegistry()
	svc, err := registrysvc.New(registrysvc.DefaultConfig(), registrysvc.Deps{NC: nc, Publisher: js, NS: events.Default, Instance: id, Log: testLog().With("replica", id), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = svc.Run(ctx, kv)
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-svc.Loaded():
	case <-time.After(10 * time.Second):
		t.Fatalf("replica %s not loaded", id)
	}
	return &replica{svc: svc, reg: reg, nc: nc}
}

// fakeSampler gives fixed readings so that health changes only when the test says so.
type fakeSampler struct {
	mu  sync.Mutex
	cpu float64
}

func (f *fakeSampler) Sample() (sysstat.Reading, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sysstat.Reading{ProcessCPUShare: f.cpu, HostCPU: f.cpu, HostMemUsed: 0.3, At: time.Now()}, nil
}

func (f *fakeSampler) set(cpu float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cpu = cpu
}

// agent registers a collector on its own connection; closing that connection is a
// kill -9.
func agent(t *testing.T, srv *natstest.Server, region, id string, fs *fakeSampler) (*registration.Client, *nats.Conn) {
	t.Helper()
	nc, _, kv := connect(t, srv)
	// Each reading is reported as it comes (no hysteresis): these tests are about the
	// registry's transitions, pkg/registration's own tests about the hysteresis.
	c, err := registration.New(kv, registration.Config{Kind: events.KindCollector, Region: region, ID: id, Address: id + ":4317", CapacityQPS: 1000, Sampler: fs,
		Hysteresis: registration.Hysteresis{WorseAfter: 1, BetterAfter: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, nc
}

// received is one event read from the OTLP_EVENTS stream, with when the test saw it.
type received struct {
	ev   events.RegistryEvent
	ceID string
	at   time.Time
}

// collector reads every registry event stored in the OTLP_EVENTS stream.
type collector struct {
	mu  sync.Mutex
	got []received
}

func collect(t testing.TB, srv *natstest.Server) *collector {
	t.Helper()
	_, js := srv.JetStream(t)
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, events.Default.EventsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.Default.Root() + ".events.registry.>"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var ev events.RegistryEvent
		if err := events.Decode(m.Data(), &ev); err != nil {
			t.Errorf("undecodable registry event on %s: %v", m.Subject(), err)
			return
		}
		if m.Subject() != events.Default.EventSubject(ev.Event) {
			t.Errorf("%s event on subject %s", ev.Event, m.Subject())
		}
		c.mu.Lock()
		c.got = append(c.got, received{ev: ev, ceID: m.Headers().Get(events.HeaderID), at: time.Now()})
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return c
}

// of returns the events of type typ for key.
func (c *collector) of(typ events.EventType, key string) []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []received
	for _, r := range c.got {
		if r.ev.Event == typ && r.ev.Key == key {
			out = append(out, r)
		}
	}
	return out
}

// wait waits for the first event of type typ for key.
func (c *collector) wait(t *testing.T, typ events.EventType, key string, within time.Duration) received {
	t.Helper()
	var got received
	natstest.Eventually(t, within, func() bool {
		evs := c.of(typ, key)
		if len(evs) > 0 {
			got = evs[0]
			return true
		}
		return false
	}, "no %s event for %s", typ, key)
	return got
}

// streamCount counts the messages stored for typ in the OTLP_EVENTS stream.
func streamCount(t *testing.T, js jetstream.JetStream, typ events.EventType) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), events.Default.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(events.Default.EventSubject(typ)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[events.Default.EventSubject(typ)]
}

func TestTwoReplicasPublishEachTransitionOnce(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	provision(t, srv)
	_, js := srv.JetStream(t)
	evs := collect(t, srv)
	r1, r2 := startReplica(t, srv, "r1"), startReplica(t, srv, "r2")

	// registered
	fsA, fsB := &fakeSampler{cpu: 0.1}, &fakeSampler{cpu: 0.1}
	a, _ := agent(t, srv, "eu-west-1", "a", fsA)
	b, ncB := agent(t, srv, "eu-west-1", "b", fsB)
	reg := evs.wait(t, events.EventRegistryRegistered, a.Key(), 2*time.Second)
	if reg.ev.ID != "a" || reg.ev.InstanceKind != events.KindCollector || reg.ev.Region != "eu-west-1" || reg.ev.Registration == nil || reg.ev.Registration.Address != "a:4317" {
		t.Errorf("registered event %+v", reg.ev)
	}
	if reg.ceID != reg.ev.EventID() {
		t.Errorf("ce-id %q, want the transition id %q", reg.ceID, reg.ev.EventID())
	}
	evs.wait(t, events.EventRegistryRegistered, b.Key(), 2*time.Second)

	// updated: health crosses a threshold (plain heartbeats publish nothing)
	fsA.set(0.95)
	upd := evs.wait(t, events.EventRegistryUpdated, a.Key(), 2*ttl)
	if upd.ev.Registration.Health.Status != events.HealthDegraded || !strings.Contains(strings.Join(upd.ev.Changed, ","), "health.status") {
		t.Errorf("updated event %+v changed %v", upd.ev.Registration.Health, upd.ev.Changed)
	}

	// deregistered within 1s
	dereg := time.Now()
	if err := a.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := evs.wait(t, events.EventRegistryDeregistered, a.Key(), time.Second)
	t.Logf("deregistered event %v after Deregister", d.at.Sub(dereg).Round(time.Millisecond))

	// expired within TTL + 1s of the last heartbeat
	ncB.Close() // kill -9: no deregistration
	last, _ := b.Current()
	exp := evs.wait(t, events.EventRegistryExpired, b.Key(), ttl+2*time.Second)
	if delay := exp.at.Sub(last.UpdatedAt); delay > ttl+time.Second {
		t.Errorf("expired event %v after the last heartbeat, want <= TTL + 1s", delay)
	} else {
		t.Logf("expired event %v after the last heartbeat (TTL %v)", delay.Round(time.Millisecond), ttl)
	}
	_ = b.Deregister(context.Background()) // stops its loop; the connection is gone

	// A delete marker ageing out (a TTL after the deregistration) leaves an expiry
	// marker, which must not count as an expiry of a.
	stream, err := js.Stream(context.Background(), "KV_"+events.Default.RegistryBucket())
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 3*ttl, func() bool {
		m, err := stream.GetLastMsgForSubject(context.Background(), "$KV."+events.Default.RegistryBucket()+"."+a.Key())
		return err == nil && m.Header.Get(jetstream.MarkerReasonHeader) == "MaxAge"
	}, "a's delete marker did not age out")
	// Replicas handle entries in order: once both have handled a later registration,
	// they have handled that marker.
	sentinel, _ := agent(t, srv, "eu-west-1", "sentinel", &fakeSampler{})
	defer sentinel.Deregister(context.Background())
	natstest.Eventually(t, 2*time.Second, func() bool {
		var n float64
		for _, r := range []*replica{r1, r2} {
			for _, res := range []string{"published", "duplicate"} {
				n += counter(t, r.reg, "otelfleet_registry_events_total", map[string]string{"event": "registry.registered", "result": res})
			}
		}
		return n == 6 // a, b and the sentinel, by two replicas each
	}, "replicas did not handle the sentinel registration")

	// Each transition is stored exactly once although both replicas published it.
	want := map[events.EventType]uint64{
		events.EventRegistryRegistered:   3,
		events.EventRegistryUpdated:      1,
		events.EventRegistryDeregistered: 1,
		events.EventRegistryExpired:      1,
	}
	for typ, n := range want {
		if got := streamCount(t, js, typ); got != n {
			t.Errorf("%d %s events in the stream, want %d", got, typ, n)
		}
	}
	// Both replicas tried: one stored each event, the other got a duplicate ack.
	for typ, n := range want {
		var published, dup float64
		for _, r := range []*replica{r1, r2} {
			published += counter(t, r.reg, "otelfleet_registry_events_total", map[string]string{"event": string(typ), "result": "published"})
			dup += counter(t, r.reg, "otelfleet_registry_events_total", map[string]string{"event": string(typ), "result": "duplicate"})
		}
		if published != float64(n) || dup != float64(n) {
			t.Errorf("%s: %v published and %v duplicates across replicas, want %d and %d", typ, published, dup, n, n)
		}
	}
	for _, r := range []*replica{r1, r2} {
		if got := counter(t, r.reg, "otelfleet_registry_expirations_total", map[string]string{"kind": "collector"}); got != 1 {
			t.Errorf("expirations %v, want 1", got)
		}
	}
}

// counter reads one series of a counter or gauge vector; 0 when absent.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metric
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestCatchUpAtStartIsDeduplicated(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	provision(t, srv)
	_, js := srv.JetStream(t)
	// Registered while no registry runs.
	c, _ := agent(t, srv, "us-east-1", "early", &fakeSampler{})
	defer c.Deregister(context.Background())
	startReplica(t, srv, "r1")
	natstest.Eventually(t, 2*time.Second, func() bool { return streamCount(t, js, events.EventRegistryRegistered) == 1 }, "catch-up event not published")
	r2 := startReplica(t, srv, "r2") // a second replica starting later publishes a duplicate
	natstest.Eventually(t, 2*time.Second, func() bool {
		return counter(t, r2.reg, "otelfleet_registry_events_total", map[string]string{"event": "registry.registered", "result": "duplicate"}) == 1
	}, "second replica did not try the catch-up")
	if n := streamCount(t, js, events.EventRegistryRegistered); n != 1 {
		t.Fatalf("%d registered events stored, want 1", n)
	}
}

func TestListGetAndMetrics(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	provision(t, srv)
	nc := srv.Connect(t)
	s := platform.DefaultSettings("registry")
	s.Instance = "r1"
	r := startReplica(t, srv, "r1")
	ms, err := platform.AddMicro(nc, events.Default, s, events.ServiceRegistry, "test", r.svc.Endpoints()...)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()

	hot := &fakeSampler{cpu: 0.99}
	for _, a := range []struct {
		region, id string
		fs         *fakeSampler
	}{{"eu", "c1", &fakeSampler{}}, {"eu", "c2", hot}, {"us", "c3", &fakeSampler{}}} {
		c, _ := agent(t, srv, a.region, a.id, a.fs)
		defer c.Deregister(context.Background())
	}
	_, _, kv := connect(t, srv)
	svcReg, err := registration.New(kv, registration.Config{Kind: events.KindService, Name: "config", ID: "i1", Region: "eu", Sampler: &fakeSampler{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := svcReg.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer svcReg.Deregister(context.Background())
	natstest.Eventually(t, 2*time.Second, func() bool { return len(r.svc.List(registrysvc.Filter{})) == 4 }, "not all registrations listed")

	list := func(f registrysvc.Filter) ([]events.Registration, error) {
		var out []events.Registration
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := microapi.Request(ctx, nc, events.Default.Endpoint(events.ServiceRegistry, "list"), f, &out)
		return out, err
	}
	tests := []struct {
		name   string
		filter registrysvc.Filter
		want   []string // ids in order
	}{
		{name: "all", want: []string{"c1", "c2", "c3", "i1"}},
		{name: "collectors", filter: registrysvc.Filter{Kind: "collector"}, want: []string{"c1", "c2", "c3"}},
		{name: "region", filter: registrysvc.Filter{Region: "eu"}, want: []string{"c1", "c2", "i1"}},
		{name: "unhealthy", filter: registrysvc.Filter{Health: "unhealthy"}, want: []string{"c2"}},
		{name: "services named config", filter: registrysvc.Filter{Kind: "service", Name: "config"}, want: []string{"i1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := list(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, g := range got {
				ids = append(ids, g.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("ids %v, want %v", ids, tc.want)
			}
		})
	}
	if _, err := list(registrysvc.Filter{Kind: "router"}); microapi.CodeOf(err) != microapi.CodeBadRequest {
		t.Errorf("bad kind: %v, want 400", err)
	}

	get := func(req registrysvc.GetRequest) (events.Registration, error) {
		var out events.Registration
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := microapi.Request(ctx, nc, events.Default.Endpoint(events.ServiceRegistry, "get"), req, &out)
		return out, err
	}
	if g, err := get(registrysvc.GetRequest{Key: "collector.us.c3"}); err != nil || g.ID != "c3" {
		t.Errorf("get by key: %+v, %v", g, err)
	}
	if g, err := get(registrysvc.GetRequest{Kind: "service", Name: "config", ID: "i1"}); err != nil || g.Name != "config" {
		t.Errorf("get by name and id: %+v, %v", g, err)
	}
	if _, err := get(registrysvc.GetRequest{Key: "collector.us.nope"}); microapi.CodeOf(err) != microapi.CodeNotFound {
		t.Errorf("get missing: %v, want 404", err)
	}
	if _, err := get(registrysvc.GetRequest{ID: "c3"}); microapi.CodeOf(err) != microapi.CodeBadRequest {
		t.Errorf("get without kind: %v, want 400", err)
	}

	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"kind": "collector", "region": "eu", "health": "healthy"}, 1},
		{map[string]string{"kind": "collector", "region": "eu", "health": "unhealthy"}, 1},
		{map[string]string{"kind": "collector", "region": "us", "health": "healthy"}, 1},
		{map[string]string{"kind": "service", "region": "eu", "health": "healthy"}, 1},
	} {
		if got := counter(t, r.reg, "otelfleet_registry_instances", tc.labels); got != tc.want {
			t.Errorf("otelfleet_registry_instances%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if got := counter(t, r.reg, "otelfleet_registry_keys", nil); got != 4 {
		t.Errorf("otelfleet_registry_keys = %v, want 4", got)
	}
}

func TestEndpointsUnavailableBeforeLoad(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	svc, err := registrysvc.New(registrysvc.DefaultConfig(), registrysvc.Deps{NC: nc, NS: events.Default, Instance: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := platform.AddMicro(nc, events.Default, platform.DefaultSettings("registry"), events.ServiceRegistry, "test", svc.Endpoints()...)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = microapi.Request(ctx, nc, events.Default.Endpoint(events.ServiceRegistry, "list"), nil, nil)
	if microapi.CodeOf(err) != microapi.CodeUnavailable {
		t.Fatalf("list before load: %v, want 503", err)
	}
}

func TestModuleReadyAfterLoad(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	s := platform.DefaultSettings("registry")
	s.Instance = "fx1"
	s.AdminAddr = "127.0.0.1:0"
	s.NATS.URL = srv.URL()
	var ready *platform.Readiness
	var svc *registrysvc.Service
	app := fxtest.New(t,
		platform.Module(s),
		fx.Decorate(func() *slog.Logger { return testLog() }),
		registrysvc.Module(registrysvc.DefaultConfig()),
		registration.SelfModule("registry"),
		fx.Populate(&ready, &svc),
		fx.NopLogger,
	)
	app.RequireStart()
	natstest.Eventually(t, 10*time.Second, func() bool { _, ok := ready.Check(); return ok }, "not ready")
	// The service lists itself (registered by SelfModule).
	natstest.Eventually(t, 5*time.Second, func() bool {
		_, ok := svc.Get("service.registry.fx1")
		return ok
	}, "the registry does not list itself")
	nc := srv.Connect(t)
	var out []events.Registration
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := microapi.Request(ctx, nc, events.Default.Endpoint(events.ServiceRegistry, "list"), registrysvc.Filter{Kind: "service"}, &out); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(out)
	if len(out) != 1 || out[0].ID != "fx1" {
		t.Fatalf("list = %s", data)
	}
	app.RequireStop()
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  registrysvc.Config
		ok   bool
	}{
		{name: "defaults", cfg: registrysvc.DefaultConfig(), ok: true},
		{name: "catch-up off", cfg: registrysvc.Config{PublishTimeout: time.Second}, ok: true},
		{name: "negative catch-up", cfg: registrysvc.Config{CatchUp: -time.Second, PublishTimeout: time.Second}},
		{name: "no publish timeout", cfg: registrysvc.Config{CatchUp: time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, registrysvc.ErrConfig) {
				t.Fatalf("%v does not wrap ErrConfig", err)
			}
		})
	}
}
