package configsvc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
	configsvc "github.com/otelfleet/otelfleet/services/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// instance is one config service process (platform + watcher + service) under test.
type instance struct {
	app     *fxtest.App
	watcher *configwatch.Watcher
	ready   *platform.Readiness
	reg     *prometheus.Registry
}

func startInstance(t *testing.T, url, id string) *instance {
	t.Helper()
	s := platform.DefaultSettings("config")
	s.Instance = id
	s.AdminAddr = "127.0.0.1:0"
	s.NATS.URL = url
	s.LogLevel = "error"
	in := &instance{}
	in.app = fxtest.New(t,
		platform.Module(s),
		fx.Decorate(func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }),
		configwatch.Module,
		configsvc.Module(configsvc.DefaultConfig()),
		fx.Populate(&in.watcher, &in.ready, &in.reg),
		fx.NopLogger,
	)
	in.app.RequireStart()
	t.Cleanup(in.app.RequireStop)
	natstest.Eventually(t, 10*time.Second, func() bool { _, ok := in.ready.Check(); return ok }, "instance %s ready", id)
	return in
}

func put(t *testing.T, nc *nats.Conn, file string) (configsvc.PutReply, error) {
	t.Helper()
	// Parsing and validating a large file is CPU work: under -race on a loaded 2-core
	// machine a 900 KB file took 6 s, so the deadline is generous.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rep configsvc.PutReply
	err := microapi.Request(ctx, nc, events.Default.Endpoint("config", "put"), configsvc.PutRequest{File: file, By: "test"}, &rep)
	return rep, err
}

const fixedFile = `
global:
  sampling_rate: 0.25
  sampling_strategies:
    - type: fixed
      rate: 0.25
  degradation: {enabled: false}
  rate_limiting: {max_qps: 1000, burst_size: 10, per_service_limit: 100}
`

func TestDefaultsStoredOnFirstStartAndBothInstancesApplyChanges(t *testing.T) {
	srv := natstest.Run(t)
	a := startInstance(t, srv.URL(), "a")
	b := startInstance(t, srv.URL(), "b")
	nc := srv.Connect(t)

	for _, in := range []*instance{a, b} {
		if got := in.watcher.Current().Global; got.Version != 1 || got.SamplingRate != 0.1 {
			t.Fatalf("initial config in force = version %d rate %v, want defaults as version 1", got.Version, got.SamplingRate)
		}
	}

	evs, err := nc.SubscribeSync(events.Default.EventSubject(events.EventConfigChanged))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := put(t, nc, fixedFile)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if len(rep.Changes) != 1 || rep.Changes[0].NewVersion != 2 || rep.Changes[0].OldVersion != 1 {
		t.Fatalf("changes = %+v, want global 1 → 2", rep.Changes)
	}
	for _, in := range []*instance{a, b} {
		natstest.Eventually(t, 5*time.Second, func() bool { return in.watcher.Current().Global.Version == 2 }, "watcher applies version 2")
		if got := in.watcher.Current().Global.SamplingRate; got != 0.25 {
			t.Errorf("sampling_rate in force = %v, want 0.25", got)
		}
	}

	// The same content again is not a new version.
	if rep, err := put(t, nc, fixedFile); err != nil || !rep.Changes[0].Unchanged || rep.Changes[0].NewVersion != 2 {
		t.Fatalf("identical put: %+v, %v; want unchanged at version 2", rep, err)
	}

	msg, err := evs.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no config.changed event: %v", err)
	}
	for _, h := range []string{events.HeaderSpecVersion, events.HeaderType, events.HeaderSource, events.HeaderID, events.HeaderTime} {
		if msg.Header.Get(h) == "" {
			t.Errorf("event lacks header %s", h)
		}
	}
	if ct := msg.Header.Get(events.HeaderContentType); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var ev events.ConfigChanged
	if err := events.Decode(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.OldVersion != 1 || ev.NewVersion != 2 || ev.By != "test" || len(ev.Changed) == 0 {
		t.Errorf("event = %+v", ev)
	}
	if extra, err := evs.NextMsg(300 * time.Millisecond); err == nil {
		t.Errorf("an unchanged put published an event: %s", extra.Data)
	}
}

func TestInvalidFileRefusedNamingEveryFieldAndNothingChanges(t *testing.T) {
	srv := natstest.Run(t)
	in := startInstance(t, srv.URL(), "a")
	nc := srv.Connect(t)
	bad := `
global:
  sampling_rate: 1.5
  sampling_strategies:
    - type: adaptive
      min_rate: 0.6
      max_rate: 0.5
      target_qps: 100
  degradation: {enabled: true, threshold: 0.5, target_rate: 0.01, recovery_threshold: 0.7}
  rate_limiting: {max_qps: 0, burst_size: 1, per_service_limit: 1}
`
	_, err := put(t, nc, bad)
	var me *microapi.Error
	if !errors.As(err, &me) || me.Code != microapi.CodeBadRequest {
		t.Fatalf("put of an invalid file: err = %v, want a 400", err)
	}
	for _, path := range []string{"global.sampling_rate", "global.sampling_strategies[0].min_rate", "global.degradation.recovery_threshold", "global.rate_limiting.max_qps"} {
		if !contains(me.Message, path) {
			t.Errorf("refusal %q does not name %s", me.Message, path)
		}
	}
	if v := in.watcher.Current().Global.Version; v != 1 {
		t.Errorf("version in force = %d after a refused put, want 1", v)
	}
}

func TestGarbageInBucketKeepsLastGoodConfigAndReadiness(t *testing.T) {
	srv := natstest.Run(t)
	in := startInstance(t, srv.URL(), "a")
	_, js := srv.JetStream(t)
	kv, err := js.KeyValue(context.Background(), events.Default.ConfigBucket())
	if err != nil {
		t.Fatal(err)
	}
	for _, garbage := range []string{"not json", `{"v":1}`, `{"sampling_rate": 7, "degradation": {}, "rate_limiting": {"max_qps": 1, "burst_size": 1}}`} {
		if _, err := kv.Put(context.Background(), events.GlobalConfigKey, []byte(garbage)); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return in.watcher.Report().Rejected >= 3 }, "watcher rejects the garbage")
	if g := in.watcher.Current().Global; g.Version != 1 || g.SamplingRate != 0.1 {
		t.Errorf("config in force changed to version %d rate %v", g.Version, g.SamplingRate)
	}
	if _, ok := in.ready.Check(); !ok {
		t.Error("instance not ready after garbage")
	}
	// A good write after garbage gets a version above every version seen.
	nc := srv.Connect(t)
	rep, err := put(t, nc, fixedFile)
	if err != nil {
		t.Fatalf("put after garbage: %v", err)
	}
	if rep.Changes[0].NewVersion != 2 {
		t.Errorf("version after garbage = %d, want 2", rep.Changes[0].NewVersion)
	}
	// The change is reported against the version in force, not the garbage: 1 → 2,
	// naming only the fields that differ from version 1.
	fixed, err := fleetconfig.LoadFile([]byte(fixedFile))
	if err != nil {
		t.Fatal(err)
	}
	want := fleetconfig.Diff(fleetconfig.Defaults().Global, fixed.Global)
	if c := rep.Changes[0]; c.OldVersion != 1 || !slices.Equal(c.Changed, want) {
		t.Errorf("change after garbage = %d → %d changing %v; want 1 → 2 changing %v", c.OldVersion, c.NewVersion, c.Changed, want)
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return in.watcher.Current().Global.Version == 2 }, "good config applied after garbage")
}

func TestCompareAndSetConflictBetweenTwoWriters(t *testing.T) {
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	ctx := context.Background()
	b, err := natsconn.Provision(ctx, js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	store := configsvc.NewStore(b.Config)
	if _, err := store.Init(ctx, fleetconfig.Defaults(), "init"); err != nil {
		t.Fatal(err)
	}
	// Both writers expect version 1; exactly one wins.
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	v1 := uint64(1)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := fleetconfig.Defaults().Global
			g.SamplingRate = float64(i+1) / 100
			_, errs[i] = store.PutGlobal(ctx, g, fmt.Sprintf("writer-%d", i), &v1)
		}()
	}
	wg.Wait()
	if wins := winners(t, errs); wins != 1 {
		t.Fatalf("%d writers won, want exactly 1", wins)
	}
	// Without an expected version, racing writers still never lose a write silently:
	// every write either lands as its own version or reports a conflict.
	hist, err := store.History(ctx, events.GlobalConfigKey)
	if err != nil {
		t.Fatal(err)
	}
	if last := hist[len(hist)-1]; last.Version != 2 {
		t.Errorf("last version = %d, want 2", last.Version)
	}
}

func TestConcurrentWritersWithoutExpectationGetDistinctVersionsOrConflicts(t *testing.T) {
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	ctx := context.Background()
	b, err := natsconn.Provision(ctx, js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	store := configsvc.NewStore(b.Config)
	var wg sync.WaitGroup
	var mu sync.Mutex
	versions := map[uint64]int{}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := fleetconfig.Defaults().Global
			g.SamplingRate = float64(i+1) / 100
			c, err := store.PutGlobal(ctx, g, "w", nil)
			if errors.Is(err, configsvc.ErrConflict) {
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			versions[c.NewVersion]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	for v, n := range versions {
		if n > 1 {
			t.Errorf("version %d written by %d writers", v, n)
		}
	}
	hist, _ := store.History(ctx, events.GlobalConfigKey)
	if len(hist) != len(versions) {
		t.Errorf("history has %d entries, %d writes succeeded", len(hist), len(versions))
	}
}

func TestHistoryAndRollback(t *testing.T) {
	srv := natstest.Run(t)
	in := startInstance(t, srv.URL(), "a")
	nc := srv.Connect(t)
	if _, err := put(t, nc, fixedFile); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var hist []configsvc.HistoryEntry
	if err := microapi.Request(ctx, nc, events.Default.Endpoint("config", "history"), configsvc.HistoryRequest{}, &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Version != 1 || hist[1].Version != 2 || !hist[1].Valid {
		t.Fatalf("history = %+v", hist)
	}
	var c configsvc.Change
	if err := microapi.Request(ctx, nc, events.Default.Endpoint("config", "rollback"), configsvc.RollbackRequest{To: 1, By: "test"}, &c); err != nil {
		t.Fatal(err)
	}
	if c.NewVersion != 3 {
		t.Errorf("rollback wrote version %d, want 3", c.NewVersion)
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		g := in.watcher.Current().Global
		return g.Version == 3 && g.SamplingRate == 0.1
	}, "rollback applied")
	err := microapi.Request(ctx, nc, events.Default.Endpoint("config", "rollback"), configsvc.RollbackRequest{To: 99}, &c)
	if microapi.CodeOf(err) != microapi.CodeNotFound {
		t.Errorf("rollback to a missing version: %v, want 404", err)
	}
}

func TestStatusShowsEveryInstance(t *testing.T) {
	srv := natstest.Run(t)
	startInstance(t, srv.URL(), "a")
	startInstance(t, srv.URL(), "b")
	nc := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st configsvc.StatusReply
	if err := microapi.Request(ctx, nc, events.Default.Endpoint("config", "status"), nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.GlobalVersion != 1 || len(st.Instances) != 2 {
		t.Fatalf("status = %+v, want version 1 and 2 instances", st)
	}
	for _, r := range st.Instances {
		if r.GlobalVersion != 1 {
			t.Errorf("instance %s applied %d", r.Instance, r.GlobalVersion)
		}
	}
}

func TestServiceAndWatchersSurviveNATSRestart(t *testing.T) {
	srv := natstest.Run(t)
	a := startInstance(t, srv.URL(), "a")
	b := startInstance(t, srv.URL(), "b")
	srv.Restart(t)
	nc := srv.Connect(t)
	natstest.Eventually(t, 15*time.Second, func() bool {
		_, err := put(t, nc, fixedFile)
		return err == nil
	}, "config service answers after the restart")
	for _, in := range []*instance{a, b} {
		natstest.Eventually(t, 15*time.Second, func() bool { return in.watcher.Current().Global.SamplingRate == 0.25 }, "watcher applies a change after the restart")
		natstest.Eventually(t, 5*time.Second, func() bool { _, ok := in.ready.Check(); return ok }, "ready again")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
