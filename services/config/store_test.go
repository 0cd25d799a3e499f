package configsvc_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	configsvc "github.com/otelfleet/otelfleet/services/config"
)

func storeFixture(t *testing.T) (*configsvc.Store, jetstream.KeyValue) {
	t.Helper()
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	b, err := natsconn.Provision(context.Background(), js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	return configsvc.NewStore(b.Config), b.Config
}

func globalWith(rate float64) fleetconfig.Global {
	g := fleetconfig.Defaults().Global
	g.SamplingRate = rate
	for i := range g.SamplingStrategies {
		if g.SamplingStrategies[i].Type == fleetconfig.StrategyFixed {
			g.SamplingStrategies[i].Rate = &rate
		}
	}
	return g
}

// TestVersionsOnlyGoUpOverHandWrittenValues writes values straight into the bucket
// between config sets: one without a version, one with the highest uint64, one with a
// low version. Every set gets a version above all versions before it, never twice the
// same, and the absurd version does not make it wrap.
func TestVersionsOnlyGoUpOverHandWrittenValues(t *testing.T) {
	st, kv := storeFixture(t)
	ctx := context.Background()
	raw := func(g fleetconfig.Global) {
		t.Helper()
		data, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, events.GlobalConfigKey, data); err != nil {
			t.Fatal(err)
		}
	}
	var last uint64
	set := func(rate float64) {
		t.Helper()
		c, err := st.PutGlobal(ctx, globalWith(rate), "test", nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.NewVersion <= last {
			t.Fatalf("config set wrote version %d after %d", c.NewVersion, last)
		}
		last = c.NewVersion
	}
	set(0.1)
	set(0.2) // v2
	noVersion := globalWith(0.9)
	raw(noVersion)
	set(0.3)
	if last != 3 {
		t.Fatalf("after a value without a version: v%d, want v3", last)
	}
	huge := globalWith(0.8)
	huge.Version = math.MaxUint64
	raw(huge)
	set(0.4)
	if last != 4 {
		t.Fatalf("after version 2^64-1: v%d, want v4 (the absurd version is ignored)", last)
	}
	low := globalWith(0.7)
	low.Version = 1
	raw(low) // valid, but below the highest: the next set still goes above 4
	set(0.5)
	if last != 5 {
		t.Fatalf("after a hand-written v1: v%d, want v5", last)
	}
	hist, err := st.History(ctx, events.GlobalConfigKey)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, h := range hist {
		if h.Valid && h.UpdatedBy == "test" {
			if seen[h.Version] {
				t.Fatalf("version %d stored twice by the store: %+v", h.Version, hist)
			}
			seen[h.Version] = true
		}
		if h.Version > fleetconfig.MaxVersion {
			t.Fatalf("history shows version %d as valid", h.Version)
		}
	}
	g, _, err := st.Global(ctx)
	if err != nil || g.Version != 5 {
		t.Fatalf("in force: v%d, %v; want v5", g.Version, err)
	}
}

// TestSizeLimits refuses a document over fleetconfig.MaxDocumentBytes and a writer name
// over fleetconfig.MaxUpdatedByLen, naming the limit; nothing is written.
func TestSizeLimits(t *testing.T) {
	st, _ := storeFixture(t)
	ctx := context.Background()
	if _, err := st.PutGlobal(ctx, globalWith(0.1), "test", nil); err != nil {
		t.Fatal(err)
	}
	big := globalWith(0.2)
	big.Metadata = map[string]string{}
	for i := range 900 {
		big.Metadata["key-"+strconv.Itoa(i)] = strings.Repeat("v", 1000)
	}
	_, err := st.PutGlobal(ctx, big, "test", nil)
	if !errors.Is(err, fleetconfig.ErrInvalid) || !strings.Contains(err.Error(), "limit is 262144") {
		t.Fatalf("900 KB config: %v, want an invalid-config error naming the limit", err)
	}
	_, err = st.PutGlobal(ctx, globalWith(0.3), strings.Repeat("b", 500_000), nil)
	if !errors.Is(err, fleetconfig.ErrInvalid) || !strings.Contains(err.Error(), "limit is 256") {
		t.Fatalf("500,000-character by: %v, want an invalid-config error naming the limit", err)
	}
	g, _, err := st.Global(ctx)
	if err != nil || g.Version != 1 {
		t.Fatalf("in force after refusals: v%d, %v; want v1", g.Version, err)
	}
}

// TestConfigSetOfA900KBFileIsRefusedWithTheLimit sends a 900 KB config through the
// service, as `otelfleet config set` does: a 400 naming the limit, nothing stored.
func TestConfigSetOfA900KBFileIsRefusedWithTheLimit(t *testing.T) {
	srv := natstest.Run(t)
	in := startInstance(t, srv.URL(), "a")
	nc := srv.Connect(t)
	var b strings.Builder
	b.WriteString(fixedFile + "  metadata:\n")
	for i := 0; b.Len() < 900<<10; i++ {
		b.WriteString("    key-" + strconv.Itoa(i) + ": " + strings.Repeat("v", 1000) + "\n")
	}
	_, err := put(t, nc, b.String())
	var me *microapi.Error
	if !errors.As(err, &me) || me.Code != microapi.CodeBadRequest || !strings.Contains(me.Message, "limit is 262144") {
		t.Fatalf("put of a 900 KB file: %v, want a 400 naming the limit", err)
	}
	if v := in.watcher.Current().Global.Version; v != 1 {
		t.Errorf("version in force = %d after a refused put, want 1", v)
	}
}
