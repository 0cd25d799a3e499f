package platform

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// ServiceSpec says how one otelfleet service comes up on top of this module. Every
// service follows the same life, a Component's (see Start) plus: once its first load is
// done serve its micro endpoints and open its readiness gate; campaign for its leadership
// role if it has leader work; undo all of it on stop.
type ServiceSpec struct {
	// Name is the service name: micro service otlp-<Name>, endpoints otlp.<Name>.<op>,
	// the leadership role when Lead is set, and the component name in logs.
	Name string
	// Description is the micro service's description.
	Description string
	// Gate names the readiness check (default Name).
	Gate string
	// Run is the service's Component.Run: called once the buckets exist, it either starts
	// the service's goroutines and returns nil, or works until ctx ends. An error while
	// the app runs fails the readiness gate with that error as the reason (shown in the
	// /readyz body), is logged, and ends this replica's campaign (a broken replica does
	// not lead); the endpoints keep answering.
	Run func(ctx context.Context, b *natsconn.Buckets) error
	// Ready, if set, is closed when the first load is done; the endpoints start and the
	// gate opens then. Nil means at once when Run starts.
	Ready <-chan struct{}
	// Endpoints are the micro endpoints served once ready.
	Endpoints func() []Endpoint
	// Lead, if set, is called for every term this replica wins for role Name; it must
	// return promptly once the term's context ends (see package election).
	Lead func(election.Term)
	// Stop is the service's Component.Stop: it runs after Run has returned and the
	// endpoints are stopped.
	Stop func(ctx context.Context) error
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
	// Tracing gives each service its own tracer (Tracing.Tracer(name)); no-ops when off.
	Tracing *Tracing
}

// Life returns the part of p that Start needs, for a service's further components.
func (p ServiceParams) Life() Life { return Life{LC: p.LC, Contract: p.Contract, Log: p.Log} }

// RunService ties spec to the app's lifecycle: it is Start with the service's endpoints,
// readiness gate and campaign around spec.Run.
func RunService(p ServiceParams, spec ServiceSpec) {
	gateName := spec.Gate
	if gateName == "" {
		gateName = spec.Name
	}
	s := &service{p: p, spec: spec, gate: p.Readiness.Gate(gateName), log: p.Log.With("component", spec.Name)}
	Start(p.Life(), Component{Name: spec.Name, Run: s.run, Stop: s.stop})
}

// service is one RunService's state.
type service struct {
	p    ServiceParams
	spec ServiceSpec
	gate *Gate
	log  *slog.Logger

	mu      sync.Mutex
	running micro.Service
}

// run runs spec.Run beside serve; a failure of spec.Run ends serve (and the campaign)
// and fails the gate.
func (s *service) run(ctx context.Context, b *natsconn.Buckets) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.spec.Run(ctx, b); err != nil && ctx.Err() == nil {
			failed <- err
			cancel()
		}
	}()
	s.serve(ctx, b)
	wg.Wait()
	select {
	case err := <-failed:
		s.gate.Fail(err)
		return err
	default:
		return nil
	}
}

// serve waits for the first load, starts the endpoints, opens the gate and campaigns
// until ctx ends.
func (s *service) serve(ctx context.Context, b *natsconn.Buckets) {
	if s.spec.Ready != nil {
		select {
		case <-s.spec.Ready:
		case <-ctx.Done():
			return
		}
	}
	var eps []Endpoint
	if s.spec.Endpoints != nil {
		eps = s.spec.Endpoints()
	}
	m, err := AddMicro(s.p.NC, s.p.NS, s.p.Settings, s.spec.Name, s.spec.Description, eps...)
	if err != nil {
		s.log.Error("micro service failed to start; the service stays unready", "err", err)
		return
	}
	s.mu.Lock()
	s.running = m
	s.mu.Unlock()
	s.gate.Open()
	s.log.Info("service ready")
	if s.spec.Lead == nil {
		<-ctx.Done()
		return
	}
	e, err := election.NewKV(s.p.NC, b.Leases, election.Config{
		Role: s.spec.Name, ID: s.p.Settings.Instance, Namespace: s.p.NS, Registerer: s.p.Reg,
	}, s.log)
	if err != nil {
		s.log.Error("election cannot start; this replica will never lead", "err", err)
		<-ctx.Done()
		return
	}
	// Run resigns when ctx ends, so a follower takes over at once.
	if err := e.Run(ctx, s.spec.Lead); err != nil {
		s.log.Error("election stopped; this replica no longer campaigns", "err", err)
	}
	<-ctx.Done()
}

// stop stops the endpoints, then spec.Stop.
func (s *service) stop(ctx context.Context) error {
	var errs []error
	s.mu.Lock()
	if s.running != nil {
		errs = append(errs, s.running.Stop())
	}
	s.mu.Unlock()
	if s.spec.Stop != nil {
		errs = append(errs, s.spec.Stop(ctx))
	}
	return errors.Join(errs...)
}

// ServiceConfig is a service's own configuration: knobs and their validation. Validate
// checks values only; a config that names files also implements Loader.
type ServiceConfig interface {
	Bind(*knobs.Set)
	Validate() error
}

// Loader is implemented by a ServiceConfig that reads files it names (the config
// service's --config): Main calls Load after a successful Validate, and a failure exits
// 2 like a bad value.
type Loader interface {
	Load() error
}

// runHealthcheck probes the /readyz of the process on adminAddr and returns the exit
// status: 0 ready, 1 not (the reason on stderr).
func runHealthcheck(process, adminAddr string) int {
	url, err := ProbeURL(adminAddr, "/readyz")
	if err == nil {
		err = Probe(context.Background(), url, 3*time.Second)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "otelfleet-%s: %v\n", process, err)
		return 1
	}
	return 0
}

// Main runs a standalone service binary: it binds the shared settings and cfg to flags
// and environment (--healthcheck probes a running instance's /readyz instead and exits), exits with status 2 naming every bad value, then runs the app made of
// Module and modules() until SIGINT or SIGTERM. modules is called after parsing, so it
// sees cfg's final values.
func Main(process string, cfg ServiceConfig, modules func() fx.Option) {
	s := DefaultSettings(process)
	k := knobs.New(flag.CommandLine)
	s.Bind(k)
	cfg.Bind(k)
	healthcheck := flag.Bool("healthcheck", false, "probe this process's own /readyz on --admin-addr and exit 0 when ready, 1 when not (the container healthcheck)")
	flag.Parse()
	if *healthcheck {
		os.Exit(runHealthcheck(process, s.AdminAddr))
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "otelfleet-%s: unexpected arguments %q (every setting is a flag; see --help)\n", process, flag.Args())
		os.Exit(2)
	}
	err := errors.Join(k.Err(), s.Validate(), cfg.Validate())
	if l, ok := cfg.(Loader); ok && err == nil {
		err = l.Load()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "otelfleet-%s: %v\n", process, err)
		os.Exit(2)
	}
	fx.New(Options(s), Module(s), modules()).Run()
}
