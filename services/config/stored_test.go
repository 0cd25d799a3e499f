package configsvc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/promtest"
)

// storedVersions reads otelfleet_config_stored_version by key.
func storedVersions(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	return promtest.Values(t, reg, "otelfleet_config_stored_version", "key")
}

// TestStoredVersionFollowsTheVersionInForce: otelfleet_config_stored_version is the
// highest valid version of each key: garbage written straight into the bucket does not
// move it, a good write does, a deleted region leaves it, and an instance started later
// reads the same from the kept history.
func TestStoredVersionFollowsTheVersionInForce(t *testing.T) {
	srv := natstest.Run(t)
	a := startInstance(t, srv.URL(), "a")
	natstest.Eventually(t, 5*time.Second, func() bool { return storedVersions(t, a.reg)["global"] == 1 },
		"stored version of global after the first start: %v, want 1", storedVersions(t, a.reg))

	_, js := srv.JetStream(t)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, events.Default.ConfigBucket())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, events.GlobalConfigKey, []byte(`{"version": 99, "sampling_rate": 7}`)); err != nil {
		t.Fatal(err)
	}
	nc := srv.Connect(t)
	if _, err := put(t, nc, fixedFile+`
regions:
  eu-west-1:
    regional_sampling_rate: 0.5
    buffer_size: 10000
    batch: {max_batch_size: 512, max_wait_time: 200ms}
    retry: {max_retries: 3, initial_backoff: 100ms, max_backoff: 5s}
`); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"global": 2, "region.eu-west-1": 1}
	natstest.Eventually(t, 5*time.Second, func() bool {
		got := storedVersions(t, a.reg)
		return got["global"] == want["global"] && got["region.eu-west-1"] == want["region.eu-west-1"]
	}, "stored versions %v, want %v (garbage version 99 ignored)", storedVersions(t, a.reg), want)

	// A later instance replays the history: the garbage on top of global is not in force.
	if _, err := kv.Put(ctx, events.GlobalConfigKey, []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	b := startInstance(t, srv.URL(), "b")
	natstest.Eventually(t, 5*time.Second, func() bool {
		got := storedVersions(t, b.reg)
		return got["global"] == 2 && got["region.eu-west-1"] == 1
	}, "a later instance reads %v, want %v", storedVersions(t, b.reg), want)

	if err := kv.Delete(ctx, "region.eu-west-1"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		_, had := storedVersions(t, a.reg)["region.eu-west-1"]
		return !had
	}, "a deleted region still has a stored version: %v", storedVersions(t, a.reg))
}

// TestStoredVersionSurvivesAFullHistoryOfGarbage: more invalid values than the key's
// kept history pushes every valid version of global out of it; the version in force is
// then the last good copy (good.global), as for every watcher, and the gauge says so —
// also for an instance started after the garbage.
func TestStoredVersionSurvivesAFullHistoryOfGarbage(t *testing.T) {
	srv := natstest.Run(t)
	a := startInstance(t, srv.URL(), "a")
	natstest.Eventually(t, 5*time.Second, func() bool { return storedVersions(t, a.reg)["global"] == 1 },
		"stored version of global after the first start: %v, want 1", storedVersions(t, a.reg))
	_, js := srv.JetStream(t)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, events.Default.ConfigBucket())
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		_, err := kv.Get(ctx, events.GoodConfigKey(events.GlobalConfigKey))
		return err == nil
	}, "the config service keeps a good copy of global")
	for i := range 70 {
		if _, err := kv.Put(ctx, events.GlobalConfigKey, []byte(fmt.Sprintf("garbage %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	b := startInstance(t, srv.URL(), "b")
	for name, in := range map[string]*instance{"running": a, "started after": b} {
		natstest.Eventually(t, 5*time.Second, func() bool { return storedVersions(t, in.reg)["global"] == 1 },
			"%s instance: stored versions %v, want global 1 from its good copy", name, storedVersions(t, in.reg))
	}
}
