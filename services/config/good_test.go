package configsvc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	configsvc "github.com/otelfleet/otelfleet/services/config"
)

// TestStoreFallsBackToTheLastGoodCopy: 300 invalid values written straight over global
// and region.eu push every valid version out of the kept history; the store still
// answers the last good versions (config get), and the next set gets a version above
// them, never one that was used before.
func TestStoreFallsBackToTheLastGoodCopy(t *testing.T) {
	st, kv := storeFixture(t)
	ctx := context.Background()
	for _, rate := range []float64{0.1, 0.2} {
		if _, err := st.PutGlobal(ctx, globalWith(rate), "test", nil); err != nil {
			t.Fatal(err)
		}
	}
	eu := fleetconfig.DefaultRegion()
	eu.RegionalSamplingRate = 0.5
	if _, err := st.PutRegion(ctx, "eu", eu, "test", nil); err != nil {
		t.Fatal(err)
	}
	for range 300 {
		if _, err := kv.Put(ctx, events.GlobalConfigKey, []byte(`{"sampling_rate": 0.3}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "region.eu", []byte("{not json")); err != nil {
			t.Fatal(err)
		}
	}
	g, warn, err := st.Global(ctx)
	if err != nil {
		t.Fatalf("global after 300 bad writes: %v", err)
	}
	if g.Version != 2 || g.SamplingRate != 0.2 || warn == nil {
		t.Fatalf("global in force: version %d rate %v warning %v; want the last good 2 / 0.2 and a warning", g.Version, g.SamplingRate, warn)
	}
	regions, warns, err := st.Regions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := regions["eu"]; !ok || r.Version != 1 || r.RegionalSamplingRate != 0.5 || len(regions) != 1 || len(warns) != 1 {
		t.Fatalf("regions %+v, warnings %d: want eu at its last good version 1 (and no other key listed)", regions, len(warns))
	}
	hist, err := st.History(ctx, events.GlobalConfigKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if h.Valid {
			t.Fatalf("history still holds a valid version (%d): the test did not erase it", h.Version)
		}
	}
	c, err := st.PutGlobal(ctx, globalWith(0.4), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.OldVersion != 2 || c.NewVersion != 3 {
		t.Fatalf("set after the bad writes: %d → %d, want 2 → 3", c.OldVersion, c.NewVersion)
	}
}

// TestLastGoodSurvivesBadWritesAndRestarts: a valid version written straight into the
// bucket (not through the service) is kept by the service's watch too; 300 invalid
// values over it and a restart of the service and its watcher leave that version in
// force, reported in sync.
func TestLastGoodSurvivesBadWritesAndRestarts(t *testing.T) {
	srv := natstest.Run(t)
	a := startInstance(t, srv.URL(), "a")
	_, js := srv.JetStream(t)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, events.Default.ConfigBucket())
	if err != nil {
		t.Fatal(err)
	}
	direct := globalWith(0.3)
	direct.Version, direct.UpdatedBy = 7, "by hand"
	data, _ := json.Marshal(direct)
	if _, err := kv.Put(ctx, events.GlobalConfigKey, data); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		e, err := kv.Get(ctx, events.GoodConfigKey(events.GlobalConfigKey))
		if err != nil {
			return false
		}
		g, err := fleetconfig.DecodeStoredGlobal("global", e.Value())
		return err == nil && g.Version == 7
	}, "the service keeps version 7 as the last good copy")
	for i := range 300 {
		if _, err := kv.Put(ctx, events.GlobalConfigKey, []byte(fmt.Sprintf(`{"sampling_rate": 0.9, "n": %d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return a.watcher.Report().Rejected >= 300 }, "the running watcher refuses them")
	a.app.RequireStop()

	b := startInstance(t, srv.URL(), "b")
	if g := b.watcher.Current().Global; g.Version != 7 || g.SamplingRate != 0.3 {
		t.Fatalf("restarted watcher runs version %d rate %v, want the last good 7 / 0.3", g.Version, g.SamplingRate)
	}
	g, _, err := configsvc.NewStore(kv).Global(ctx)
	if err != nil || g.Version != 7 {
		t.Fatalf("config get after restart: version %d, %v", g.Version, err)
	}
	nc := srv.Connect(t)
	rep, err := put(t, nc, fixedFile)
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Changes[0]; c.OldVersion != 7 || c.NewVersion != 8 {
		t.Fatalf("set after restart: %d → %d, want 7 → 8", c.OldVersion, c.NewVersion)
	}
}

// TestInSyncNeverOnDefaults: an instance on the built-in defaults (version 0) is never
// shown in sync, whatever the store holds.
func TestInSyncNeverOnDefaults(t *testing.T) {
	cases := map[string]struct {
		stored, applied uint64
		want            bool
	}{
		"same version":                  {3, 3, true},
		"behind":                        {3, 2, false},
		"defaults over a stored config": {3, 0, false},
		"defaults, nothing valid":       {0, 0, false},
	}
	for name, c := range cases {
		rep := configsvc.StatusReply{GlobalVersion: c.stored}
		if got := rep.InSync(events.ConfigReport{GlobalVersion: c.applied}); got != c.want {
			t.Errorf("%s: in sync %v, want %v", name, got, c.want)
		}
	}
}
