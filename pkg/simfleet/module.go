package simfleet

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Params are what Module needs from platform.Module.
type Params struct {
	fx.In
	platform.Life
	Settings platform.Settings
	NC       *nats.Conn
	NS       events.Namespace
	Reg      prometheus.Registerer `optional:"true"`
}

// Module runs a simulated fleet of cfg inside an app built on platform.Module, sharing
// its NATS connection: once the contract's buckets exist it registers the collectors and
// publishes their load; on stop it deregisters them. It provides nothing. A failure to
// start is logged, not fatal to the app (the simulator is a demo aid).
func Module(cfg Config) fx.Option {
	return fx.Module("simfleet", fx.Invoke(func(p Params) error { return start(p, cfg) }))
}

func start(p Params, cfg Config) error {
	log := p.Log.With("component", "simfleet")
	sim, err := New(p.NC, p.NS, nil, cfg, log, p.Reg, WithSource(events.Source("simulate", p.Settings.Instance)))
	if err != nil {
		return err
	}
	platform.Start(p.Life, platform.Component{
		Name: "simfleet",
		Run: func(ctx context.Context, b *natsconn.Buckets) error {
			sim.registry = b.Registry
			if err := sim.Start(ctx); err != nil {
				return fmt.Errorf("simulated fleet did not start: %w", err)
			}
			return nil
		},
		Stop: func(ctx context.Context) error {
			if err := sim.Stop(ctx); err != nil {
				log.Warn("simulated collectors not all deregistered; they will expire", "err", err)
			}
			return nil
		},
	})
	return nil
}
