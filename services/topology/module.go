package topologysvc

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
	Admin  *platform.Admin
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
	platform.RunService(p.ServiceParams, platform.ServiceSpec{
		Name:        events.ServiceTopology,
		Description: "otelfleet global topology and best-collector queries",
		Ready:       svc.Ready(),
		Run: func(ctx context.Context, b *natsconn.Buckets) error {
			svc.Start(b)
			<-ctx.Done()
			return nil
		},
		Endpoints: svc.Endpoints,
		Lead:      svc.Lead,
		Stop:      func(context.Context) error { svc.Stop(); return nil },
	})
	return Result{Service: svc}, nil
}
