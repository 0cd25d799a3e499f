package opampsvc

import (
	"context"

	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/services/opamp/internal/rollout"
)

// Params are the module's dependencies, all provided by platform.Module.
type Params struct {
	fx.In
	platform.ServiceParams
	Config Config
}

// Result is what the module provides.
type Result struct {
	fx.Out
	Service *Service
}

// Module runs the OpAMP service: once the contract's buckets exist it listens on
// Config.Addr (/v1/opamp, /v1/metrics), watches the desired configs, serves the
// otlp-opamp micro service and campaigns for role "opamp" (the rollout controller's
// leader). Readiness check "opamp" passes once it listens and the desired configs are
// loaded. It runs the same standalone (otelfleet-opamp) and inside `otelfleet dev`.
func Module(cfg Config) fx.Option {
	return fx.Module(events.ServiceOpAMP,
		fx.Supply(cfg),
		fx.Provide(Provide),
		fx.Invoke(func(*Service) {}),
	)
}

// Provide builds the service and ties it to the app's lifecycle.
func Provide(p Params) (Result, error) {
	log := p.Log.With("service", events.ServiceOpAMP)
	ctrl, err := rollout.New(p.Config.Rollout, p.NC, p.NS, p.Settings.Instance, log.With("component", "rollout"), p.Reg)
	if err != nil {
		return Result{}, err
	}
	ctrl.Trace(p.Tracing.Tracer(events.ServiceOpAMP))
	svc, err := New(p.Config, Deps{
		NC: p.NC, NS: p.NS, Instance: p.Settings.Instance, Region: p.Settings.Region,
		Log: log, Registerer: p.Reg,
		// The leader runs the rollout controller for its term.
		Leader: func(t election.Term) {
			b, err := p.Contract.Buckets(t.Ctx)
			if err != nil {
				return
			}
			if err := ctrl.Run(t.Ctx, b, t.Token); err != nil && t.Ctx.Err() == nil {
				log.Error("rollout controller stopped for this term", "err", err)
			}
		},
	})
	if err != nil {
		return Result{}, err
	}
	platform.RunService(p.ServiceParams, platform.ServiceSpec{
		Name:        events.ServiceOpAMP,
		Description: "otelfleet OpAMP server: agent states",
		Ready:       svc.Ready(),
		Run:         func(ctx context.Context, b *natsconn.Buckets) error { return svc.Run(ctx, b) },
		Endpoints:   svc.Endpoints,
		Lead:        svc.Lead,
	})
	return Result{Service: svc}, nil
}
