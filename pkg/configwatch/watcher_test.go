package configwatch_test

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	srv *natstest.Server
	kv  jetstream.KeyValue
	// hist is kv, counting the reads of each key's history.
	hist *natstest.HistoryCounter
	w    *configwatch.Watcher
	reg  *prometheus.Registry

	mu    sync.Mutex
	snaps []configwatch.Snapshot
}

func (f *fixture) seen() []configwatch.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]configwatch.Snapshot(nil), f.snaps...)
}

func (f *fixture) put(t *testing.T, key string, v any) {
	t.Helper()
	data, ok := v.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.kv.Put(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
}

func start(t *testing.T, seed func(f *fixture)) *fixture {
	t.Helper()
	f := &fixture{srv: natstest.Run(t), reg: prometheus.NewRegistry()}
	nc, js := f.srv.JetStream(t)
	b, err := natsconn.Provision(context.Background(), js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	f.hist = natstest.CountHistory(b.Config)
	f.kv = f.hist
	if seed != nil {
		seed(f)
	}
	f.w, err = configwatch.New(nc, f.kv, configwatch.Options{Service: "test", Instance: "i1", Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	f.w.OnChange(func(s configwatch.Snapshot) {
		f.mu.Lock()
		f.snaps = append(f.snaps, s)
		f.mu.Unlock()
	})
	if err := f.w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.w.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.w.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

func global(version uint64, rate float64) fleetconfig.Global {
	g := fleetconfig.Defaults().Global
	g.Version, g.SamplingRate = version, rate
	return g
}

func TestEmptyBucketHandsOverDefaultsAtOnce(t *testing.T) {
	f := start(t, nil)
	snaps := f.seen()
	if len(snaps) != 1 || snaps[0].Global.Version != 0 || snaps[0].Global.SamplingRate != fleetconfig.Defaults().Global.SamplingRate {
		t.Fatalf("first snapshots = %+v, want the defaults as version 0", snaps)
	}
}

func TestAppliesValidVersionsInOrderAndKeepsLastGoodOnGarbage(t *testing.T) {
	f := start(t, func(f *fixture) { f.put(t, "global", global(1, 0.1)) })
	if got := f.w.Current().Global.Version; got != 1 {
		t.Fatalf("version after first load = %d", got)
	}
	f.put(t, "global", global(2, 0.2))
	natstest.Eventually(t, 5*time.Second, func() bool { return f.w.Current().Global.Version == 2 }, "version 2 applied")

	f.put(t, "global", []byte(`{"sampling_rate": 9}`)) // decodes, fails validation
	f.put(t, "global", []byte("garbage"))
	natstest.Eventually(t, 5*time.Second, func() bool { return f.w.Report().Rejected == 2 }, "both bad values rejected")
	if g := f.w.Current().Global; g.Version != 2 || g.SamplingRate != 0.2 {
		t.Errorf("in force after garbage: version %d rate %v, want 2 / 0.2", g.Version, g.SamplingRate)
	}
	if got := rejected(t, f.reg, "global"); got != 2 {
		t.Errorf("otelfleet_config_rejected_total{key=global} = %v, want 2", got)
	}
	if r := f.w.Report(); r.LastError == "" || r.GlobalVersion != 2 {
		t.Errorf("report = %+v", r)
	}
	versions := []uint64{}
	for _, s := range f.seen() {
		versions = append(versions, s.Global.Version)
	}
	if len(versions) != 2 || versions[0] != 1 || versions[1] != 2 {
		t.Errorf("listener saw versions %v, want [1 2]", versions)
	}
}

func TestRegionsAddedChangedAndDeleted(t *testing.T) {
	f := start(t, nil)
	r := fleetconfig.DefaultRegion()
	r.Version, r.RegionalSamplingRate = 1, 0.5
	f.put(t, "region.eu-west-1", r)
	natstest.Eventually(t, 5*time.Second, func() bool { return f.w.Current().Region("eu-west-1").RegionalSamplingRate == 0.5 }, "region applied")
	if got := f.w.Current().Region("nowhere"); got.RegionalSamplingRate != fleetconfig.DefaultRegion().RegionalSamplingRate {
		t.Errorf("a region without overrides = %+v, want the defaults", got)
	}
	f.put(t, "region.eu-west-1", []byte(`{"regional_sampling_rate": -1}`))
	natstest.Eventually(t, 5*time.Second, func() bool { return rejected(t, f.reg, "region.eu-west-1") == 1 }, "bad region rejected")
	if got := f.w.Current().Region("eu-west-1").RegionalSamplingRate; got != 0.5 {
		t.Errorf("bad region replaced the good one: %v", got)
	}
	if err := f.kv.Delete(context.Background(), "region.eu-west-1"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool { _, ok := f.w.Current().Regions["eu-west-1"]; return !ok }, "deleted region dropped")
}

func TestAnswersConfigReports(t *testing.T) {
	f := start(t, func(f *fixture) { f.put(t, "global", global(3, 0.3)) })
	nc := f.srv.Connect(t)
	msg, err := nc.Request(events.Default.ConfigReportSubject(), nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r events.ConfigReport
	if err := events.Decode(msg.Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Service != "test" || r.Instance != "i1" || r.GlobalVersion != 3 {
		t.Errorf("report = %+v", r)
	}
}

func rejected(t *testing.T, reg *prometheus.Registry, key string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "otelfleet_config_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "key" && l.GetValue() == key {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestVersionsNeverGoBack writes values straight into the bucket: a schema-valid config
// with no version, a lower version, the version in force with other content and an
// absurd version are refused, and the version in force stays; a higher version applies.
func TestVersionsNeverGoBack(t *testing.T) {
	f := start(t, func(f *fixture) { f.put(t, "global", global(2, 0.2)) })
	noVersion := fleetconfig.Defaults().Global
	noVersion.SamplingRate = 0.9
	bad := []any{noVersion, global(1, 0.1), global(2, 0.3), global(math.MaxUint64, 0.4), global(fleetconfig.MaxVersion+1, 0.4)}
	for _, v := range bad {
		f.put(t, "global", v)
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return f.w.Report().Rejected == uint64(len(bad)) }, "every bad value refused")
	if g := f.w.Current().Global; g.Version != 2 || g.SamplingRate != 0.2 {
		t.Fatalf("in force: version %d rate %v, want 2 / 0.2", g.Version, g.SamplingRate)
	}
	f.put(t, "global", global(2, 0.2)) // the version in force again: no change, no rejection
	f.put(t, "global", global(3, 0.3))
	natstest.Eventually(t, 5*time.Second, func() bool { return f.w.Current().Global.Version == 3 }, "version 3 applied")
	if r := f.w.Report().Rejected; r != uint64(len(bad)) {
		t.Errorf("rejected %d, want %d (the version in force rewritten unchanged is no rejection)", r, len(bad))
	}
	for _, s := range f.seen() {
		if s.Global.Version != 2 && s.Global.Version != 3 {
			t.Errorf("a listener saw version %d", s.Global.Version)
		}
	}

	r := fleetconfig.DefaultRegion()
	r.Version, r.RegionalSamplingRate = 5, 0.5
	f.put(t, "region.eu", r)
	natstest.Eventually(t, 5*time.Second, func() bool { return f.w.Current().Region("eu").Version == 5 }, "region applied")
	r.Version, r.RegionalSamplingRate = 4, 0.1
	f.put(t, "region.eu", r)
	natstest.Eventually(t, 5*time.Second, func() bool { return rejected(t, f.reg, "region.eu") == 1 }, "lower regional version refused")
	if got := f.w.Current().Region("eu"); got.Version != 5 || got.RegionalSamplingRate != 0.5 {
		t.Errorf("region in force %d / %v, want 5 / 0.5", got.Version, got.RegionalSamplingRate)
	}
}

// TestStartsFromTheNewestGoodValue starts a watcher over a bucket whose newest global
// value is refused: it applies the newest good one of the history, not the defaults.
func TestStartsFromTheNewestGoodValue(t *testing.T) {
	noVersion := fleetconfig.Defaults().Global
	noVersion.SamplingRate = 0.9
	f := start(t, func(f *fixture) {
		f.put(t, "global", global(1, 0.1))
		f.put(t, "global", global(2, 0.2))
		f.put(t, "global", noVersion)
	})
	if g := f.w.Current().Global; g.Version != 2 || g.SamplingRate != 0.2 {
		t.Fatalf("in force at start: version %d rate %v, want 2 / 0.2", g.Version, g.SamplingRate)
	}
}

// TestRefusesOversizedValues puts a document over fleetconfig.MaxDocumentBytes and one
// whose updated_by is over fleetconfig.MaxUpdatedByLen.
func TestRefusesOversizedValues(t *testing.T) {
	f := start(t, func(f *fixture) { f.put(t, "global", global(1, 0.1)) })
	big := global(2, 0.2)
	big.Metadata = map[string]string{"pad": strings.Repeat("x", fleetconfig.MaxDocumentBytes)}
	longBy := global(3, 0.3)
	longBy.UpdatedBy = strings.Repeat("b", 500_000)
	f.put(t, "global", big)
	f.put(t, "global", longBy)
	natstest.Eventually(t, 5*time.Second, func() bool { return f.w.Report().Rejected == 2 }, "both refused")
	if r := f.w.Report(); r.GlobalVersion != 1 || !strings.Contains(r.LastError, "limit") {
		t.Fatalf("report %+v", r)
	}
}
