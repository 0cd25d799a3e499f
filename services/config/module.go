package configsvc

import (
	"sync"

	"context"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Bind registers the service's knobs.
func (c *Config) Bind(k *knobs.Set) {
	k.String(&c.InitialFile, "config", "CONFIG_FILE", c.InitialFile, "YAML config file stored on first start when the bucket is empty (default: built-in example values)")
	k.Duration(&c.StatusWait, "status-wait", "CONFIG_STATUS_WAIT", c.StatusWait, "how long otelfleet config status gathers instance reports")
}

// Params are the module's dependencies, all provided by platform.Module.
type Params struct {
	fx.In
	platform.ServiceParams
	Config Config
	JS     jetstream.JetStream
}

// Module runs the config service: once the buckets exist it stores the initial config
// into an empty bucket and starts the otlp-config micro service. Readiness check
// "config-service" passes from then on.
func Module(cfg Config) fx.Option {
	return fx.Module(events.ServiceConfig,
		fx.Supply(cfg),
		fx.Invoke(Start),
	)
}

// Start wires the service into the app's lifecycle.
func Start(p Params) error {
	if err := p.Config.Validate(); err != nil {
		return err
	}
	if err := p.Config.Load(); err != nil { // read the initial file now: a bad one fails the start
		return err
	}
	log := p.Log.With("service", events.ServiceConfig)
	var svc *Service
	initialized := make(chan struct{})
	platform.RunService(p.ServiceParams, platform.ServiceSpec{
		Name:        events.ServiceConfig,
		Description: "otelfleet global and regional configuration",
		Gate:        "config-service",
		Ready:       initialized,
		Run: func(ctx context.Context, b *natsconn.Buckets) error {
			var err error
			store := NewStore(b.Config)
			if p.Tracing.Enabled() {
				store.TraceWrites(p.JS)
			}
			svc, err = New(p.Config, Deps{Store: store, Agents: b.Agents, NC: p.NC, NS: p.NS, Instance: p.Settings.Instance, Log: log, Registerer: p.Reg,
				Tracer: p.Tracing.Tracer(events.ServiceConfig)})
			if err != nil {
				return err
			}
			bo := backoff.NewExponentialBackOff()
			bo.MaxInterval, bo.MaxElapsedTime = 5*time.Second, 0
			if err := backoff.Retry(func() error {
				ictx, icancel := context.WithTimeout(ctx, 10*time.Second)
				defer icancel()
				err := svc.Init(ictx)
				if err != nil && ctx.Err() == nil {
					log.Warn("storing the initial config failed, retrying", "err", err)
				}
				return err
			}, backoff.WithContext(bo, ctx)); err != nil {
				return err
			}
			close(initialized)
			stored, err := newStoredVersions(p.Reg, log)
			if err != nil {
				return err
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				stored.run(ctx, p.NC, b.Config) // until ctx ends
			}()
			svc.WatchGood(ctx) // until ctx ends
			wg.Wait()
			return nil
		},
		Endpoints: func() []platform.Endpoint {
			eps := make([]platform.Endpoint, 0, 12)
			for _, e := range svc.Endpoints() {
				eps = append(eps, platform.Endpoint{Op: e.op, Description: e.description, Handler: microapi.Handler(e.handler)})
			}
			return eps
		},
	})
	return nil
}
