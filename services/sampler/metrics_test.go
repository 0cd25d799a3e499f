package samplersvc

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/promtest"
)

// TestDecisionAgeMoves: a replica's otelfleet_sampler_decision_age_seconds counts from
// its start until a decision is stored, then from the stored decision's computation
// time, and drops when a newer decision arrives; the interval is exported beside it.
func TestDecisionAgeMoves(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	now := start
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.Interval = 7 * time.Second
	svc, err := New(cfg, Deps{NC: f.nc, JS: f.js, Instance: "age", Config: f.cfg, Registerer: reg, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := natsconn.OpenBuckets(ctx, f.js, events.Default)
	if err != nil {
		t.Fatal(err)
	}
	svc.Start(b)
	defer svc.Stop()

	read := func(name string) float64 {
		t.Helper()
		v := promtest.Values(t, reg, name, "")
		if len(v) != 1 {
			t.Fatalf("%s: %v, want one series", name, v)
		}
		return v[""]
	}
	if got := read("otelfleet_sampler_interval_seconds"); got != 7 {
		t.Fatalf("otelfleet_sampler_interval_seconds = %v, want 7", got)
	}
	advance(40 * time.Second)
	if got := read("otelfleet_sampler_decision_age_seconds"); got != 40 {
		t.Fatalf("age with no decision stored = %v, want 40 (since start)", got)
	}

	put := func(version uint64, at time.Time) {
		t.Helper()
		d := dec(version)
		d.Version, d.At = version, at
		data, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.b.Sampling.Put(ctx, events.DecisionKey, data); err != nil {
			t.Fatal(err)
		}
	}
	put(1, clock().Add(-25*time.Second))
	natstest.Eventually(t, 5*time.Second, func() bool { return read("otelfleet_sampler_decision_age_seconds") == 25 },
		"age of a decision computed 25s ago is %v, want 25", read("otelfleet_sampler_decision_age_seconds"))
	advance(10 * time.Second)
	if got := read("otelfleet_sampler_decision_age_seconds"); got != 35 {
		t.Fatalf("age 10s later = %v, want 35", got)
	}
	put(2, clock().Add(-2*time.Second))
	natstest.Eventually(t, 5*time.Second, func() bool { return read("otelfleet_sampler_decision_age_seconds") == 2 },
		"age after a fresh decision is %v, want 2", read("otelfleet_sampler_decision_age_seconds"))
	// A decision dated ahead of this replica's clock reads as fresh, not negative.
	put(3, clock().Add(time.Minute))
	natstest.Eventually(t, 5*time.Second, func() bool { return read("otelfleet_sampler_decision_age_seconds") == 0 },
		"age of a decision dated ahead is %v, want 0", read("otelfleet_sampler_decision_age_seconds"))
}
