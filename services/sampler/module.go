package samplersvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Params are the module's dependencies: platform.Module and configwatch.Module provide
// them.
type Params struct {
	fx.In
	platform.ServiceParams
	Config  Config
	JS      jetstream.JetStream
	Watcher *configwatch.Watcher
}

// Result is what the module provides to the rest of the app.
type Result struct {
	fx.Out
	Service *Service
}

// Module runs the sampler service: the Jaeger remote-sampling API listens on
// Config.Addr from the start (503 until a decision or the config's static rates are
// loaded); once the contract's buckets exist the replica consumes load reports, watches
// the stored decision, serves the otlp-sampler micro service and campaigns for the
// "sampler" leadership role, computing and storing decisions while it leads. Readiness
// check "sampler" passes once the decision is loaded and the micro service is up.
func Module(cfg Config) fx.Option {
	return fx.Module(events.ServiceSampler,
		fx.Supply(cfg),
		fx.Provide(Provide),
		fx.Invoke(func(*Service) {}),
	)
}

// Provide builds the service and wires it into the app's lifecycle.
func Provide(p Params) (Result, error) {
	log := p.Log.With("service", events.ServiceSampler)
	svc, err := New(p.Config, Deps{
		NC: p.NC, JS: p.JS, NS: p.NS, Instance: p.Settings.Instance, Config: p.Watcher, Log: log, Registerer: p.Reg,
		Tracer: p.Tracing.Tracer(events.ServiceSampler),
	})
	if err != nil {
		return Result{}, err
	}
	srv := &http.Server{Handler: svc.API(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	var wg sync.WaitGroup
	p.LC.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", p.Config.Addr)
			if err != nil {
				return fmt.Errorf("sampler: listen on %s (set --sampling-addr or SAMPLING_ADDR): %w", p.Config.Addr, err)
			}
			svc.setHTTPAddr(ln.Addr())
			log.Info("Jaeger remote-sampling API listening", "addr", ln.Addr().String())
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error("sampling API server stopped", "err", err)
				}
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			err := srv.Shutdown(ctx)
			wg.Wait()
			return err
		},
	})
	platform.RunService(p.ServiceParams, platform.ServiceSpec{
		Name:        events.ServiceSampler,
		Description: "otelfleet sampling coordination: the decision in force",
		Ready:       svc.Ready(),
		Run: func(_ context.Context, b *natsconn.Buckets) error {
			svc.Start(b) // starts the service's goroutines; Stop ends them
			return nil
		},
		Endpoints: svc.Endpoints,
		Lead:      svc.Lead,
		Stop:      func(context.Context) error { svc.Stop(); return nil },
	})
	return Result{Service: svc}, nil
}
