package samplersvc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// TestModule wires the sampler the way its binary does (platform, configwatch, sampler
// modules), checks that it becomes ready, serves the Jaeger API and the micro endpoint,
// leads and stores decisions, and that stopping it resigns the leadership.
func TestModule(t *testing.T) {
	srv := natstest.Run(t)
	s := platform.DefaultSettings("sampler")
	s.NATS.URL, s.AdminAddr, s.LeaseTTL, s.LogLevel, s.LogFormat = srv.URL(), "127.0.0.1:0", time.Second, "error", "text"
	var (
		svc   *Service
		ready *platform.Readiness
	)
	app := fxtest.New(t,
		platform.Options(s), platform.Module(s), configwatch.Module, Module(testConfig()),
		fx.Populate(&svc, &ready),
	)
	app.RequireStart()
	natstest.Eventually(t, 10*time.Second, func() bool { _, ok := ready.Check(); return ok }, "not ready")
	natstest.Eventually(t, 10*time.Second, func() bool {
		d := svc.API().Decision()
		return d != nil && d.Leader == s.Instance
	}, "no decision stored by this instance")
	body := httpGet(t, "http://"+svc.HTTPAddr().String()+"/sampling?service=payment")
	if !strings.Contains(body, `"samplingRate":1`) {
		t.Fatalf("payment: %s", body)
	}
	nc, js := srv.JetStream(t)
	var d events.Decision
	if err := microRequest(nc, &d); err != nil || d.Leader != s.Instance {
		t.Fatalf("micro decision: %v (leader %q)", err, d.Leader)
	}
	app.RequireStop()
	// A clean stop resigns: the lease is gone, not left to expire.
	kv, err := js.KeyValue(context.Background(), events.Default.LeasesBucket())
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(context.Background(), events.ServiceSampler); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease after stop: %v, %v", e, err)
	}
}
