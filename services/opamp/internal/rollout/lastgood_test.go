package rollout_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// countHistoryReads makes the controllers f.run starts read the config bucket through a
// counter.
func (f *fleet) countHistoryReads() *natstest.HistoryCounter {
	c := natstest.CountHistory(f.b.Config)
	b := *f.b
	b.Config = c
	f.b = &b
	return c
}

func (f *fleet) putRaw(key string, data []byte) {
	f.t.Helper()
	if _, err := f.b.Config.Put(context.Background(), key, data); err != nil {
		f.t.Fatal(err)
	}
}

// TestRefusedDocumentsCostOneHistoryReadPerReplay: with no good document anywhere, 100
// refused values of collector.g cost the leader at most one read of the key's history.
func TestRefusedDocumentsCostOneHistoryReadPerReplay(t *testing.T) {
	f := newFleet(t)
	f.addAgents(3, "eu")
	reads := f.countHistoryReads()
	f.putRaw("collector.g", []byte(`{"version":50,"config":"::"}`))
	f.run(1)
	for range 100 {
		f.putRaw("collector.g", []byte(`{"version":50,"config":"::"}`))
	}
	// A good version after them: once it rolls out, every refused value was handled.
	f.putDoc("g", fleetconfig.CollectorConfig{Config: collectorYAML("basic", "10"), Rollout: policy()})
	f.waitPhase("g", events.RolloutCompleted, 1)
	if n := reads.Reads("collector.g"); n > 1 {
		t.Fatalf("%d history reads of collector.g for 101 refused values in one replay, want at most 1", n)
	}
}

// TestStartsFromTheLastGoodCopy: refused values pushed every valid version of
// collector.g out of its history; the leader rolls out the config service's last good
// copy (good.collector.g).
func TestStartsFromTheLastGoodCopy(t *testing.T) {
	f := newFleet(t)
	f.addAgents(3, "eu")
	doc := fleetconfig.CollectorConfig{Config: collectorYAML("basic", "10"), Rollout: policy(), Version: 3, UpdatedBy: "test"}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	f.putRaw("collector.g", data)
	f.putRaw(events.GoodConfigKey("collector.g"), data)
	for range 100 {
		f.putRaw("collector.g", []byte(`{"version":50,"config":"::"}`))
	}
	f.run(1)
	f.waitPhase("g", events.RolloutCompleted, 3)
}
