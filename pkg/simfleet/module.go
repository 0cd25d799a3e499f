package simfleet

import (
	"context"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Params are what Module needs from platform.Module.
type Params struct {
	fx.In
	LC       fx.Lifecycle
	Settings platform.Settings
	NC       *nats.Conn
	NS       events.Namespace
	Contract *platform.Contract
	Log      *slog.Logger
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
	sim, err := New(p.NC, p.NS, nil, cfg, log, p.Reg, WithSource("otelfleet/simulate/"+p.Settings.Instance))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	p.LC.Append(fx.Hook{
		OnStart: func(context.Context) error {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := p.Contract.Buckets(ctx)
				if err != nil {
					return // stopped before NATS was ready
				}
				sim.registry = b.Registry
				if err := sim.Start(ctx); err != nil && ctx.Err() == nil {
					log.Error("simulated fleet did not start", "err", err)
				}
			}()
			return nil
		},
		OnStop: func(stopCtx context.Context) error {
			cancel()
			wg.Wait()
			if err := sim.Stop(stopCtx); err != nil {
				log.Warn("simulated collectors not all deregistered; they will expire", "err", err)
			}
			return nil
		},
	})
	return nil
}
