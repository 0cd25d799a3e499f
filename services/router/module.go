package routersvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	Router *Service
}

// Module runs the OTLP router: its receivers listen on Config.GRPCAddr and
// Config.HTTPAddr from the start and answer UNAVAILABLE / 503 with a retry delay until
// the router is ready; once the contract's buckets exist it follows the registry's
// backends, the config and the sampling decision, registers itself as
// service.router.<instance> with its OTLP addresses, publishes its load report and serves
// the otlp-router micro service. Readiness check "router" passes once the registry
// replay, the first config and the decision (or its absence) are in. It registers itself:
// do not add registration.SelfModule("router") next to it.
func Module(cfg Config) fx.Option {
	return fx.Module(events.ServiceRouter,
		fx.Supply(cfg),
		fx.Provide(Provide),
		fx.Invoke(func(*Service) {}),
	)
}

// Provide builds the router and wires it into the app's lifecycle.
func Provide(p Params) (Result, error) {
	log := p.Log.With("service", events.ServiceRouter)
	svc, err := New(p.Config, Deps{
		NC: p.NC, JS: p.JS, NS: p.NS, Instance: p.Settings.Instance, Region: p.Settings.Region,
		AdminAddr: p.Settings.AdminAddr, Config: p.Watcher, Readiness: p.Readiness, Log: log, Registerer: p.Reg,
		Tracer: p.Tracing.Tracer(events.ServiceRouter),
	})
	if err != nil {
		return Result{}, err
	}
	platform.RunService(p.ServiceParams, platform.ServiceSpec{
		Name:        events.ServiceRouter,
		Description: "otelfleet OTLP router: sampling, rate limits, routing rules and backend choice per trace",
		Ready:       svc.Ready(),
		Run: func(ctx context.Context, b *natsconn.Buckets) error {
			svc.Start(b)
			<-ctx.Done()
			return nil
		},
		Endpoints: svc.Endpoints,
		Stop:      svc.Stop,
	})
	// Appended after RunService's hook, so the receivers stop first on shutdown and the
	// exporter then flushes what they accepted.
	rcv := svc.Receivers()
	p.LC.Append(fx.Hook{OnStart: func(context.Context) error { return rcv.Start() }, OnStop: rcv.Stop})
	return Result{Router: svc}, nil
}

// Receivers are the router's OTLP/gRPC and OTLP/HTTP servers.
type Receivers struct {
	s    *Service
	grpc interface {
		Serve(net.Listener) error
		GracefulStop()
		Stop()
	}
	http *http.Server
	wg   sync.WaitGroup
}

// Receivers returns the router's receivers (not listening yet).
func (s *Service) Receivers() *Receivers {
	s.rcv = &Receivers{
		s:    s,
		grpc: s.grpcServer(),
		http: &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
			// TLS handshake failures (no client certificate, unknown CA) are the client's
			// problem: debug, not stderr.
			ErrorLog: slog.NewLogLogger(s.log.With("component", "otlp-http").Handler(), slog.LevelDebug)},
	}
	return s.rcv
}

// Start listens on both addresses and serves in the background.
func (r *Receivers) Start() error {
	gl, err := net.Listen("tcp", r.s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("router: listen on %s (set --otlp-grpc-addr or OTLP_GRPC_ADDR): %w", r.s.cfg.GRPCAddr, err)
	}
	hl, err := net.Listen("tcp", r.s.cfg.HTTPAddr)
	if err != nil {
		_ = gl.Close()
		return fmt.Errorf("router: listen on %s (set --otlp-http-addr or OTLP_HTTP_ADDR): %w", r.s.cfg.HTTPAddr, err)
	}
	r.s.setListenAddrs(gl.Addr(), hl.Addr())
	r.s.log.Info("OTLP receivers listening", "grpc", gl.Addr().String(), "http", hl.Addr().String(),
		"tls", r.s.auth.tls != nil, "client_certs", r.s.auth.tls != nil && r.s.auth.tls.ClientCAs != nil, "bearer_token", r.s.auth.token != nil)
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		if err := r.grpc.Serve(gl); err != nil {
			r.s.log.Error("OTLP/gRPC receiver stopped", "err", err)
		}
	}()
	go func() {
		defer r.wg.Done()
		serve := func() error { return r.http.Serve(hl) }
		if r.s.auth.tls != nil {
			r.http.TLSConfig = r.s.auth.tls.Clone()
			serve = func() error { return r.http.ServeTLS(hl, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.s.log.Error("OTLP/HTTP receiver stopped", "err", err)
		}
	}()
	return nil
}

// Stop stops taking requests and waits, within ctx, for those in flight.
func (r *Receivers) Stop(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.grpc.GracefulStop(); close(done) }()
	err := r.http.Shutdown(ctx)
	select {
	case <-done:
	case <-ctx.Done():
		r.grpc.Stop()
		<-done
	}
	r.wg.Wait()
	return err
}
