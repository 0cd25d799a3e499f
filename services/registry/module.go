package registrysvc

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Params are the module's dependencies, all provided by platform.Module.
type Params struct {
	fx.In
	platform.ServiceParams
	Config Config
	JS     jetstream.JetStream
}

// Result is what the module provides.
type Result struct {
	fx.Out
	Service *Service
}

// Module runs the registry service: once the contract's buckets exist it watches the
// registry bucket; after the first full load it serves the otlp-registry micro service
// and readiness check "registry" passes. It runs the same standalone
// (otelfleet-registry) and inside `otelfleet dev`.
func Module(cfg Config) fx.Option {
	return fx.Module(events.ServiceRegistry,
		fx.Supply(cfg),
		fx.Provide(Provide),
		fx.Invoke(func(*Service) {}),
	)
}

// Provide builds the service and ties it to the app's lifecycle.
func Provide(p Params) (Result, error) {
	svc, err := New(p.Config, Deps{
		NC: p.NC, Publisher: p.JS, NS: p.NS, Instance: p.Settings.Instance,
		Log: p.Log.With("service", events.ServiceRegistry), Registerer: p.Reg,
	})
	if err != nil {
		return Result{}, err
	}
	platform.RunService(p.ServiceParams, platform.ServiceSpec{
		Name:        events.ServiceRegistry,
		Description: "otelfleet registrations: list and get",
		Ready:       svc.Loaded(),
		Run:         func(ctx context.Context, b *natsconn.Buckets) error { return svc.Run(ctx, b.Registry) },
		Endpoints:   svc.Endpoints,
	})
	return Result{Service: svc}, nil
}
