package registrysvc

import (
	"context"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Params are the module's dependencies, all provided by platform.Module.
type Params struct {
	fx.In
	LC        fx.Lifecycle
	Config    Config
	Settings  platform.Settings
	NC        *nats.Conn
	JS        jetstream.JetStream
	NS        events.Namespace
	Contract  *platform.Contract
	Readiness *platform.Readiness
	Log       *slog.Logger
	Reg       prometheus.Registerer
}

// Result is what the module provides.
type Result struct {
	fx.Out
	Service *Service
}

// Module runs the registry service: once the contract's buckets exist it starts the
// otlp-registry micro service and watches the registry bucket; readiness check
// "registry" passes after the first full load. It runs the same standalone
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
	log := p.Log.With("service", events.ServiceRegistry)
	svc, err := New(p.Config, p.NC, p.JS, p.NS, p.Settings.Instance, log, p.Reg)
	if err != nil {
		return Result{}, err
	}
	gate := p.Readiness.Gate("registry")
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		running micro.Service
	)
	p.LC.Append(fx.Hook{
		OnStart: func(context.Context) error {
			wg.Add(2)
			go func() {
				defer wg.Done()
				b, err := p.Contract.Buckets(ctx)
				if err != nil {
					return
				}
				ms, err := platform.AddMicro(p.NC, p.NS, p.Settings, events.ServiceRegistry, "otelfleet registrations: list and get", svc.Endpoints()...)
				if err != nil {
					log.Error("registry micro service failed to start", "err", err)
				} else {
					mu.Lock()
					running = ms
					mu.Unlock()
				}
				_ = svc.Run(ctx, b.Registry)
			}()
			go func() {
				defer wg.Done()
				select {
				case <-svc.Loaded():
					gate.Open()
				case <-ctx.Done():
				}
			}()
			return nil
		},
		OnStop: func(context.Context) error {
			cancel()
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			if running != nil {
				return running.Stop()
			}
			return nil
		},
	})
	return Result{Service: svc}, nil
}
