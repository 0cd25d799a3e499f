package samplersvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// Params are the module's dependencies: platform.Module and configwatch.Module provide
// them.
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
	Watcher   *configwatch.Watcher
	Log       *slog.Logger
	Reg       prometheus.Registerer
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
	})
	if err != nil {
		return Result{}, err
	}
	gate := p.Readiness.Gate(events.ServiceSampler)
	srv := &http.Server{Handler: svc.API(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		svcMicro micro.Service
	)
	p.LC.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", p.Config.Addr)
			if err != nil {
				cancel()
				return fmt.Errorf("sampler: listen on %s (set --sampling-addr or SAMPLING_ADDR): %w", p.Config.Addr, err)
			}
			svc.setHTTPAddr(ln.Addr())
			log.Info("Jaeger remote-sampling API listening", "addr", ln.Addr().String())
			wg.Add(2)
			go func() {
				defer wg.Done()
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error("sampling API server stopped", "err", err)
				}
			}()
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
				m, err := platform.AddMicro(p.NC, p.NS, p.Settings, events.ServiceSampler,
					"otelfleet sampling coordination: the decision in force", svc.Endpoints()...)
				if err != nil {
					log.Error("sampler micro service failed to start", "err", err)
					return
				}
				mu.Lock()
				svcMicro = m
				mu.Unlock()
				gate.Open()
				log.Info("sampler service ready")
				e, err := election.NewKV(p.NC, b.Leases, election.Config{
					Role: events.ServiceSampler, ID: p.Settings.Instance, Namespace: p.NS, Registerer: p.Reg,
				}, log)
				if err != nil {
					log.Error("sampler election cannot start; this replica will never compute decisions", "err", err)
					return
				}
				if err := e.Run(ctx, svc.Lead); err != nil {
					log.Error("sampler election stopped; this replica no longer campaigns", "err", err)
				}
			}()
			return nil
		},
		OnStop: func(stopCtx context.Context) error {
			cancel() // resigns leadership: a follower takes over at once
			errs := []error{srv.Shutdown(stopCtx)}
			wg.Wait()
			mu.Lock()
			if svcMicro != nil {
				errs = append(errs, svcMicro.Stop())
			}
			mu.Unlock()
			svc.Stop()
			return errors.Join(errs...)
		},
	})
	return Result{Service: svc}, nil
}
