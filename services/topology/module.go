package topologysvc

import (
	"context"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/election"
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
	Admin     *platform.Admin
	Log       *slog.Logger
	Reg       prometheus.Registerer
}

// Result is what the module provides to the rest of the app.
type Result struct {
	fx.Out
	Service *Service
}

// Module runs the topology service: once the contract's buckets exist it loads the
// registry, starts consuming load reports, serves the otlp-topology micro service and
// campaigns for the "topology" leadership role, publishing snapshots while it leads.
// GET /v1/topology, GET /v1/topology/best and the live page at / are served on the admin
// port from the start (503 until ready). Readiness check "topology" passes once the
// first view is built and the micro service is up.
func Module(cfg Config) fx.Option {
	return fx.Module(events.ServiceTopology,
		fx.Supply(cfg),
		fx.Provide(Provide),
		fx.Invoke(func(*Service) {}),
	)
}

// Provide builds the service and wires it into the app's lifecycle.
func Provide(p Params) (Result, error) {
	log := p.Log.With("service", events.ServiceTopology)
	svc, err := New(p.Config, Deps{NC: p.NC, JS: p.JS, NS: p.NS, Instance: p.Settings.Instance, Log: log, Registerer: p.Reg})
	if err != nil {
		return Result{}, err
	}
	svc.RegisterHTTP(p.Admin)
	gate := p.Readiness.Gate("topology")
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		svcMicro micro.Service
	)
	p.LC.Append(fx.Hook{
		OnStart: func(context.Context) error {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, err := p.Contract.Buckets(ctx)
				if err != nil {
					return
				}
				svc.Start(b)
				select {
				case <-svc.Ready():
				case <-ctx.Done():
					return
				}
				m, err := platform.AddMicro(p.NC, p.NS, p.Settings, events.ServiceTopology,
					"otelfleet global topology and best-collector queries", svc.Endpoints()...)
				if err != nil {
					log.Error("topology micro service failed to start", "err", err)
					return
				}
				mu.Lock()
				svcMicro = m
				mu.Unlock()
				gate.Open()
				log.Info("topology service ready")
				e, err := election.NewKV(p.NC, b.Leases, election.Config{
					Role: events.ServiceTopology, ID: p.Settings.Instance, Namespace: p.NS, Registerer: p.Reg,
				}, log)
				if err != nil {
					log.Error("topology election cannot start; this replica will never publish snapshots", "err", err)
					return
				}
				if err := e.Run(ctx, svc.Lead); err != nil {
					log.Error("topology election stopped; this replica no longer campaigns", "err", err)
				}
			}()
			return nil
		},
		OnStop: func(context.Context) error {
			cancel()
			wg.Wait()
			var err error
			mu.Lock()
			if svcMicro != nil {
				err = svcMicro.Stop()
			}
			mu.Unlock()
			svc.Stop()
			return err
		},
	})
	return Result{Service: svc}, nil
}
