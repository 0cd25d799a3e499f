package topologysvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a NATS server with the contract provisioned.
type fixture struct {
	srv *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	b   *natsconn.Buckets
}

func newFixture(t testing.TB, registryTTL time.Duration) *fixture {
	t.Helper()
	srv := natstest.Run(t)
	nc, js := srv.JetStream(t)
	l := natsconn.DefaultLayout()
	l.RegistryTTL = registryTTL
	l.LeaseTTL = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsconn.Provision(ctx, js, l)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	return &fixture{srv: srv, nc: nc, js: js, b: b}
}

// replica is one running topology service on its own connection.
type replica struct {
	svc *Service
	reg *prometheus.Registry
	nc  *nats.Conn
	b   *natsconn.Buckets
}

func fastConfig() Config {
	c := DefaultConfig()
	c.Interval = 200 * time.Millisecond
	c.RefreshInterval = 100 * time.Millisecond
	c.StaleAfter = 30 * time.Second // tests publish each report once; a slow machine must not see them go stale
	c.UnregisteredGrace = 2 * time.Second
	return c
}

func (f *fixture) start(t testing.TB, cfg Config, instance string) *replica {
	t.Helper()
	nc, js := f.srv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsconn.OpenBuckets(ctx, js, events.Default)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var log *slog.Logger
	if os.Getenv("TOPOLOGY_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	svc, err := New(cfg, Deps{NC: nc, JS: js, NS: events.Default, Instance: instance, Registerer: reg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	svc.Start(b)
	t.Cleanup(svc.Stop)
	select {
	case <-svc.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("service not ready within 10s")
	}
	return &replica{svc: svc, reg: reg, nc: nc, b: b}
}

// serve starts the otlp-topology micro service of r.
func (r *replica) serve(t *testing.T) {
	t.Helper()
	s := platform.DefaultSettings("topology")
	m, err := platform.AddMicro(r.nc, events.Default, s, events.ServiceTopology, "test", r.svc.Endpoints()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop() })
}

func putRegistration(t *testing.T, kv jetstream.KeyValue, r *events.Registration) {
	t.Helper()
	key, err := r.Key()
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), key, data); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func publishLoad(t *testing.T, nc *nats.Conn, r *events.LoadReport) {
	t.Helper()
	r.At = time.Now().UTC()
	subj, err := events.Default.LoadSubject(r.Region, r.Collector)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.NewMsg(subj, "test", r)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
}

func request[T any](t *testing.T, nc *nats.Conn, op string, in any) (T, error) {
	t.Helper()
	var out T
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := microapi.Request(ctx, nc, events.Default.Endpoint(events.ServiceTopology, op), in, &out)
	return out, err
}

func TestSeesEveryCollector(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	r := f.start(t, fastConfig(), "t1")
	r.serve(t)

	const perRegion = 8
	regionsList := []string{"eu-west-1", "us-east-1", "ap-south-1"}
	for _, region := range regionsList {
		for i := range perRegion {
			id := fmt.Sprintf("c%02d", i)
			putRegistration(t, f.b.Registry, reg(region, id, 1000, events.HealthHealthy))
		}
	}
	start := time.Now()
	for _, region := range regionsList {
		for i := range perRegion {
			publishLoad(t, f.nc, report(region, fmt.Sprintf("c%02d", i), float64(100*(i+1))))
		}
	}
	// Collectors report once a second: the topology must show each within two report
	// intervals.
	natstest.Eventually(t, 2*time.Second, func() bool {
		v, err := r.svc.current()
		return err == nil && v.global.Collectors == 3*perRegion && v.global.Healthy == 3*perRegion
	}, "all %d collectors healthy with load", 3*perRegion)
	t.Logf("all collectors visible with load after %v", time.Since(start))

	top, err := request[Topology](t, f.nc, "get", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Regions) != 3 || top.Global.Collectors != 24 || top.Instance != "t1" || top.Next != "" {
		t.Fatalf("get = %+v", top)
	}
	// Sum over collectors 100..800 per region.
	if want := 3 * 3600.0; top.Global.SpansPerSec != want {
		t.Fatalf("spans_per_sec = %v, want %v", top.Global.SpansPerSec, want)
	}
	if top.Regions[0].Region != "ap-south-1" || len(top.Regions[0].Collectors) != perRegion {
		t.Fatalf("first region = %+v", top.Regions[0].Stats)
	}

	t.Run("region filter", func(t *testing.T) {
		top, err := request[Topology](t, f.nc, "get", GetRequest{Region: "us-east-1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(top.Regions) != 1 || top.Regions[0].Region != "us-east-1" || top.Regions[0].Stats.QPS != 3600 {
			t.Fatalf("get us-east-1 = %+v", top.Regions)
		}
	})
	t.Run("paging", func(t *testing.T) {
		var got []string
		after := ""
		for page := 0; ; page++ {
			top, err := request[Topology](t, f.nc, "get", GetRequest{Limit: 10, After: after})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range top.Regions {
				for _, c := range r.Collectors {
					got = append(got, r.Region+"/"+c.ID)
				}
			}
			if top.Next == "" {
				break
			}
			if page > 5 {
				t.Fatal("paging does not end")
			}
			after = top.Next
		}
		if len(got) != 24 || got[0] != "ap-south-1/c00" || got[23] != "us-east-1/c07" {
			t.Fatalf("pages = %v", got)
		}
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] {
				t.Fatalf("pages not in order or repeated: %v", got)
			}
		}
	})
	t.Run("best in region", func(t *testing.T) {
		best, err := request[BestReply](t, f.nc, "best", BestRequest{Region: "eu-west-1"})
		if err != nil {
			t.Fatal(err)
		}
		if best.Region != "eu-west-1" || best.ID != "c00" || best.Fallback || best.Address != "c00:4317" || best.Candidates != perRegion {
			t.Fatalf("best = %+v", best)
		}
	})
	t.Run("best falls back", func(t *testing.T) {
		best, err := request[BestReply](t, f.nc, "best", BestRequest{Region: "mars-1"})
		if err != nil {
			t.Fatal(err)
		}
		if !best.Fallback || best.Reason == "" || best.ID != "c00" || best.Region != "ap-south-1" {
			t.Fatalf("best = %+v", best)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		neg := -1.0
		_, err := request[BestReply](t, f.nc, "best", BestRequest{LoadWeight: &neg})
		if microapi.CodeOf(err) != microapi.CodeBadRequest {
			t.Fatalf("negative weight: %v", err)
		}
		_, err = request[Topology](t, f.nc, "get", GetRequest{Region: "bad region"})
		if microapi.CodeOf(err) != microapi.CodeBadRequest {
			t.Fatalf("bad region: %v", err)
		}
		_, err = request[Topology](t, f.nc, "get", json.RawMessage(`{"limit":"x"}`))
		if microapi.CodeOf(err) != microapi.CodeBadRequest {
			t.Fatalf("bad body: %v", err)
		}
	})
}

func TestExpiredRegistrationVanishes(t *testing.T) {
	f := newFixture(t, time.Second)
	r := f.start(t, fastConfig(), "t1")

	putRegistration(t, f.b.Registry, reg("eu", "mortal", 1000, events.HealthHealthy))
	putRegistration(t, f.b.Registry, reg("eu", "alive", 1000, events.HealthHealthy))
	putRegistration(t, f.b.Registry, reg("eu", "deleted", 1000, events.HealthHealthy))
	natstest.Eventually(t, 2*time.Second, func() bool {
		v, _ := r.svc.current()
		return v != nil && v.global.Collectors == 3
	}, "three collectors")

	// Keep "alive" heart-beating; let "mortal" expire; delete "deleted".
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				data, _ := json.Marshal(reg("eu", "alive", 1000, events.HealthHealthy))
				_, _ = f.b.Registry.Put(ctx, "collector.eu.alive", data)
				publishLoad(t, f.nc, report("eu", "alive", 10))
				publishLoad(t, f.nc, report("eu", "mortal", 10)) // still reporting, but not registered
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	if err := f.b.Registry.Delete(context.Background(), "collector.eu.deleted"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 2*time.Second, func() bool {
		v, _ := r.svc.current()
		return v != nil && find(v, "eu", "deleted") == nil
	}, "deleted collector gone")
	natstest.Eventually(t, 6*time.Second, func() bool {
		v, _ := r.svc.current()
		return v != nil && find(v, "eu", "mortal") == nil && find(v, "eu", "alive") != nil
	}, "expired collector gone, heart-beating one kept")
	// A collector that reports load without its registration never reappears: wait until
	// more of its reports have arrived (counted as unregistered), then look.
	unregistered := func() float64 { return testutil.ToFloat64(r.svc.m.reports.WithLabelValues("unregistered")) }
	before := unregistered()
	natstest.Eventually(t, 5*time.Second, func() bool { return unregistered() >= before+2 }, "more reports from the expired collector")
	v, _ := r.svc.current()
	if find(v, "eu", "mortal") != nil || v.global.Collectors != 1 {
		t.Fatalf("expired collector back in the topology: %+v", v.regions)
	}
	if got := testutil.ToFloat64(r.svc.m.registrations.WithLabelValues("expire")); got < 1 {
		t.Fatalf("expire entries = %v", got)
	}
}

func TestMalformedLoadReportsAreDroppedAndCounted(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	r := f.start(t, fastConfig(), "t1")
	r.serve(t)
	putRegistration(t, f.b.Registry, reg("eu", "c1", 1000, events.HealthHealthy))
	natstest.Eventually(t, 2*time.Second, func() bool {
		v, _ := r.svc.current()
		return v != nil && v.global.Collectors == 1
	}, "registered")

	want := map[string]float64{}
	for _, m := range malformedLoads(t) {
		if m.subject == "other.load.eu.c1" {
			continue // not captured by the stream
		}
		msg := nats.NewMsg(m.subject)
		msg.Header, msg.Data = m.header, m.data
		if err := f.nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
		want[m.reason]++
	}
	// A report from a region nobody registered in: kept unshown for the grace period,
	// then dropped and counted.
	publishLoad(t, f.nc, report("zz-nowhere", "ghost", 1e6))
	want[RejectUnregistered]++
	// A valid report last: once it shows, every earlier message has been handled.
	good := report("eu", "c1", 123)
	publishLoad(t, f.nc, good)
	natstest.Eventually(t, 2*time.Second, func() bool {
		v, _ := r.svc.current()
		c := find(v, "eu", "c1")
		return c != nil && c.QPS == 123
	}, "valid report applied")
	natstest.Eventually(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(r.svc.m.rejected.WithLabelValues(RejectUnregistered)) == 1
	}, "unregistered report dropped after the grace period")
	for reason, n := range want {
		if got := testutil.ToFloat64(r.svc.m.rejected.WithLabelValues(reason)); got != n {
			t.Errorf("rejected{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	top, err := request[Topology](t, f.nc, "get", nil)
	if err != nil {
		t.Fatalf("service unusable after malformed input: %v", err)
	}
	if len(top.Regions) != 1 || top.Global.Collectors != 1 || top.Global.SpansPerSec != 123 {
		t.Fatalf("malformed or unregistered input shows: %+v", top)
	}
}

func TestLeaderPublishesSnapshotsFollowerDoesNot(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	cfg := fastConfig()
	putRegistration(t, f.b.Registry, reg("eu", "c1", 1000, events.HealthHealthy))
	putRegistration(t, f.b.Registry, reg("us", "c2", 1000, events.HealthHealthy))

	type snap struct {
		s   events.TopologySnapshot
		err error
	}
	var mu sync.Mutex
	var snaps []snap
	sub, err := f.nc.Subscribe(events.Default.EventSubject(events.EventTopologySnapshot), func(m *nats.Msg) {
		var s events.TopologySnapshot
		err := events.Decode(m.Data, &s)
		if err == nil && m.Header.Get(events.HeaderType) != "io.otelfleet.topology.snapshot.v1" {
			err = fmt.Errorf("ce-type %q", m.Header.Get(events.HeaderType))
		}
		mu.Lock()
		snaps = append(snaps, snap{s, err})
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	type candidate struct {
		r      *replica
		e      *election.Election
		cancel context.CancelFunc
		done   chan struct{}
	}
	run := func(id string) *candidate {
		r := f.start(t, cfg, id)
		e, err := election.NewKV(r.nc, r.b.Leases, election.Config{Role: events.ServiceTopology, ID: id}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		c := &candidate{r: r, e: e, cancel: cancel, done: make(chan struct{})}
		go func() { defer close(c.done); _ = e.Run(ctx, r.svc.Lead) }()
		t.Cleanup(func() { cancel(); <-c.done })
		return c
	}
	a, b := run("a"), run("b")
	natstest.Eventually(t, 5*time.Second, func() bool { return a.e.IsLeader() || b.e.IsLeader() }, "a leader")
	leader, follower := a, b
	if b.e.IsLeader() {
		leader, follower = b, a
	}
	lid, fid := map[*candidate]string{a: "a", b: "b"}[leader], map[*candidate]string{a: "a", b: "b"}[follower]
	count := func(id string) (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range snaps {
			if s.err != nil {
				t.Fatalf("bad snapshot: %v", s.err)
			}
			if s.s.Leader == id {
				n++
			}
		}
		return n
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return count(lid) >= 5 }, "five snapshots from the leader")
	if n := count(fid); n != 0 {
		t.Fatalf("follower %s published %d snapshots", fid, n)
	}
	mu.Lock()
	last := snaps[len(snaps)-1].s
	mu.Unlock()
	if last.Collectors != 2 || len(last.Regions) != 2 || last.Regions[0].Region != "eu" || last.Token == 0 || last.Seq < 5 {
		t.Fatalf("snapshot = %+v", last)
	}
	if top, _ := follower.r.svc.Get(GetRequest{}); top.Leader {
		t.Fatal("follower says it leads")
	}

	// The leader steps down; the follower takes over with a newer token.
	leader.cancel()
	<-leader.done
	natstest.Eventually(t, 5*time.Second, func() bool { return count(fid) >= 2 }, "snapshots from the new leader")
	mu.Lock()
	defer mu.Unlock()
	newest := snaps[len(snaps)-1].s
	if newest.Leader != fid || newest.Token <= last.Token {
		t.Fatalf("after failover: leader %s token %d, before token %d", newest.Leader, newest.Token, last.Token)
	}
}

func TestSamplingRateFromDecision(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	r := f.start(t, fastConfig(), "t1")
	put := func(data []byte) {
		t.Helper()
		if _, err := f.b.Sampling.Put(context.Background(), events.DecisionKey, data); err != nil {
			t.Fatal(err)
		}
	}
	decision := func(rate float64) []byte {
		data, err := events.Encode(&events.Decision{V: events.DecisionVersion, Version: 1, Token: 1, Leader: "s1", At: time.Now(), GlobalRate: rate})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	rate := func() *float64 {
		r.svc.state.mu.Lock()
		defer r.svc.state.mu.Unlock()
		return r.svc.state.sampling
	}
	put(decision(0.125))
	natstest.Eventually(t, 2*time.Second, func() bool { p := rate(); return p != nil && *p == 0.125 }, "effective sampling rate from the decision")
	// Values that are no decision (a bare rate field, garbage) leave the rate as it was;
	// the watch is ordered, so once the next real decision shows they have been seen.
	put([]byte(`{"v":1,"global_rate":0.5}`))
	put([]byte(`garbage`))
	put(decision(0.25))
	natstest.Eventually(t, 2*time.Second, func() bool {
		p := rate()
		if p != nil && *p == 0.5 {
			t.Fatal("a value that is not a decision set the rate")
		}
		return p != nil && *p == 0.25
	}, "the next decision's rate")
	natstest.Eventually(t, 2*time.Second, func() bool {
		v, _ := r.svc.current()
		return v != nil && v.global.EffectiveSamplingRate != nil && *v.global.EffectiveSamplingRate == 0.25
	}, "the rate in the view")
	if err := f.b.Sampling.Delete(context.Background(), events.DecisionKey); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 2*time.Second, func() bool {
		v, _ := r.svc.current()
		return v != nil && v.global.EffectiveSamplingRate == nil
	}, "no rate once the decision is deleted")
}

func TestNotReady(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	svc, err := New(fastConfig(), Deps{NC: f.nc, JS: f.js})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	if _, err := svc.Get(GetRequest{}); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Get before start = %v", err)
	}
	if _, err := svc.BestOf(BestRequest{}); !errors.Is(err, ErrNotReady) {
		t.Fatalf("BestOf before start = %v", err)
	}
	var _ micro.Handler = svc.Endpoints()[0].Handler
}

// TestSurvivesServerRestart restarts NATS under a replica: the load consumer and the
// registry watch come back, and a registration that vanished while the replica was cut
// off (deleted, its marker purged) is forgotten by the resync after the replay.
func TestSurvivesServerRestart(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	r := f.start(t, fastConfig(), "t1")
	putRegistration(t, f.b.Registry, reg("eu", "c1", 1000, events.HealthHealthy))
	putRegistration(t, f.b.Registry, reg("eu", "gone", 1000, events.HealthHealthy))
	publishLoad(t, f.nc, report("eu", "c1", 10))
	natstest.Eventually(t, 2*time.Second, func() bool {
		v, _ := r.svc.current()
		c := find(v, "eu", "c1")
		return c != nil && c.QPS == 10 && find(v, "eu", "gone") != nil
	}, "c1 with load, and gone")

	f.srv.Restart(t)
	// Before the replica reconnects (nats.go waits 2s between attempts), remove "gone"
	// without a trace: delete it, then purge the delete marker.
	nc, js := f.srv.JetStream(t)
	kv, err := js.KeyValue(t.Context(), events.Default.RegistryBucket())
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), "collector.eu.gone"); err != nil {
		t.Fatal(err)
	}
	if err := kv.PurgeDeletes(t.Context(), jetstream.DeleteMarkersOlderThan(-1)); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	natstest.Eventually(t, 10*time.Second, r.nc.IsConnected, "replica reconnected")
	t.Logf("reconnected after %v", time.Since(restarted))
	natstest.Eventually(t, 10*time.Second, func() bool {
		v, _ := r.svc.current()
		return find(v, "eu", "gone") == nil
	}, "vanished registration forgotten")
	t.Logf("resynced after %v", time.Since(restarted))

	putRegistration(t, kv, reg("eu", "c2", 1000, events.HealthHealthy))
	natstest.Eventually(t, 10*time.Second, func() bool {
		publishLoad(t, nc, report("eu", "c1", 20))
		publishLoad(t, nc, report("eu", "c2", 30))
		v, _ := r.svc.current()
		c1, c2 := find(v, "eu", "c1"), find(v, "eu", "c2")
		return c1 != nil && c1.QPS == 20 && c2 != nil && c2.QPS == 30
	}, "new load and registrations after the restart")
	t.Logf("new load after %v", time.Since(restarted))
}

// TestLateReplicaStartsWarm starts a replica after the fleet has reported: its first view
// already holds every collector's last load (no "stale" window after start).
func TestLateReplicaStartsWarm(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	const n = 50
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		putRegistration(t, f.b.Registry, reg("eu", id, 1000, events.HealthHealthy))
		publishLoad(t, f.nc, report("eu", id, float64(i+1)))
	}
	stream, err := f.js.Stream(t.Context(), events.Default.LoadStream())
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Msgs == n
	}, "reports stored")
	r := f.start(t, fastConfig(), "late") // returns once Ready
	v, err := r.svc.current()
	if err != nil {
		t.Fatal(err)
	}
	if v.global.Collectors != n || v.global.Healthy != n || v.global.SpansPerSec != n*(n+1)/2 {
		t.Fatalf("first view: %d collectors, %d healthy, %v spans/s", v.global.Collectors, v.global.Healthy, v.global.SpansPerSec)
	}
}
