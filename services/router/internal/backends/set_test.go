package backends

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a running Set on a real in-process NATS.
type fixture struct {
	srv *natstest.Server
	nc  *nats.Conn
	kv  jetstream.KeyValue
	reg *prometheus.Registry
	set *Set

	mu    sync.Mutex
	lists [][]Backend
}

func start(t *testing.T, cfg Config) *fixture {
	t.Helper()
	srv := natstest.Run(t)
	nc, js := srv.JetStream(t)
	l := natsconn.DefaultLayout()
	l.RegistryTTL = 2 * time.Second
	b, err := natsconn.Provision(context.Background(), js, l)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: srv, nc: nc, kv: b.Registry, reg: prometheus.NewRegistry()}
	cfg.Registerer = f.reg
	cfg.Log = slog.New(slog.DiscardHandler)
	f.set = New(cfg, func(l []Backend) {
		f.mu.Lock()
		f.lists = append(f.lists, l)
		f.mu.Unlock()
	})
	vc := fleetview.Config{Log: cfg.Log}
	f.set.Count(&vc)
	view := fleetview.New(vc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- f.set.Run(ctx, view, ready) }()
	viewDone := make(chan struct{})
	go func() { defer close(viewDone); view.Run(ctx, nc, js, b.Registry) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		<-viewDone
	})
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("set not ready")
	}
	return f
}

func (f *fixture) last() []Backend {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.lists) == 0 {
		return nil
	}
	return f.lists[len(f.lists)-1]
}

func (f *fixture) waitFor(t *testing.T, what string, cond func([]Backend) bool) []Backend {
	t.Helper()
	var got []Backend
	natstest.Eventually(t, 10*time.Second, func() bool { got = f.last(); return cond(got) }, "%s (last list %+v)", what, &got)
	return got
}

func keys(l []Backend) []string {
	out := make([]string, len(l))
	for i, b := range l {
		out[i] = b.Key + "@" + b.Addr
	}
	return out
}

func hasKeys(want ...string) func([]Backend) bool {
	return func(l []Backend) bool {
		got := keys(l)
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i] != want[i] {
				return false
			}
		}
		return true
	}
}

// flagged is hasKeys(want...) with exactly the backends sick (by key) unhealthy.
func flagged(sick []string, want ...string) func([]Backend) bool {
	return func(l []Backend) bool {
		if !hasKeys(want...)(l) {
			return false
		}
		for _, b := range l {
			if b.Unhealthy != slices.Contains(sick, b.Key) {
				return false
			}
		}
		return true
	}
}

func registration(id, addr string, status events.HealthStatus) events.Registration {
	return events.Registration{
		V: events.RegistrationVersion, ID: id, InstanceKind: events.KindCollector, Region: "eu", Address: addr, CapacityQPS: 1000,
		Health: events.Health{Status: status}, RegisteredAt: time.Now(), UpdatedAt: time.Now(),
	}
}

func (f *fixture) put(t *testing.T, r events.Registration) {
	t.Helper()
	key, err := r.Key()
	if err != nil {
		t.Fatal(err)
	}
	f.putRaw(t, key, r)
}

func (f *fixture) putRaw(t *testing.T, key string, r events.Registration) {
	t.Helper()
	b, err := events.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.kv.Put(context.Background(), key, b); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) report(t *testing.T, id string, healthy bool, qps float64) {
	t.Helper()
	r := events.LoadReport{V: events.LoadReportVersion, Region: "eu", Collector: id, At: time.Now(), IntervalMS: 1000, QPS: qps, Capacity: 1000, Healthy: healthy, AvgLatencyMS: 7}
	subj, err := events.Default.LoadSubject("eu", id)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.NewMsg(subj, "test", r)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) rejected(what, reason string) float64 {
	return testutil.ToFloat64(f.set.rejected.WithLabelValues(what, reason))
}

func TestMembershipFollowsTheRegistry(t *testing.T) {
	f := start(t, Config{})
	ctx := context.Background()
	f.put(t, registration("a", "127.0.0.1:1", events.HealthHealthy))
	f.put(t, registration("b", "127.0.0.1:2", events.HealthDegraded))
	f.put(t, registration("sim", "", events.HealthHealthy)) // simulated: no address
	l := f.waitFor(t, "a and b registered", hasKeys("collector.eu.a@127.0.0.1:1", "collector.eu.b@127.0.0.1:2"))
	if l[0].Degraded || !l[1].Degraded || l[0].Capacity != 1000 || l[0].Region != "eu" || l[0].ID != "a" {
		t.Fatalf("backends %+v", l)
	}

	f.put(t, registration("a", "127.0.0.1:9", events.HealthHealthy))
	f.waitFor(t, "a's address changed", hasKeys("collector.eu.a@127.0.0.1:9", "collector.eu.b@127.0.0.1:2"))

	f.put(t, registration("b", "127.0.0.1:2", events.HealthUnhealthy))
	f.waitFor(t, "unhealthy b flagged", flagged([]string{"collector.eu.b"}, "collector.eu.a@127.0.0.1:9", "collector.eu.b@127.0.0.1:2"))
	if got := testutil.ToFloat64(f.set.sick); got != 1 {
		t.Fatalf("unhealthy gauge %v, want 1", got)
	}
	f.put(t, registration("b", "127.0.0.1:2", events.HealthHealthy))
	f.waitFor(t, "b healthy again", flagged(nil, "collector.eu.a@127.0.0.1:9", "collector.eu.b@127.0.0.1:2"))

	if err := f.kv.Delete(ctx, "collector.eu.a"); err != nil {
		t.Fatal(err)
	}
	f.waitFor(t, "deregistered a left", hasKeys("collector.eu.b@127.0.0.1:2"))
	// b is not refreshed: its registration expires with the bucket TTL.
	f.waitFor(t, "expired b left", hasKeys())
}

func TestHostileValuesAreIgnoredAndCounted(t *testing.T) {
	f := start(t, Config{})
	ctx := context.Background()
	f.put(t, registration("a", "127.0.0.1:1", events.HealthHealthy))
	f.waitFor(t, "a registered", hasKeys("collector.eu.a@127.0.0.1:1"))

	if _, err := f.kv.Put(ctx, "collector.eu.junk", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	// b's payload under c's key: a collector cannot pose as another.
	f.putRaw(t, "collector.eu.c", registration("b", "127.0.0.1:3", events.HealthHealthy))
	natstest.Eventually(t, 5*time.Second, func() bool {
		return f.rejected("registration", "malformed") == 2
	}, "hostile values counted")
	// Garbage over a valid registration: what was there is no longer valid.
	if _, err := f.kv.Put(ctx, "collector.eu.a", []byte(`{"v":1,"id":"a","kind":"collector","region":"eu","health":{"status":"fine"}}`)); err != nil {
		t.Fatal(err)
	}
	f.waitFor(t, "a's invalid value removed it", hasKeys())
	f.put(t, registration("d", "127.0.0.1:4", events.HealthHealthy))
	f.waitFor(t, "still watching after garbage", hasKeys("collector.eu.d@127.0.0.1:4"))
}

func TestLoadReports(t *testing.T) {
	f := start(t, Config{ReportTTL: 2 * time.Second})
	f.put(t, registration("a", "127.0.0.1:1", events.HealthHealthy))
	f.put(t, registration("b", "127.0.0.1:2", events.HealthHealthy))
	f.waitFor(t, "registered", hasKeys("collector.eu.a@127.0.0.1:1", "collector.eu.b@127.0.0.1:2"))

	f.report(t, "ghost", true, 1) // unregistered: ignored
	f.report(t, "a", true, 250)
	l := f.waitFor(t, "a's reading", func(l []Backend) bool { return len(l) == 2 && l[0].Load == 0.25 })
	if l[0].LatencyMS != 7 {
		t.Fatalf("latency %v", l[0].LatencyMS)
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return f.rejected("report", "unregistered") == 1 }, "ghost's report ignored")

	// One unhealthy report (a busy second) moves nothing; UnhealthyReports in a row do.
	// The registrations are refreshed as they go (the bucket's TTL is 2 s).
	refresh := func() {
		f.put(t, registration("a", "127.0.0.1:1", events.HealthHealthy))
		f.put(t, registration("b", "127.0.0.1:2", events.HealthHealthy))
	}
	refresh()
	f.report(t, "b", false, 100)
	l = f.waitFor(t, "b's first unhealthy report read", func(l []Backend) bool { return len(l) == 2 && l[1].Load == 0.1 })
	if l[1].Unhealthy {
		t.Fatal("one unhealthy report flagged b")
	}
	refresh()
	f.report(t, "b", false, 200)
	f.waitFor(t, "b's second unhealthy report read", func(l []Backend) bool { return len(l) == 2 && l[1].Load == 0.2 && !l[1].Unhealthy })
	refresh()
	f.report(t, "b", false, 300)
	f.waitFor(t, "b reported unhealthy", flagged([]string{"collector.eu.b"}, "collector.eu.a@127.0.0.1:1", "collector.eu.b@127.0.0.1:2"))
	refresh()
	f.report(t, "b", true, 0)
	f.waitFor(t, "b reported healthy", flagged(nil, "collector.eu.a@127.0.0.1:1", "collector.eu.b@127.0.0.1:2"))
	// Keep the registrations alive; the readings age out after ReportTTL.
	f.put(t, registration("a", "127.0.0.1:1", events.HealthHealthy))
	f.put(t, registration("b", "127.0.0.1:2", events.HealthHealthy))
	f.waitFor(t, "readings expired", func(l []Backend) bool { return len(l) == 2 && l[0].Load == 0 && l[0].LatencyMS == 0 })
}

func TestRecoversFromNATSRestart(t *testing.T) {
	f := start(t, Config{})
	f.put(t, registration("a", "127.0.0.1:1", events.HealthHealthy))
	f.waitFor(t, "a registered", hasKeys("collector.eu.a@127.0.0.1:1"))

	f.srv.Restart(t)
	natstest.Eventually(t, 10*time.Second, f.nc.IsConnected, "reconnected")
	// Writes after the restart reach the set through the re-created watch.
	natstest.Eventually(t, 10*time.Second, func() bool {
		f.put(t, registration("a", "127.0.0.1:1", events.HealthHealthy))
		f.put(t, registration("b", "127.0.0.1:2", events.HealthHealthy))
		return hasKeys("collector.eu.a@127.0.0.1:1", "collector.eu.b@127.0.0.1:2")(f.last())
	}, "b registered after the restart")
	if err := f.kv.Delete(context.Background(), "collector.eu.a"); err != nil {
		t.Fatal(err)
	}
	f.waitFor(t, "a deregistered after the restart", hasKeys("collector.eu.b@127.0.0.1:2"))
	f.report(t, "b", false, 0)
	f.waitFor(t, "load stream followed after the restart", hasKeys())
}
