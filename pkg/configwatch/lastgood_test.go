package configwatch_test

import (
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// badValue is schema-valid JSON without a version: what anyone with write rights on the
// bucket can put.
func badValue(i int) fleetconfig.Global {
	g := fleetconfig.Defaults().Global
	g.SamplingRate = float64(i%100) / 100
	return g
}

// TestLastGoodSurvivesAnyNumberOfBadWrites: 300 invalid values written over global and
// region.eu push every valid version out of the 64-deep history; a watcher started
// afterwards applies the last good copies the config service keeps (good.global,
// good.region.eu), not the built-in defaults, and goes on to apply a newer version.
func TestLastGoodSurvivesAnyNumberOfBadWrites(t *testing.T) {
	eu := fleetconfig.DefaultRegion()
	eu.Version, eu.RegionalSamplingRate = 4, 0.5
	f := start(t, func(f *fixture) {
		f.put(t, "global", global(1, 0.1))
		f.put(t, "global", global(2, 0.2))
		f.put(t, events.GoodConfigKey("global"), global(2, 0.2))
		f.put(t, "region.eu", eu)
		f.put(t, events.GoodConfigKey("region.eu"), eu)
		for i := range 300 {
			f.put(t, "global", badValue(i))
			f.put(t, "region.eu", []byte("{not json"))
		}
	})
	snap := f.w.Current()
	if g := snap.Global; g.Version != 2 || g.SamplingRate != 0.2 {
		t.Fatalf("in force after 300 bad writes: version %d rate %v, want the last good 2 / 0.2", g.Version, g.SamplingRate)
	}
	if r, ok := snap.Regions["eu"]; !ok || r.Version != 4 {
		t.Fatalf("region eu in force: %+v (%v), want the last good version 4", r, ok)
	}
	if r := f.w.Report(); r.GlobalVersion != 2 {
		t.Fatalf("report %+v", r)
	}
	f.put(t, "global", global(3, 0.3))
	natstest.Eventually(t, 5*time.Second, func() bool { return f.w.Current().Global.Version == 3 }, "a newer good version applied")
}

// TestBadWritesCostOneHistoryReadPerKeyPerReplay: with nothing good anywhere (the
// watcher runs on the defaults), 100 more invalid values cost no further read of the
// key's history: at most one per key per replay.
func TestBadWritesCostOneHistoryReadPerKeyPerReplay(t *testing.T) {
	f := start(t, func(f *fixture) { f.put(t, "global", badValue(0)) })
	if v := f.w.Current().Global.Version; v != 0 {
		t.Fatalf("version %d in force, want the defaults", v)
	}
	before := f.w.Report().Rejected
	for i := range 100 {
		f.put(t, "global", badValue(i+1))
	}
	natstest.Eventually(t, 5*time.Second, func() bool { return f.w.Report().Rejected == before+100 }, "every bad value refused")
	if n := f.hist.Reads("global"); n > 1 {
		t.Fatalf("%d reads of the history of global for one replay and 101 refused values, want at most 1", n)
	}
}
