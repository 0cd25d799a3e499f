package fleetview_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKeyFromRegistry(t *testing.T) {
	tests := []struct {
		key  string
		want fleetview.Key
		ok   bool
	}{
		{"collector.eu.c1", fleetview.Key{Region: "eu", ID: "c1"}, true},
		{"service.router.r1", fleetview.Key{}, false},
		{"collector.eu", fleetview.Key{}, false},
		{"collector.eu.c1.extra", fleetview.Key{}, false},
		{"collector..c1", fleetview.Key{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, ok := fleetview.KeyFromRegistry(tt.key)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("KeyFromRegistry(%q) = %v, %v", tt.key, got, ok)
			}
		})
	}
}

func registration(region, id string) []byte {
	at := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	data, err := events.Encode(events.Registration{V: events.RegistrationVersion, ID: id, InstanceKind: events.KindCollector,
		Region: region, Address: id + ":4317", Health: events.Health{Status: events.HealthHealthy}, RegisteredAt: at, UpdatedAt: at, Generation: 1})
	if err != nil {
		panic(err)
	}
	return data
}

func newBucket(t *testing.T) (*natstest.Server, jetstream.KeyValue, func(string, []byte)) {
	t.Helper()
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	b, err := natsconn.Provision(context.Background(), js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	kv := b.Registry
	return srv, kv, func(key string, data []byte) {
		t.Helper()
		if _, err := kv.Put(context.Background(), key, data); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs v over srv until the test ends and waits for the registry's first replay.
func run(t *testing.T, srv *natstest.Server, kv jetstream.KeyValue, v *fleetview.View) {
	t.Helper()
	nc, js := srv.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); v.Run(ctx, nc, js, kv) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-v.Loaded():
	case <-time.After(10 * time.Second):
		t.Fatal("first replay never ended")
	}
}

func TestWatchFollowsTheRegistry(t *testing.T) {
	srv, kv, put := newBucket(t)
	ctx := context.Background()
	put("collector.eu.c1", registration("eu", "c1"))
	put("collector.eu.c2", registration("eu", "c2"))
	put("collector.eu.c3", registration("us", "c3")) // describes another collector
	put("collector.eu.c4", []byte("garbage"))
	put("service.router.r1", routerRegistration("eu", "r1"))
	put("service.router.r2", routerRegistration("eu", "other")) // describes another router
	put("service.router.r3", registration("eu", "r3"))          // a collector's registration
	put("service.router.r4", routerRegistration("", "r4"))      // no region: no router
	put("service.sampler.s1", routerRegistration("eu", "s1"))   // a router's value under a sampler's key

	var mu sync.Mutex
	counts := map[string]int{}
	v := fleetview.New(fleetview.Config{Registry: func(op string) { mu.Lock(); defer mu.Unlock(); counts[op]++ }})
	run(t, srv, kv, v)
	s := v.Snapshot()
	if len(s.Collectors) != 2 || s.Collector("eu", "c1") == nil || s.Collector("eu", "c2") == nil {
		t.Fatalf("collectors after the replay: %d", len(s.Collectors))
	}
	if len(s.Routers) != 1 || s.Router("r1") == nil || s.Router("r1").Region != "eu" || s.Collector("eu", "r1") != nil {
		t.Fatalf("routers after the replay: %d", len(s.Routers))
	}
	mu.Lock()
	if counts["rejected"] != 5 || counts["put"] != 4 {
		t.Fatalf("counts %v, want 4 put (c1, c2, r1, r4) and 5 rejected", counts)
	}
	mu.Unlock()
	members := s.Members
	if err := kv.Delete(ctx, "collector.eu.c1"); err != nil {
		t.Fatal(err)
	}
	put("collector.eu.c2", []byte(`{"v":1}`)) // a registration that became invalid
	put("collector.us.c5", registration("us", "c5"))
	put("service.router.r1", routerRegistration("us", "r1")) // moves region
	natstest.Eventually(t, 5*time.Second, func() bool {
		s := v.Snapshot()
		return len(s.Collectors) == 1 && s.Collector("us", "c5") != nil && s.Router("r1") != nil && s.Router("r1").Region == "us" && s.Members != members
	}, "deleted and invalid registrations forgotten, a new one added, a router moved")

	// A replica cut off while a registration expired forgets it at the next replay.
	srv.Stop()
	v.PutRegistration(&events.Registration{V: 1, InstanceKind: events.KindCollector, Region: "eu", ID: "ghost"})
	v.PutRegistration(&events.Registration{V: 1, InstanceKind: events.KindService, Name: events.ServiceRouter, Region: "eu", ID: "ghost"})
	srv.Restart(t)
	natstest.Eventually(t, 20*time.Second, func() bool {
		s := v.Snapshot()
		return s.Collector("eu", "ghost") == nil && s.Router("ghost") == nil && s.Collector("us", "c5") != nil && s.Router("r1") != nil
	}, "resync after the reconnect")
}

func routerRegistration(region, id string) []byte {
	at := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	data, err := events.Encode(events.Registration{V: events.RegistrationVersion, ID: id, InstanceKind: events.KindService,
		Name: events.ServiceRouter, Region: region, Address: id + ":4317", Health: events.Health{Status: events.HealthHealthy},
		RegisteredAt: at, UpdatedAt: at, Generation: 1})
	if err != nil {
		panic(err)
	}
	return data
}

func publish(t *testing.T, srv *natstest.Server, r events.LoadReport) {
	t.Helper()
	nc, _ := srv.JetStream(t)
	msg, err := loadreport.NewMsg(events.Default, "test", r)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
}

// TestFollowsTheLoadStream: reports of registered collectors and routers count, others
// wait and count once their registration arrives, a router's report counts only in its
// registration's region, and garbage is rejected through the hook.
func TestFollowsTheLoadStream(t *testing.T) {
	srv, kv, put := newBucket(t)
	put("collector.eu.c1", registration("eu", "c1"))
	put("service.router.r1", routerRegistration("eu", "r1"))
	var mu sync.Mutex
	outcomes := map[string]int{}
	v := fleetview.New(fleetview.Config{Reports: func(o fleetview.Outcome, _ string, _ []byte, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			outcomes["rejected"]++
			return
		}
		outcomes[o.String()]++
	}})
	run(t, srv, kv, v)
	select { // the follower is live: every report below is delivered, none folded by a replay
	case <-v.CaughtUp():
	case <-time.After(10 * time.Second):
		t.Fatal("the load stream's replay never ended")
	}
	publish(t, srv, report("eu", "c1", 10, true))
	publish(t, srv, report("eu", "late", 20, true))
	router := report("us", "r1", 30, true) // r1 is registered in eu
	router.Role = events.RoleRouter
	publish(t, srv, router)
	router.Region = "eu"
	publish(t, srv, router)
	nc, _ := srv.JetStream(t)
	if err := nc.Publish("otlp.load.eu.junk", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return outcomes["counted"] == 2 && outcomes["unregistered"] == 2 && outcomes["rejected"] == 1
	}, "two counted, two waiting, one rejected")
	s := v.Snapshot()
	if c := s.Collector("eu", "c1"); c.Report == nil || c.Report.QPS != 10 || c.ReceivedAt.IsZero() {
		t.Fatalf("c1: %+v", c)
	}
	if r := s.Router("r1"); r.Report == nil || r.Report.QPS != 30 {
		t.Fatalf("r1: %+v", r)
	}
	put("collector.eu.late", registration("eu", "late"))
	natstest.Eventually(t, 5*time.Second, func() bool {
		c := v.Snapshot().Collector("eu", "late")
		return c != nil && c.Report != nil && c.Report.QPS == 20
	}, "the waiting report counts once its collector registers")
}

func report(region, id string, qps float64, healthy bool) events.LoadReport {
	return events.LoadReport{V: events.LoadReportVersion, Region: region, Collector: id, At: time.Now(), QPS: qps, Capacity: 100,
		Healthy: healthy, IntervalMS: 1000}
}
