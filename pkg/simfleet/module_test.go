package simfleet

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// TestModule runs the simulator in an fx app the way `otelfleet dev` does: it shares
// the app's connection, registers once the buckets exist, and deregisters on stop.
func TestModule(t *testing.T) {
	srv := natstest.Run(t)
	s := platform.DefaultSettings("simtest")
	s.Instance, s.AdminAddr, s.NATS.URL = "i1", "127.0.0.1:0", srv.URL()
	cfg := DefaultConfig()
	cfg.Regions, cfg.Collectors, cfg.Interval = 1, 2, 100*time.Millisecond
	var contract *platform.Contract
	app := fxtest.New(t,
		platform.Module(s),
		fx.Decorate(func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }),
		Module(cfg),
		fx.Populate(&contract),
		fx.NopLogger,
	)
	watcher := srv.Connect(t)
	sub, err := watcher.SubscribeSync(events.Default.LoadSubjects())
	if err != nil {
		t.Fatal(err)
	}
	app.RequireStart()
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no simulated load report: %v", err)
	}
	r, err := loadreport.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Region != "us-east-1" || msg.Header.Get(events.HeaderSource) != "otelfleet/simulate/i1" {
		t.Fatalf("report %+v from %q", r, msg.Header.Get(events.HeaderSource))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := contract.Buckets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		_, err := b.Registry.Get(ctx, "collector.us-east-1.sim-us-east-1-2")
		return err == nil
	}, "simulated collector not registered")
	app.RequireStop()
	// The app's connection is closed now; check the bucket on our own.
	_, js := srv.JetStream(t)
	kv, err := js.KeyValue(ctx, events.Default.RegistryBucket())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "collector.us-east-1.sim-us-east-1-2"); err == nil {
		t.Fatal("simulated collector still registered after stop")
	}
}
