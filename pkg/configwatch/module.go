package configwatch

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Module provides one *Watcher per process, started with the app once the contract's
// buckets exist, and a "config" readiness check that passes after its first load. Every
// service in the process shares it, so a process reports one applied version.
var Module = fx.Module("configwatch", fx.Provide(provide), fx.Invoke(func(*Watcher) {}))

type params struct {
	fx.In
	platform.Life
	Settings  platform.Settings
	NC        *nats.Conn
	NS        events.Namespace
	Readiness *platform.Readiness
	Reg       prometheus.Registerer
	Tracing   *platform.Tracing
}

func provide(p params) (*Watcher, error) {
	// The watcher needs the bucket, which exists only once the contract is provisioned;
	// the watcher object is created now so services can register listeners.
	opts := Options{
		Service: p.Settings.Process, Instance: p.Settings.Instance, Namespace: p.NS,
		Log: p.Log.With("component", "configwatch"), Registerer: p.Reg,
	}
	if p.Tracing.Enabled() {
		opts.Tracer = p.Tracing.Tracer(p.Settings.Process)
	}
	w, err := New(p.NC, nil, opts)
	if err != nil {
		return nil, err
	}
	p.Readiness.Add("config", func() error {
		if !w.Ready() {
			return errNotLoaded
		}
		return nil
	})
	platform.Start(p.Life, platform.Component{
		Name: "configwatch",
		Run: func(_ context.Context, b *natsconn.Buckets) error {
			w.kv = b.Config
			return w.Start()
		},
		Stop: func(context.Context) error { w.Stop(); return nil },
	})
	return w, nil
}
