package samplersvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

func TestMain(m *testing.M) {
	if os.Getenv(benchServerEnv) != "" {
		runBenchServer()
		return
	}
	goleak.VerifyTestMain(m)
}

const leaseTTL = time.Second

// fakeConfig is a ConfigSource whose snapshot the test sets.
type fakeConfig struct {
	mu   sync.Mutex
	snap configwatch.Snapshot
	fns  []func(configwatch.Snapshot)
}

func newFakeConfig(g fleetconfig.Global) *fakeConfig {
	return &fakeConfig{snap: configwatch.Snapshot{Global: g, Regions: map[string]fleetconfig.Region{}}}
}

func (f *fakeConfig) Current() configwatch.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fakeConfig) OnChange(fn func(configwatch.Snapshot)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fns = append(f.fns, fn)
}

func (f *fakeConfig) set(mutate func(s *configwatch.Snapshot)) {
	f.mu.Lock()
	mutate(&f.snap)
	f.snap.Global.Version++
	snap, fns := f.snap, append([]func(configwatch.Snapshot){}, f.fns...)
	f.mu.Unlock()
	for _, fn := range fns {
		fn(snap)
	}
}

// fixture is a NATS server with the contract provisioned (lease TTL 1s).
type fixture struct {
	srv *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	b   *natsconn.Buckets
	cfg *fakeConfig
	// tracer, if set, traces the replicas started from now on.
	tracer trace.Tracer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := natstest.Run(t)
	nc, js := srv.JetStream(t)
	l := natsconn.DefaultLayout()
	l.LeaseTTL = leaseTTL
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsconn.Provision(ctx, js, l)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, nc: nc, js: js, b: b, cfg: newFakeConfig(fleetconfig.Defaults().Global)}
}

// replica is one sampler replica with its own NATS connection, campaigning.
type replica struct {
	id   string
	nc   *nats.Conn
	svc  *Service
	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

func testConfig() Config {
	c := DefaultConfig()
	c.Interval = time.Second
	c.Addr = "127.0.0.1:0"
	return c
}

func (f *fixture) startReplica(t *testing.T, id string, cfg Config) *replica {
	t.Helper()
	nc, err := nats.Connect(f.srv.URL(), nats.Name(id), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := natsconn.OpenBuckets(ctx, js, events.Default)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(cfg, Deps{NC: nc, JS: js, Instance: id, Config: f.cfg, Log: testLog(t, id), Tracer: f.tracer})
	if err != nil {
		t.Fatal(err)
	}
	svc.Start(b)
	e, err := election.NewKV(nc, b.Leases, election.Config{Role: events.ServiceSampler, ID: id}, testLog(t, id))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	r := &replica{id: id, nc: nc, svc: svc, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = e.Run(runCtx, svc.Lead)
	}()
	t.Cleanup(r.shutdown)
	return r
}

// kill cuts the replica off abruptly: its NATS connection closes, no resignation.
func (r *replica) kill() {
	r.nc.Close()
	<-r.done
	r.shutdown()
}

// shutdown stops the replica cleanly (resigning if it leads).
func (r *replica) shutdown() {
	r.once.Do(func() {
		r.stop()
		<-r.done
		r.svc.Stop()
		r.nc.Close()
	})
}

func testLog(t *testing.T, id string) *slogLogger {
	if os.Getenv("TEST_LOG") == "" {
		return nil
	}
	return newTestLogger(id)
}

// register stores the collector's registration in the registry bucket: only registered
// collectors' reports count.
func (f *fixture) register(t *testing.T, region, collector string) {
	t.Helper()
	at := time.Now()
	data, err := events.Encode(events.Registration{V: events.RegistrationVersion, ID: collector, InstanceKind: events.KindCollector,
		Region: region, Health: events.Health{Status: events.HealthHealthy}, RegisteredAt: at, UpdatedAt: at, Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.Registry.Put(context.Background(), events.KindCollector+"."+region+"."+collector, data); err != nil {
		t.Fatal(err)
	}
}

// publishLoad registers the collector and publishes one load report for it.
func (f *fixture) publishLoad(t *testing.T, region, collector string, capacity float64, services map[string]float64) {
	t.Helper()
	f.register(t, region, collector)
	f.publishUnregistered(t, region, collector, capacity, services)
}

// publishUnregistered publishes one load report of a collector, registered or not.
func (f *fixture) publishUnregistered(t *testing.T, region, collector string, capacity float64, services map[string]float64) {
	t.Helper()
	r := events.LoadReport{V: events.LoadReportVersion, Region: region, Collector: collector, At: time.Now(), IntervalMS: 1000, Capacity: capacity, Healthy: true}
	for name, q := range services {
		r.Services = append(r.Services, events.ServiceRate{Name: name, SpansPerSec: q})
		r.QPS += q
	}
	f.publishReport(t, r)
}

// publishReport publishes r on its load subject.
func (f *fixture) publishReport(t *testing.T, r events.LoadReport) {
	t.Helper()
	subject, err := events.Default.LoadSubject(r.Region, r.Collector)
	if err != nil {
		t.Fatal(err)
	}
	m, err := events.NewMsg(subject, "test", r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// decisionLog records every stored decision revision, in order, from a KV watch.
type decisionLog struct {
	mu   sync.Mutex
	all  []events.Decision
	revs []uint64
	bad  []error
	stop func()
}

func (f *fixture) watchDecisions(t *testing.T) *decisionLog {
	t.Helper()
	w, err := f.b.Sampling.Watch(context.Background(), events.DecisionKey, jetstream.IncludeHistory())
	if err != nil {
		t.Fatal(err)
	}
	l := &decisionLog{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			d, err := events.DecodeDecision(e.Value())
			l.mu.Lock()
			if err != nil {
				l.bad = append(l.bad, err)
			} else {
				l.all = append(l.all, d)
				l.revs = append(l.revs, e.Revision())
			}
			l.mu.Unlock()
		}
	}()
	l.stop = func() { _ = w.Stop(); <-done }
	t.Cleanup(l.stop)
	return l
}

func (l *decisionLog) snapshot() []events.Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]events.Decision(nil), l.all...)
}

func (l *decisionLog) last() (events.Decision, bool) {
	all := l.snapshot()
	if len(all) == 0 {
		return events.Decision{}, false
	}
	return all[len(all)-1], true
}

// check asserts that every stored decision is valid, tokens never decrease and
// versions strictly increase.
func (l *decisionLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.bad) > 0 {
		t.Fatalf("invalid stored decisions: %v", l.bad)
	}
	for i := 1; i < len(l.all); i++ {
		prev, cur := l.all[i-1], l.all[i]
		if cur.Token < prev.Token {
			t.Fatalf("revision %d: token %d (leader %s) after token %d (leader %s): a deposed leader wrote",
				l.revs[i], cur.Token, cur.Leader, prev.Token, prev.Leader)
		}
		if cur.Version <= prev.Version {
			t.Fatalf("revision %d: version %d after %d", l.revs[i], cur.Version, prev.Version)
		}
		if cur.Token == prev.Token && cur.Leader != prev.Leader {
			t.Fatalf("revision %d: two leaders (%s, %s) with token %d", l.revs[i], prev.Leader, cur.Leader, cur.Token)
		}
	}
}

func TestStoreWrite(t *testing.T) {
	f := newFixture(t)
	st := NewStore(f.b.Sampling)
	ctx := context.Background()
	dec := func(token uint64) *events.Decision {
		return &events.Decision{V: 1, Leader: fmt.Sprintf("l%d", token), Token: token, At: time.Now(), Services: map[string]events.ServiceDecision{}}
	}
	if _, _, err := st.Get(ctx); !errors.Is(err, ErrNoDecision) {
		t.Fatalf("Get on an empty bucket: %v", err)
	}
	tests := []struct {
		name        string
		token       uint64
		wantErr     error
		wantVersion uint64
	}{
		{name: "first decision is created", token: 5, wantVersion: 1},
		{name: "same term continues", token: 5, wantVersion: 2},
		{name: "newer term takes over", token: 8, wantVersion: 3},
		{name: "older term is refused", token: 5, wantErr: ErrStale},
		{name: "newer term again", token: 9, wantVersion: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dec(tt.token)
			_, err := st.Write(ctx, d)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Write(token %d) = %v, want %v", tt.token, err, tt.wantErr)
			}
			if err == nil && d.Version != tt.wantVersion {
				t.Fatalf("version %d, want %d", d.Version, tt.wantVersion)
			}
		})
	}
	t.Run("garbage is replaced", func(t *testing.T) {
		rev, err := f.b.Sampling.Put(ctx, events.DecisionKey, []byte("not json"))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Get(ctx); !errors.Is(err, events.ErrMalformed) {
			t.Fatalf("Get of garbage: %v", err)
		}
		d := dec(10)
		if _, err := st.Write(ctx, d); err != nil {
			t.Fatal(err)
		}
		_ = rev
		if d.Version != 5 {
			t.Fatalf("version after garbage %d, want 5 (above the highest stored, 4)", d.Version)
		}
	})
}

// TestStoreWriteFencesUnreadableDecisions: a stored decision this build cannot decode
// (a newer schema version during a rolling upgrade, or one this build's validation
// refuses) still carries its fencing token; a writer of an older term must not replace
// it. Only a value whose token cannot be read at all is garbage to overwrite.
func TestStoreWriteFencesUnreadableDecisions(t *testing.T) {
	f := newFixture(t)
	st := NewStore(f.b.Sampling)
	ctx := context.Background()
	for _, tt := range []struct{ name, value string }{
		{"newer schema version", `{"v":2,"version":7,"leader":"new-build","token":100,"at":"2025-01-01T00:00:00Z","services":{"a":{"rate":{"p":0.5}}}}`},
		{"refused by validation", `{"v":1,"version":7,"leader":"other-build","token":100,"at":"2025-01-01T00:00:00Z","global_rate":2,"default_rate":0.1}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := f.b.Sampling.Put(ctx, events.DecisionKey, []byte(tt.value)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := st.Get(ctx); !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("Get: %v, want ErrMalformed", err)
			}
			d := &events.Decision{V: 1, Leader: "old", Token: 5, At: time.Now(), Services: map[string]events.ServiceDecision{}}
			if _, err := st.Write(ctx, d); !errors.Is(err, ErrStale) {
				t.Fatalf("Write(token 5) over a stored token 100 = %v, want ErrStale", err)
			}
			e, err := f.b.Sampling.Get(ctx, events.DecisionKey)
			if err != nil || string(e.Value()) != tt.value {
				t.Fatalf("the newer term's value was replaced: %v %s", err, e.Value())
			}
			d = &events.Decision{V: 1, Leader: "newer", Token: 101, At: time.Now(), Services: map[string]events.ServiceDecision{}}
			if _, err := st.Write(ctx, d); err != nil {
				t.Fatalf("Write(token 101): %v", err)
			}
			if d.Version <= 7 {
				t.Fatalf("version %d after a stored version 7", d.Version)
			}
		})
	}
}

// TestStoreConcurrentTerms races writers of several terms on one key: whatever the
// interleaving, the stored tokens never decrease.
func TestStoreConcurrentTerms(t *testing.T) {
	f := newFixture(t)
	log := f.watchDecisions(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := NewStore(f.b.Sampling)
			for i := range 25 {
				token := uint64(1 + i/5*4 + w) // terms interleave and advance
				d := &events.Decision{V: 1, Leader: fmt.Sprintf("w%d-t%d", w, token), Token: token, At: time.Now()}
				_, err := st.Write(context.Background(), d)
				if err != nil && !errors.Is(err, ErrStale) && !errors.Is(err, ErrContended) {
					t.Errorf("writer %d: %v", w, err)
				}
			}
		}()
	}
	wg.Wait()
	natstest.Eventually(t, 5*time.Second, func() bool {
		d, ok := log.last()
		cur, _, _ := NewStore(f.b.Sampling).Get(context.Background())
		return ok && d.Version == cur.Version
	}, "the watch did not see the last write")
	log.check(t)
}

func TestLeaderDecides(t *testing.T) {
	f := newFixture(t)
	log := f.watchDecisions(t)
	sub, err := f.nc.SubscribeSync(events.Default.EventSubject(events.EventSamplingDecision))
	if err != nil {
		t.Fatal(err)
	}
	// Two collectors in two regions; the example config (adaptive toward 100000/s,
	// priority rules, degradation at 0.8).
	f.publishLoad(t, "us-east-1", "c1", 1_000_000, map[string]float64{"search": 300_000, "payment": 1_000, "debug": 50_000})
	f.publishLoad(t, "eu-west-1", "c2", 1_000_000, map[string]float64{"search": 300_000, "checkout": 1_000})
	f.cfg.set(func(s *configwatch.Snapshot) {
		s.Regions["eu-west-1"] = fleetconfig.Region{RegionalSamplingRate: 0.5}
	})
	r := f.startReplica(t, "s1", testConfig())
	natstest.Eventually(t, 10*time.Second, func() bool {
		d, ok := log.last()
		return ok && d.Inputs.Collectors == 2
	}, "no decision from both collectors")
	d, _ := log.last()
	if d.Leader != "s1" || d.Token == 0 || d.Strategy != "priority_based+adaptive" || d.IntervalMS != 1000 {
		t.Fatalf("decision header: leader %q token %d strategy %q interval %d", d.Leader, d.Token, d.Strategy, d.IntervalMS)
	}
	if d.Services["search"].QPS != 600_000 || d.Services["payment"].Rate != 1 || d.Services["checkout"].Rate != 1 {
		t.Fatalf("services: %+v", d.Services)
	}
	if d.Inputs.KeptQPS < 99_000 || d.Inputs.KeptQPS > 101_000 {
		t.Fatalf("kept %v spans/s, want the adaptive target 100000", d.Inputs.KeptQPS)
	}
	if d.Regions["eu-west-1"] != 0.5 || d.LowerBoundTPS == 0 {
		t.Fatalf("regions %v, lower bound %v", d.Regions, d.LowerBoundTPS)
	}
	if u := d.Inputs.Utilization; u < 0.32 || u > 0.33 {
		t.Fatalf("utilization %v, want 651000/2000000", u)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no sampling.decision event: %v", err)
	}
	var ev events.SamplingEvent
	if err := events.Decode(msg.Data, &ev); err != nil || ev.Token != d.Token || msg.Header.Get(events.HeaderType) != "io.otelfleet.sampling.decision.v1" {
		t.Fatalf("event %+v (%v), ce-type %q", ev, err, msg.Header.Get(events.HeaderType))
	}
	// Every replica serves the stored decision.
	natstest.Eventually(t, 5*time.Second, func() bool {
		cur := r.svc.API().Decision()
		return cur != nil && cur.Version >= d.Version
	}, "the replica does not serve the stored decision")
	srv := httptest.NewServer(r.svc.API())
	defer srv.Close()
	body := httpGet(t, srv.URL+"/sampling?service=payment")
	if !strings.Contains(body, `"samplingRate":1`) {
		t.Fatalf("payment: %s", body)
	}
	// The micro endpoint answers with the decision.
	ms, err := platform.AddMicro(r.nc, events.Default, platform.DefaultSettings("test"), events.ServiceSampler, "test", r.svc.Endpoints()...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ms.Stop() }()
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var got events.Decision
	if err := microapi.Request(context.Background(), f.nc, events.Default.Endpoint(events.ServiceSampler, "decision"), nil, &got); err != nil || got.Token != d.Token {
		t.Fatalf("micro decision: %v, token %d", err, got.Token)
	}
	log.check(t)
}

func microRequest(nc *nats.Conn, out *events.Decision) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return microapi.Request(ctx, nc, events.Default.Endpoint(events.ServiceSampler, "decision"), nil, out)
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = fmt.Fprint(&b, mustRead(resp))
	return b.String()
}

func mustRead(resp *http.Response) string {
	var v json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return string(v)
}

func TestConfigChangeAppliesAtOnce(t *testing.T) {
	f := newFixture(t)
	log := f.watchDecisions(t)
	f.publishLoad(t, "r1", "c1", 0, map[string]float64{"cart": 100, "payment": 10, "debug": 10})
	cfg := testConfig()
	cfg.Interval = time.Hour // only the config change can trigger the second decision
	r := f.startReplica(t, "s1", cfg)
	natstest.Eventually(t, 10*time.Second, func() bool { _, ok := log.last(); return ok }, "no first decision")
	f.cfg.set(func(s *configwatch.Snapshot) {
		s.Global.SamplingStrategies = []fleetconfig.Strategy{
			{Type: fleetconfig.StrategyFixed, Rate: new(0.3)},
			fleetconfig.Defaults().Global.SamplingStrategies[1], // the example's priority rules
		}
	})
	natstest.Eventually(t, 5*time.Second, func() bool {
		d := r.svc.API().Decision()
		return d != nil && d.Strategy == "fixed+priority_based"
	}, "the config change did not produce a decision")
	d := r.svc.API().Decision()
	for svc, want := range map[string]float64{"cart": 0.3, "payment": 1, "debug": 0.01, "never-seen": 0.3} {
		if got := d.RateFor(svc); got != want {
			t.Errorf("%s: %v, want %v", svc, got, want)
		}
	}
	log.check(t)
}

func TestDegradationEvents(t *testing.T) {
	f := newFixture(t)
	log := f.watchDecisions(t)
	deg, err := f.nc.SubscribeSync(events.Default.EventSubject(events.EventSamplingDegraded))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := f.nc.SubscribeSync(events.Default.EventSubject(events.EventSamplingRecovered))
	if err != nil {
		t.Fatal(err)
	}
	f.publishLoad(t, "r1", "c1", 1000, map[string]float64{"cart": 850, "payment": 50}) // 90% busy
	f.startReplica(t, "s1", testConfig())
	msg, err := deg.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no sampling.degraded event: %v", err)
	}
	var ev events.SamplingEvent
	if err := events.Decode(msg.Data, &ev); err != nil || !ev.Degraded || !strings.Contains(ev.Reason, ">= threshold 0.8") {
		t.Fatalf("degraded event %+v, %v", ev, err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool { d, ok := log.last(); return ok && d.Version >= ev.Version }, "the degraded decision is not stored")
	d, _ := log.last()
	if !d.Degraded || d.RateFor("cart") != 0.01 || d.RateFor("payment") != 1 {
		t.Fatalf("degraded decision: degraded %v cart %v payment %v", d.Degraded, d.RateFor("cart"), d.RateFor("payment"))
	}
	f.publishLoad(t, "r1", "c1", 1000, map[string]float64{"cart": 650, "payment": 50}) // 70%: hysteresis
	// Two decisions computed over the 70% load: neither may recover.
	var at70 uint64
	natstest.Eventually(t, 10*time.Second, func() bool {
		d, ok := log.last()
		if ok && at70 == 0 && d.Inputs.FleetQPS == 700 {
			at70 = d.Version
		}
		return at70 != 0 && ok && d.Version > at70
	}, "two decisions over the 70%% load")
	if m, err := rec.NextMsg(10 * time.Millisecond); err == nil {
		t.Fatalf("recovered at 70%% (recovery threshold 60%%): %s", m.Data)
	}
	f.publishLoad(t, "r1", "c1", 1000, map[string]float64{"cart": 450, "payment": 50}) // 50%
	if _, err := rec.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no sampling.recovered event: %v", err)
	}
	if _, err := deg.NextMsg(10 * time.Millisecond); err == nil {
		t.Fatal("a second degraded event")
	}
	log.check(t)
}

// TestFailover runs two and three replicas, kills the leader abruptly (its NATS
// connection closes, no resignation) and checks that decisions resume within the lease
// TTL plus one interval under a higher token, and that no deposed leader ever wrote.
func TestFailover(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) {
			f := newFixture(t)
			log := f.watchDecisions(t)
			f.publishLoad(t, "r1", "c1", 0, map[string]float64{"cart": 100})
			cfg := testConfig()
			replicas := map[string]*replica{}
			for i := range n {
				id := fmt.Sprintf("s%d", i+1)
				replicas[id] = f.startReplica(t, id, cfg)
			}
			natstest.Eventually(t, 10*time.Second, func() bool { _, ok := log.last(); return ok }, "no first decision")
			for kill := 1; kill < n; kill++ {
				prev, _ := log.last()
				leader := replicas[prev.Leader]
				killedAt := time.Now()
				leader.kill()
				delete(replicas, prev.Leader)
				limit := leaseTTL + cfg.Interval + 2*time.Second // slack for a loaded test machine
				natstest.Eventually(t, limit, func() bool {
					d, ok := log.last()
					return ok && d.Token > prev.Token
				}, "no decision under a newer term within %v of killing leader %s", limit, prev.Leader)
				d, _ := log.last()
				t.Logf("killed %s (token %d); %s (token %d) stored version %d %v later",
					prev.Leader, prev.Token, d.Leader, d.Token, d.Version, time.Since(killedAt).Round(time.Millisecond))
				if d.Leader == prev.Leader {
					t.Fatalf("the killed leader %s still writes", prev.Leader)
				}
				// Decisions keep coming from the new leader.
				natstest.Eventually(t, 3*cfg.Interval, func() bool {
					cur, _ := log.last()
					return cur.Version > d.Version && cur.Token == d.Token
				}, "the new leader does not keep deciding")
			}
			// Every surviving replica serves the latest decision.
			last, _ := log.last()
			for _, r := range replicas {
				natstest.Eventually(t, 3*time.Second, func() bool {
					d := r.svc.API().Decision()
					return d != nil && d.Version >= last.Version
				}, "replica %s does not serve the latest decision", r.id)
			}
			log.check(t)
		})
	}
}

// TestCleanShutdownHandsOver stops the leader cleanly: it resigns, and a follower takes
// over well before the lease would have expired.
func TestCleanShutdownHandsOver(t *testing.T) {
	f := newFixture(t)
	log := f.watchDecisions(t)
	cfg := testConfig()
	a := f.startReplica(t, "a", cfg)
	natstest.Eventually(t, 10*time.Second, func() bool { d, ok := log.last(); return ok && d.Leader == "a" }, "a never decided")
	b := f.startReplica(t, "b", cfg)
	prev, _ := log.last()
	a.shutdown()
	natstest.Eventually(t, 3*time.Second, func() bool { d, ok := log.last(); return ok && d.Leader == "b" && d.Token > prev.Token },
		"b did not take over after a resigned")
	_ = b
	log.check(t)
}

func TestFit(t *testing.T) {
	d := *bigDecision(2000)
	full, err := json.Marshal(&d)
	if err != nil {
		t.Fatal(err)
	}
	data, err := fit(&d, len(full)/2)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > len(full)/2 || d.Truncated == 0 || len(d.Services)+d.Truncated != 2000 {
		t.Fatalf("fit: %d bytes (limit %d), %d services kept, %d truncated", len(data), len(full)/2, len(d.Services), d.Truncated)
	}
	// The busiest services are kept.
	if _, ok := d.Services["service-00000"]; !ok {
		t.Fatal("the busiest service was dropped")
	}
}

// TestSubnormalCapacityStillDecides: a valid load report whose capacity is subnormal
// makes load/capacity overflow; the utilisation must stay a finite number (JSON has no
// +Inf), or the leader could not encode, and so not store, any decision while the
// report is live.
func TestSubnormalCapacityStillDecides(t *testing.T) {
	f := newFixture(t)
	log := f.watchDecisions(t)
	f.publishLoad(t, "r1", "c1", 5e-324, map[string]float64{"cart": 1e9})
	r := f.startReplica(t, "s1", testConfig())
	natstest.Eventually(t, 10*time.Second, func() bool {
		d, ok := log.last()
		return ok && d.Inputs.Collectors == 1
	}, "no decision stored from the collector's report")
	d, _ := log.last()
	if !(d.Inputs.Utilization >= 1) || !d.Degraded {
		t.Fatalf("utilization %v, degraded %v: want a full fleet, degraded", d.Inputs.Utilization, d.Degraded)
	}
	_ = r
	log.check(t)
}

// TestHostileTokenDoesNotFenceTheLiveTerm writes values with a token no term was issued
// straight into the decision key: the live leader replaces them at its next interval,
// and versions keep rising above every version stored before (a hostile value's low or
// absurd version included).
func TestHostileTokenDoesNotFenceTheLiveTerm(t *testing.T) {
	f := newFixture(t)
	log := f.watchDecisions(t)
	f.publishLoad(t, "r1", "c1", 1000, map[string]float64{"cart": 100})
	r := f.startReplica(t, "s1", testConfig())
	natstest.Eventually(t, 10*time.Second, func() bool { d, ok := log.last(); return ok && d.Version >= 3 }, "three decisions")
	first, _ := log.last()
	ctx := context.Background()
	hostile := []struct {
		name string
		data func() []byte
	}{
		{"bare token", func() []byte { return []byte(`{"token":18446744073709551615}`) }},
		{"decision with a huge token and a low version", func() []byte {
			d := *dec(math.MaxUint64)
			d.Version, d.Leader = 2, "intruder"
			data, err := events.Encode(&d)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}},
		{"absurd version", func() []byte {
			d := *dec(1)
			d.Version = math.MaxUint64
			data, _ := events.Encode(&d)
			return data
		}},
	}
	for _, h := range hostile {
		before, _ := log.last()
		if _, err := f.b.Sampling.Put(ctx, events.DecisionKey, h.data()); err != nil {
			t.Fatal(err)
		}
		natstest.Eventually(t, 10*time.Second, func() bool {
			d, ok := log.last()
			// A loaded machine may end the term (lease TTL 1s) and start another: any
			// live term of s1 will do.
			return ok && d.Leader == "s1" && d.Token >= first.Token && d.Version > before.Version && d.Version < MaxVersion
		}, "%s: the live leader's decision is stored again, above version %d", h.name, before.Version)
	}
	_ = r
	checkVersionsRise(t, log)
}

// checkVersionsRise asserts the versions the sampler wrote strictly increase (values
// written by hand are skipped).
func checkVersionsRise(t *testing.T, log *decisionLog) {
	t.Helper()
	var prev uint64
	for _, d := range log.snapshot() {
		if d.Leader == "intruder" || d.Version >= MaxVersion || d.Token == 1 && d.Leader != "s1" {
			continue
		}
		if d.Version <= prev {
			t.Fatalf("version %d after %d", d.Version, prev)
		}
		prev = d.Version
	}
}

// TestRecreatedLeasesBucket deletes and recreates otlp_leases under a running leader:
// its new term's tokens restart low, below the stored decision's, and it must still
// store decisions (the stored token is above anything the new bucket issued).
func TestRecreatedLeasesBucket(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 20 { // push the leases bucket's revisions up, so the first term's token is high
		if _, err := f.b.Leases.Put(ctx, "warmup", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	log := f.watchDecisions(t)
	f.publishLoad(t, "r1", "c1", 1000, map[string]float64{"cart": 100})
	f.startReplica(t, "s1", testConfig())
	natstest.Eventually(t, 10*time.Second, func() bool { d, ok := log.last(); return ok && d.Version >= 2 }, "decisions")
	old, _ := log.last()
	if old.Token <= 20 {
		t.Fatalf("first term token %d, want > 20", old.Token)
	}
	if err := f.js.DeleteKeyValue(ctx, events.Default.LeasesBucket()); err != nil {
		t.Fatal(err)
	}
	l := natsconn.DefaultLayout()
	l.LeaseTTL = leaseTTL
	if _, err := natsconn.Provision(ctx, f.js, l); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 20*time.Second, func() bool {
		d, ok := log.last()
		return ok && d.Token != old.Token && d.Version > old.Version
	}, "decisions of a new term (the first after the recreation has a token below %d) stored after the leases bucket was recreated", old.Token)
	log.mu.Lock()
	defer log.mu.Unlock()
	for i := 1; i < len(log.all); i++ {
		if log.all[i].Version <= log.all[i-1].Version {
			t.Fatalf("version %d after %d", log.all[i].Version, log.all[i-1].Version)
		}
	}
}

// TestUnregisteredFloodChangesNothing publishes reports of 2,000 collectors that never
// registered, each claiming a huge load: the decision still sees only the registered
// collector, and it is not pushed out.
func TestUnregisteredFloodChangesNothing(t *testing.T) {
	f := newFixture(t)
	log := f.watchDecisions(t)
	f.publishLoad(t, "r1", "real", 1000, map[string]float64{"cart": 100})
	r := f.startReplica(t, "s1", testConfig())
	natstest.Eventually(t, 10*time.Second, func() bool { d, ok := log.last(); return ok && d.Inputs.Collectors == 1 }, "a decision over the registered collector")
	for i := range 2000 {
		f.publishUnregistered(t, "r1", fmt.Sprint("fake-", i), 1, map[string]float64{"cart": 1e6})
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		return testutil.ToFloat64(r.svc.m.reports.WithLabelValues("unregistered"))+
			testutil.ToFloat64(r.svc.m.reports.WithLabelValues("unregistered_limit")) >= 2000
	}, "the flood is consumed")
	after, _ := log.last()
	natstest.Eventually(t, 10*time.Second, func() bool { d, ok := log.last(); return ok && d.Version > after.Version+1 }, "two more decisions")
	d, _ := log.last()
	if d.Inputs.Collectors != 1 || d.Inputs.FleetQPS != 100 {
		t.Fatalf("after the flood the decision sees %d collectors and %v spans/s; want the one registered, 100", d.Inputs.Collectors, d.Inputs.FleetQPS)
	}
	if got := testutil.ToFloat64(r.svc.m.reports.WithLabelValues("collector_limit")); got != 0 {
		t.Fatalf("%v reports dropped at the collector limit", got)
	}
}

// dec is a valid decision of term token, as a leader named after it would store.
func dec(token uint64) *events.Decision {
	return &events.Decision{V: 1, Version: 1, Leader: fmt.Sprintf("l%d", token), Token: token, At: time.Now(), Services: map[string]events.ServiceDecision{}}
}

// failingHistory is the real sampling bucket whose history reads fail (a JetStream
// hiccup, a permission missing).
type failingHistory struct{ jetstream.KeyValue }

func (failingHistory) History(context.Context, string, ...jetstream.WatchOpt) ([]jetstream.KeyValueEntry, error) {
	return nil, errors.New("history unavailable")
}

// TestFailedHistoryReadWritesNothing: over a value that does not decode the next version
// must come from the history; when that read fails, Write fails and writes nothing (it
// used to guess from what it had seen and could store a version below the history's).
func TestFailedHistoryReadWritesNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	good := NewStore(f.b.Sampling)
	for range 5 {
		d := &events.Decision{V: 1, Leader: "l1", Token: 1, At: time.Now(), Services: map[string]events.ServiceDecision{}}
		if _, err := good.Write(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	garbage, err := f.b.Sampling.Put(ctx, events.DecisionKey, []byte("not json"))
	if err != nil {
		t.Fatal(err)
	}
	st := NewStore(failingHistory{f.b.Sampling}) // a new leader: it has seen no version
	d := &events.Decision{V: 1, Leader: "l2", Token: 2, At: time.Now(), Services: map[string]events.ServiceDecision{}}
	if _, err := st.Write(ctx, d); err == nil {
		t.Fatalf("Write succeeded with version %d though the history could not be read", d.Version)
	}
	e, err := f.b.Sampling.Get(ctx, events.DecisionKey)
	if err != nil || e.Revision() != garbage {
		t.Fatalf("stored revision %d (%v), want the garbage's %d untouched", e.Revision(), err, garbage)
	}
	// Once the history reads again, the next write goes above version 5.
	if _, err := NewStore(f.b.Sampling).Write(ctx, d); err != nil || d.Version != 6 {
		t.Fatalf("write after recovery: version %d, %v; want 6", d.Version, err)
	}
}
