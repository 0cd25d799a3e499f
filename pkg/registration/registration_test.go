package registration_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ttl = time.Second

// registry provisions the contract on srv with a registry TTL of ttl and returns the
// registry bucket on a connection that reconnects quickly.
func registry(t *testing.T, srv *natstest.Server) jetstream.KeyValue {
	t.Helper()
	nc := srv.Connect(t, nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l := natsconn.DefaultLayout()
	l.RegistryTTL, l.LeaseTTL = ttl, ttl
	b, err := natsconn.Provision(context.Background(), js, l)
	if err != nil {
		t.Fatal(err)
	}
	return b.Registry
}

// fakeSampler returns settable readings.
type fakeSampler struct {
	mu sync.Mutex
	r  sysstat.Reading
}

func (f *fakeSampler) Sample() (sysstat.Reading, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.r
	r.At = time.Now()
	return r, nil
}

// set sets the host's CPU and memory readings (information only).
func (f *fakeSampler) set(cpu, mem float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.r.HostCPU, f.r.HostMemUsed = cpu, mem
}

// setProcess sets the process's CPU share of its allowed CPUs and its memory: rss bytes
// against a limit of 1000 bytes.
func (f *fakeSampler) setProcess(share float64, rss uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.r.ProcessCPUShare, f.r.ProcessRSSBytes, f.r.MemLimitBytes = share, rss, 1000
}

func collector(id string) registration.Config {
	return registration.Config{Kind: events.KindCollector, ID: id, Region: "eu-west-1", Address: "10.0.0.1:4317", CapacityQPS: 5000, Version: "1.2.3", Metadata: map[string]string{"zone": "a"}}
}

func get(t *testing.T, kv jetstream.KeyValue, key string) (events.Registration, uint64, bool) {
	t.Helper()
	e, err := kv.Get(context.Background(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return events.Registration{}, 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	r, err := events.DecodeRegistration(e.Value())
	if err != nil {
		t.Fatalf("registry value of %s: %v", key, err)
	}
	return r, e.Revision(), true
}

func TestRegisterHeartbeatDeregister(t *testing.T) {
	t.Parallel()
	kv := registry(t, natstest.Run(t))
	ctx := context.Background()
	c, err := registration.New(kv, collector("c1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Key() != "collector.eu-west-1.c1" {
		t.Fatalf("key %q", c.Key())
	}
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx); !errors.Is(err, registration.ErrStarted) {
		t.Fatalf("second Register: %v, want ErrStarted", err)
	}
	r, rev, ok := get(t, kv, c.Key())
	if !ok {
		t.Fatal("not registered")
	}
	if r.ID != "c1" || r.InstanceKind != events.KindCollector || r.Region != "eu-west-1" || r.Address != "10.0.0.1:4317" ||
		r.CapacityQPS != 5000 || r.Version != "1.2.3" || r.Metadata["zone"] != "a" || r.Generation != 1 || r.RegisteredAt.IsZero() {
		t.Fatalf("registration %+v", r)
	}
	if r.Health.Status == "" || len(r.Health.Checks) < 2 {
		t.Errorf("health %+v: want a status and the cpu and memory checks (real /proc readings)", r.Health)
	}
	// Heartbeats keep it alive past several TTLs, with the same registration.
	deadline := time.Now().Add(3 * ttl)
	for time.Now().Before(deadline) {
		cur, _, ok := get(t, kv, c.Key())
		if !ok {
			t.Fatal("registration expired although the client heart-beats")
		}
		if !cur.RegisteredAt.Equal(r.RegisteredAt) {
			t.Fatal("registered anew although nothing expired")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, rev2, _ := get(t, kv, c.Key()); rev2 <= rev {
		t.Fatal("no heartbeat written")
	}
	if err := c.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := get(t, kv, c.Key()); ok {
		t.Fatal("still registered after Deregister")
	}
	if err := c.Deregister(ctx); err != nil {
		t.Fatalf("second Deregister: %v", err)
	}
	if err := c.Start(); !errors.Is(err, registration.ErrClosed) {
		t.Fatalf("Start after Deregister: %v, want ErrClosed", err)
	}
}

func TestReRegistersAfterExpiry(t *testing.T) {
	t.Parallel()
	kv := registry(t, natstest.Run(t))
	cfg := collector("late")
	cfg.Interval = 2 * ttl // heart-beats too slowly: the key expires between beats
	c, err := registration.New(kv, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Deregister(context.Background())
	first, _, _ := get(t, kv, c.Key())
	natstest.Eventually(t, 2*ttl, func() bool { _, _, ok := get(t, kv, c.Key()); return !ok }, "key did not expire")
	var again events.Registration
	natstest.Eventually(t, 3*ttl, func() bool {
		r, _, ok := get(t, kv, c.Key())
		again = r
		return ok
	}, "not registered again after expiry")
	if !again.RegisteredAt.After(first.RegisteredAt) || again.Generation != 1 {
		t.Fatalf("re-registration registered_at %v (first %v) generation %d: want a fresh registration", again.RegisteredAt, first.RegisteredAt, again.Generation)
	}
}

func TestHealthChecksAndGeneration(t *testing.T) {
	t.Parallel()
	kv := registry(t, natstest.Run(t))
	ctx := context.Background()
	fs := &fakeSampler{}
	fs.set(0.10, 0.20)
	var diskOK atomic.Bool
	diskOK.Store(true)
	cfg := collector("h1")
	cfg.Sampler = fs
	cfg.Interval = 50 * time.Millisecond
	cfg.Checks = []registration.Check{
		func(context.Context) events.CheckResult {
			if diskOK.Load() {
				return events.CheckResult{Name: "disk", Status: events.HealthHealthy}
			}
			return events.CheckResult{Name: "disk", Status: events.HealthUnhealthy, Message: "disk full"}
		},
	}
	c, err := registration.New(kv, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Deregister(ctx)

	waitFor := func(what string, cond func(events.Registration) bool) events.Registration {
		t.Helper()
		var got events.Registration
		natstest.Eventually(t, 3*time.Second, func() bool {
			r, _, ok := get(t, kv, c.Key())
			got = r
			return ok && cond(r)
		}, "%s", what)
		return got
	}
	r := waitFor("healthy", func(r events.Registration) bool { return r.Health.Status == events.HealthHealthy })
	if r.Health.CPU != 0.10 || r.Health.Memory != 0.20 {
		t.Errorf("readings cpu %v memory %v, want 0.10 0.20", r.Health.CPU, r.Health.Memory)
	}
	gen := r.Generation

	// Readings that move without crossing a threshold do not count as a change.
	fs.set(0.30, 0.25)
	r = waitFor("new readings", func(r events.Registration) bool { return r.Health.CPU == 0.30 })
	if r.Generation != gen {
		t.Errorf("generation %d after a reading change, want %d", r.Generation, gen)
	}
	// A saturated host changes nothing while the process is fine.
	fs.set(1, 0.99)
	r = waitFor("host readings", func(r events.Registration) bool { return r.Health.CPU == 1 })
	if r.Health.Status != events.HealthHealthy || r.Generation != gen {
		t.Errorf("status %s generation %d on a saturated host, want healthy, %d", r.Health.Status, r.Generation, gen)
	}
	// The process's CPU above the degraded threshold degrades the instance.
	fs.setProcess(0.95, 100)
	r = waitFor("degraded", func(r events.Registration) bool { return r.Health.Status == events.HealthDegraded })
	// The cpu check's own status changed at the first busy reading (generation + 1),
	// the reported status WorseAfter readings later (+ 1 again).
	if r.Generation != gen+2 {
		t.Errorf("generation %d after degrading, want %d", r.Generation, gen+2)
	}
	// A failing custom check makes it unhealthy.
	diskOK.Store(false)
	r = waitFor("unhealthy", func(r events.Registration) bool { return r.Health.Status == events.HealthUnhealthy })
	var disk events.CheckResult
	for _, ch := range r.Health.Checks {
		if ch.Name == "disk" {
			disk = ch
		}
	}
	if disk.Status != events.HealthUnhealthy || disk.Message != "disk full" {
		t.Errorf("disk check %+v", disk)
	}
	// Update changes the description at once.
	c.Update(func(cfg *registration.Config) { cfg.CapacityQPS = 9000; cfg.Region = "ignored" })
	r = waitFor("capacity 9000", func(r events.Registration) bool { return r.CapacityQPS == 9000 })
	if r.Region != "eu-west-1" {
		t.Errorf("Update changed the region to %q", r.Region)
	}
}

func TestCustomCheckFailuresAreContained(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		check registration.Check
		want  events.HealthStatus
	}{
		{name: "panics", check: func(context.Context) events.CheckResult { panic("boom") }, want: events.HealthUnhealthy},
		{name: "overruns", check: func(ctx context.Context) events.CheckResult {
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond)
			return events.CheckResult{Name: "slow", Status: events.HealthHealthy}
		}, want: events.HealthUnhealthy},
		{name: "invalid status", check: func(context.Context) events.CheckResult { return events.CheckResult{Name: "x", Status: "meh"} }, want: events.HealthUnhealthy},
		{name: "degraded", check: func(context.Context) events.CheckResult {
			return events.CheckResult{Name: "queue", Status: events.HealthDegraded}
		}, want: events.HealthDegraded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := collector("x")
			cfg.Sampler = &fakeSampler{}
			cfg.CheckTimeout = 50 * time.Millisecond
			cfg.Checks = []registration.Check{tc.check}
			cfg.WorseAfter = 1 // judge the one reading
			c, err := registration.New(nil, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			h := c.Health(context.Background())
			if h.Status != tc.want {
				t.Fatalf("status %q, want %q (%+v)", h.Status, tc.want, h.Checks)
			}
			if err := h.Validate(); err != nil {
				t.Fatalf("health does not validate: %v", err)
			}
		})
	}
}

func TestStartWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	kv := registry(t, srv)
	srv.Stop()
	c, err := registration.New(kv, collector("patient"), nil)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(started); d > 100*time.Millisecond {
		t.Fatalf("Start blocked for %v while NATS was down", d)
	}
	srv.Restart(t)
	natstest.Eventually(t, 10*time.Second, func() bool { _, ok := c.Current(); return ok }, "not registered after NATS came back")
	if _, _, ok := get(t, kv, c.Key()); !ok {
		t.Fatal("key missing")
	}
	if err := c.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  registration.Config
		ok   bool
	}{
		{name: "collector", cfg: collector("c1"), ok: true},
		{name: "service", cfg: registration.Config{Kind: events.KindService, Name: "config", ID: "i1"}, ok: true},
		{name: "collector without region", cfg: registration.Config{Kind: events.KindCollector, ID: "c1"}},
		{name: "service without name", cfg: registration.Config{Kind: events.KindService, ID: "i1"}},
		{name: "bad kind", cfg: registration.Config{Kind: "router", ID: "i1", Name: "x"}},
		{name: "id with a dot", cfg: registration.Config{Kind: events.KindCollector, Region: "r", ID: "a.b"}},
		{name: "negative capacity", cfg: func() registration.Config { c := collector("c1"); c.CapacityQPS = -1; return c }()},
		{name: "threshold above 1", cfg: func() registration.Config { c := collector("c1"); c.CPUDegraded = 1.5; return c }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, registration.ErrConfig) {
				t.Fatalf("%v does not wrap ErrConfig", err)
			}
		})
	}
}

func TestSelfModule(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	s := platform.DefaultSettings("test")
	s.Instance = "self1"
	s.Region = "eu-west-1"
	s.AdminAddr = "127.0.0.1:0"
	s.NATS.URL = srv.URL()
	s.RegistryTTL = ttl
	app := fxtest.New(t,
		platform.Module(s),
		fx.Decorate(func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }),
		registration.SelfModule("registry"),
		registration.SelfModule("config"), // several in one app, as in otelfleet dev
		fx.NopLogger,
	)
	app.RequireStart()
	_, js := srv.JetStream(t)
	var kv jetstream.KeyValue
	natstest.Eventually(t, 10*time.Second, func() bool { // provisioned in the background
		var err error
		kv, err = js.KeyValue(context.Background(), events.Default.RegistryBucket())
		return err == nil
	}, "registry bucket not provisioned")
	for _, key := range []string{"service.registry.self1", "service.config.self1"} {
		var r events.Registration
		natstest.Eventually(t, 10*time.Second, func() bool {
			var ok bool
			r, _, ok = get(t, kv, key)
			return ok
		}, "%s not registered", key)
		if r.InstanceKind != events.KindService || r.Region != "eu-west-1" || r.Metadata["process"] != "test" || r.Address == "" {
			t.Errorf("%s: %+v", key, r)
		}
	}
	app.RequireStop()
	for _, key := range []string{"service.registry.self1", "service.config.self1"} {
		if _, _, ok := get(t, kv, key); ok {
			t.Errorf("%s still registered after stop", key)
		}
	}
}

// windowSampler returns a reading over a too-short window first, then a real one.
type windowSampler struct {
	mu    sync.Mutex
	calls int
}

func (w *windowSampler) Sample() (sysstat.Reading, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.calls <= 2 { // New primes, then the first heartbeat samples a few ms later
		return sysstat.Reading{CPUWindow: 5 * time.Millisecond}, nil
	}
	return sysstat.Reading{CPUWindow: 250 * time.Millisecond, HostCPU: 0.5}, nil
}

func TestFirstHeartbeatMeasuresCPUOverAUsefulWindow(t *testing.T) {
	t.Parallel()
	cfg := collector("w")
	cfg.Sampler = &windowSampler{}
	c, err := registration.New(nil, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Health(context.Background()); h.CPU != 0.5 {
		t.Fatalf("cpu %v, want the reading taken over a useful window (0.5)", h.CPU)
	}
}

// TestHealthJudgesTheProcessWithHysteresis: a process whose host is saturated stays
// healthy while its own readings are fine; a single bad reading of its own changes
// nothing; WorseAfter consecutive ones make it unhealthy, and BetterAfter good ones
// bring it back.
func TestHealthJudgesTheProcessWithHysteresis(t *testing.T) {
	t.Parallel()
	fs := &fakeSampler{}
	fs.set(1, 1) // the host: every CPU busy, no memory left
	fs.setProcess(0.2, 100)
	cfg := collector("busy-host")
	cfg.Sampler = fs
	cfg.Hysteresis = registration.Hysteresis{WorseAfter: 3, BetterAfter: 2}
	c, err := registration.New(nil, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	beat := func() events.HealthStatus { t.Helper(); return c.Beat(context.Background()) }
	for i := range 5 {
		if s := beat(); s != events.HealthHealthy {
			t.Fatalf("reading %d on a saturated host: %s, want healthy", i, s)
		}
	}
	// The process itself: one busy reading between good ones changes nothing.
	fs.setProcess(0.99, 100)
	if s := beat(); s != events.HealthHealthy {
		t.Fatalf("one unhealthy reading: %s", s)
	}
	fs.setProcess(0.2, 100)
	beat()
	fs.setProcess(0.99, 100)
	for i, want := range []events.HealthStatus{events.HealthHealthy, events.HealthHealthy, events.HealthUnhealthy} {
		if s := beat(); s != want {
			t.Fatalf("consecutive unhealthy reading %d: %s, want %s", i+1, s, want)
		}
	}
	// Memory against its limit counts too, and recovery needs BetterAfter good readings.
	fs.setProcess(0.2, 990)
	if s := beat(); s != events.HealthUnhealthy {
		t.Fatalf("memory at 99%% of its limit: %s", s)
	}
	fs.setProcess(0.2, 100)
	for i, want := range []events.HealthStatus{events.HealthUnhealthy, events.HealthHealthy} {
		if s := beat(); s != want {
			t.Fatalf("good reading %d: %s, want %s", i+1, s, want)
		}
	}
	h := c.Health(context.Background())
	if h.CPU != 1 || h.Memory != 1 || h.ProcessCPUShare != 0.2 || h.ProcessMemory != 0.1 {
		t.Fatalf("readings %+v: want the host's as information and the process's judged", h)
	}
}
