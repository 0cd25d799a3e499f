package platform

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// ServiceSpec says how one otelfleet service comes up on top of this module. Every service
// follows the same life: wait (in the background, so the app starts even with NATS down)
// until the contract's streams and buckets exist; run; once its first load is done serve
// its micro endpoints and pass its readiness check; campaign for its leadership role if
// it has leader work; undo all of it on stop.
type ServiceSpec struct {
	// Name is the service name: micro service otlp-<Name>, endpoints otlp.<Name>.<op>,
	// and the leadership role when Lead is set.
	Name string
	// Description is the micro service's description.
	Description string
	// Gate names the readiness check (default Name).
	Gate string
	// Run does the service's work once the buckets exist, until ctx ends. An error is
	// logged and leaves the service unready.
	Run func(ctx context.Context, b *natsconn.Buckets) error
	// Ready, if set, is closed when the first load is done; the endpoints start and the
	// gate opens then. Nil means at once when Run starts.
	Ready <-chan struct{}
	// Endpoints are the micro endpoints served once ready.
	Endpoints func() []Endpoint
	// Lead, if set, is called for every term this replica wins for role Name; it must
	// return promptly once the term's context ends (see package election).
	Lead func(election.Term)
	// Stop, if set, runs after Run has returned and the endpoints are stopped.
	Stop func() error
}

// ServiceParams are what RunService needs; Module provides all of them.
type ServiceParams struct {
	fx.In
	LC        fx.Lifecycle
	Settings  Settings
	NC        *nats.Conn
	NS        events.Namespace
	Contract  *Contract
	Readiness *Readiness
	Log       *slog.Logger
	Reg       prometheus.Registerer
}

// RunService ties spec to the app's lifecycle.
func RunService(p ServiceParams, spec ServiceSpec) {
	log := p.Log.With("service", spec.Name)
	gateName := spec.Gate
	if gateName == "" {
		gateName = spec.Name
	}
	gate := p.Readiness.Gate(gateName)
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
				if err := spec.Run(ctx, b); err != nil && ctx.Err() == nil {
					log.Error("service stopped working; it stays unready", "err", err)
				}
			}()
			go func() {
				defer wg.Done()
				b, err := p.Contract.Buckets(ctx)
				if err != nil {
					return
				}
				if spec.Ready != nil {
					select {
					case <-spec.Ready:
					case <-ctx.Done():
						return
					}
				}
				var eps []Endpoint
				if spec.Endpoints != nil {
					eps = spec.Endpoints()
				}
				m, err := AddMicro(p.NC, p.NS, p.Settings, spec.Name, spec.Description, eps...)
				if err != nil {
					log.Error("micro service failed to start; the service stays unready", "err", err)
					return
				}
				mu.Lock()
				running = m
				mu.Unlock()
				gate.Open()
				log.Info("service ready")
				if spec.Lead == nil {
					return
				}
				e, err := election.NewKV(p.NC, b.Leases, election.Config{
					Role: spec.Name, ID: p.Settings.Instance, Namespace: p.NS, Registerer: p.Reg,
				}, log)
				if err != nil {
					log.Error("election cannot start; this replica will never lead", "err", err)
					return
				}
				if err := e.Run(ctx, spec.Lead); err != nil {
					log.Error("election stopped; this replica no longer campaigns", "err", err)
				}
			}()
			return nil
		},
		OnStop: func(context.Context) error {
			cancel() // ends Run and resigns leadership, so a follower takes over at once
			wg.Wait()
			var errs []error
			mu.Lock()
			if running != nil {
				errs = append(errs, running.Stop())
			}
			mu.Unlock()
			if spec.Stop != nil {
				errs = append(errs, spec.Stop())
			}
			return errors.Join(errs...)
		},
	})
}

// ServiceConfig is a service's own configuration: knobs and their validation.
type ServiceConfig interface {
	Bind(*knobs.Set)
	Validate() error
}

// Main runs a standalone service binary: it binds the shared settings and cfg to flags
// and environment, exits with status 2 naming every bad value, then runs the app made of
// Module and modules() until SIGINT or SIGTERM. modules is called after parsing, so it
// sees cfg's final values.
func Main(process string, cfg ServiceConfig, modules func() fx.Option) {
	s := DefaultSettings(process)
	k := knobs.New(flag.CommandLine)
	s.Bind(k)
	cfg.Bind(k)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "otelfleet-%s: unexpected arguments %q (every setting is a flag; see --help)\n", process, flag.Args())
		os.Exit(2)
	}
	if err := errors.Join(k.Err(), s.Validate(), cfg.Validate()); err != nil {
		fmt.Fprintf(os.Stderr, "otelfleet-%s: %v\n", process, err)
		os.Exit(2)
	}
	fx.New(Options(s), Module(s), modules()).Run()
}
