package routersvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/loadmon"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/registration"
	"github.com/otelfleet/otelfleet/services/router/internal/backends"
	"github.com/otelfleet/otelfleet/services/router/internal/balance"
	"github.com/otelfleet/otelfleet/services/router/internal/export"
	"github.com/otelfleet/otelfleet/services/router/internal/ratelimit"
)

// Deps are what the router needs besides its Config.
type Deps struct {
	NC *nats.Conn
	JS jetstream.JetStream
	NS events.Namespace
	// Instance and Region identify this router (registration, load report, status).
	Instance, Region string
	// AdminAddr is the admin listen address, registered in the metadata.
	AdminAddr string
	// Config is the process's config watcher; the router registers a listener on it.
	Config *configwatch.Watcher
	// Readiness, when set, is consulted by the registration's "ready" health check.
	Readiness *platform.Readiness
	Log       *slog.Logger
	// Registerer receives the otelfleet_router_* metrics; nil means none.
	Registerer prometheus.Registerer
	// Tracer, if set, traces each export call to a backend, except those carrying only
	// otelfleet's own spans (export.WithTracer with platform.ComponentAttr).
	Tracer trace.Tracer
}

// Service is one OTLP router. Create it with New; Start it once the contract's buckets
// exist; Stop it after its receivers stopped taking requests.
type Service struct {
	cfg  Config
	auth *receiverAuth
	d    Deps
	log  *slog.Logger
	m    *metrics
	mem  *memory

	exp *export.Exporter
	rr  *rerouter
	// rcv are the receivers Receivers made (set before they start; tests stop them).
	rcv     *Receivers
	limiter atomic.Pointer[ratelimit.Fleet]
	mon     *loadmon.Monitor // spans received (before sampling)
	fwd     *loadmon.Monitor // spans handed to backends (kept and accepted)

	tables atomic.Pointer[tables]
	// policy is built from decision and snap; publish stores them together.
	policy   atomic.Pointer[policy]
	policyMu sync.Mutex
	decision atomic.Pointer[events.Decision]
	snap     atomic.Pointer[configwatch.Snapshot]

	// suspects are the backends new traffic avoids until the given time.
	suspects  atomic.Pointer[map[string]time.Time]
	suspectMu sync.Mutex

	rebuildMu    sync.Mutex
	lastBackends []backends.Backend
	// onLastResort is true while the tables hold the backends reporting unhealthy (no
	// other is left); under rebuildMu.
	onLastResort bool

	ready     atomic.Bool
	readyCh   chan struct{}
	readyOnce sync.Once
	// backendsIn, decisionIn and configIn close when each first load is done.
	backendsIn chan struct{}
	decisionIn chan struct{}
	decOnce    sync.Once

	addrMu             sync.Mutex
	grpcAddr, httpAddr string
	listening          chan struct{}
	listenOnce         sync.Once

	totals struct{ received, kept, sampled, rateLimited atomic.Int64 }
	// active counts the requests in export, from arrival to answer (delivered mode sends
	// the lingering batches of a request that is alone at once).
	active atomic.Int64

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	reg      *registration.Client
	pub      *loadreport.Publisher
	stopOnce sync.Once
}

// New returns a router for cfg. It registers its config listener on d.Config (before the
// watcher starts) and builds its exporter; nothing runs until Start.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.NC == nil || d.JS == nil {
		return nil, fmt.Errorf("%w: a NATS connection and JetStream are required", ErrConfig)
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Region == "" {
		d.Region = "default"
	}
	s := &Service{
		cfg: cfg, d: d, log: d.Log, mem: &memory{limit: int64(cfg.MemoryLimit)},
		readyCh: make(chan struct{}), backendsIn: make(chan struct{}), decisionIn: make(chan struct{}),
		listening: make(chan struct{}),
	}
	s.rr = newRerouter(s)
	var err error
	if s.auth, err = newReceiverAuth(cfg); err != nil {
		return nil, err
	}
	exp, err := export.New(s.exportConfig(fleetconfig.DefaultRegion()), s.rr.add,
		export.WithRegisterer(d.Registerer), export.WithLogger(d.Log.With("component", "export")), export.WithTracer(d.Tracer, platform.ComponentAttr))
	if err != nil {
		return nil, fmt.Errorf("router: exporter: %w", err)
	}
	s.exp = exp
	if s.m, err = newMetrics(d.Registerer, s.mem); err != nil {
		return nil, err
	}
	mcfg := loadmon.DefaultConfig()
	mcfg.HistorySize = 60
	if s.mon, err = loadmon.New(mcfg); err != nil {
		return nil, err
	}
	fcfg := loadmon.DefaultConfig()
	fcfg.HistorySize, fcfg.TopServices = 1, fcfg.MaxServices
	if s.fwd, err = loadmon.New(fcfg); err != nil {
		return nil, err
	}
	s.tables.Store(&tables{byKey: map[string]int{}, regions: map[string]*regionTable{}, strategy: cfg.balanceConfig().Strategy})
	s.policy.Store(s.newPolicy(d.Region))
	if d.Config != nil {
		d.Config.OnChange(s.applyConfig)
	}
	return s, nil
}

// exportConfig is the exporter's config from the flags and region r's batch and retry.
func (s *Service) exportConfig(r fleetconfig.Region) export.Config {
	return export.Config{
		Protocol: s.cfg.ExportProtocol, Compression: s.cfg.ExportCompression, QueueBytes: int64(s.cfg.QueueBytes),
		MaxBatchItems: r.Batch.MaxBatchSize, MaxWait: time.Duration(r.Batch.MaxWaitTime),
		MaxRetries: r.Retry.MaxRetries, InitialBackoff: time.Duration(r.Retry.InitialBackoff), MaxBackoff: time.Duration(r.Retry.MaxBackoff),
		Timeout: s.cfg.ExportTimeout, AckLinger: s.cfg.AckLinger,
	}
}

// newPolicy builds the policy for region from the config and decision in force.
func (s *Service) newPolicy(region string) *policy {
	p := &policy{region: region, decision: s.decision.Load(), configRate: 1, plans: map[string]*plan{}}
	if snap := s.snap.Load(); snap != nil {
		p.snap = snap
		p.configRate = snap.Global.SamplingRate
		p.rules = snap.Global.RoutingRules
		p.pref = snap.Region(region).LocalRoutingPreference
	}
	return p
}

// publish stores what set changes (the config snapshot or the decision) and the policy
// built from it, under policyMu: the config watcher and the decision watch run
// concurrently, and a policy built from the other's older value and stored last would
// stay in force (a lost update: e.g. the config's fallback sampling rate instead of the
// decision's). Requests read only the policy.
func (s *Service) publish(set func()) {
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	set()
	s.policy.Store(s.newPolicy(s.d.Region))
}

// applyConfig takes a new config snapshot (configwatch listener). The limits and the
// export config go first, the snapshot and its policy last, so a snapshot in force means
// the whole config is.
func (s *Service) applyConfig(snap configwatch.Snapshot) {
	rl := snap.Global.RateLimiting
	limits := ratelimit.Limits{MaxQPS: rl.MaxQPS, Burst: float64(rl.BurstSize), PerServiceLimit: rl.PerServiceLimit}
	if f := s.limiter.Load(); f != nil {
		f.SetLimits(limits)
	} else if limits != (ratelimit.Limits{}) {
		s.limiter.Store(ratelimit.NewFleet(limits, maxMetricServices))
	}
	if err := s.exp.SetConfig(s.exportConfig(snap.Region(s.d.Region))); err != nil {
		s.log.Error("export config not applied; the previous one stays in force", "err", err)
	}
	s.publish(func() { s.snap.Store(&snap) })
}

// applyDecision takes a sampling decision from KV.
func (s *Service) applyDecision(e jetstream.KeyValueEntry) {
	if e == nil {
		s.decOnce.Do(func() { close(s.decisionIn) })
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		return // a deleted decision: keep the last one in force
	}
	d, err := events.DecodeDecision(e.Value())
	if err != nil {
		s.log.Error("sampling decision rejected; the previous one stays in force", "revision", e.Revision(), "err", err)
		return
	}
	s.publish(func() { s.decision.Store(&d) })
}

// Ready returns a channel closed once the registry replay, the first config and the
// sampling decision (or its absence) are in.
func (s *Service) Ready() <-chan struct{} { return s.readyCh }

// Start runs the router on the contract's buckets until Stop.
func (s *Service) Start(b *natsconn.Buckets) {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	set := backends.New(backends.Config{
		Log: s.log.With("component", "backends"), Registerer: s.d.Registerer, UnhealthyReports: s.cfg.UnhealthyReports,
	}, func(list []backends.Backend) {
		s.rebuild(list, "membership")
	})
	// One fleet view (registry and load stream) serves the backend set and peer demand.
	vc := fleetview.Config{NS: s.d.NS, Log: s.log.With("component", "fleetview")}
	set.Count(&vc)
	view := fleetview.New(vc)
	s.goRun(func() { view.Run(ctx, s.d.NC, s.d.JS, b.Registry) })
	s.goRun(func() {
		if err := set.Run(ctx, view, s.backendsIn); err != nil && ctx.Err() == nil {
			s.log.Error("backend set stopped; the tables in force stay", "err", err)
		}
	})
	s.goRun(func() {
		kvwatch.Run(ctx, s.d.NC, b.Sampling, events.DecisionKey, s.applyDecision, func(err error) {
			s.log.Warn("sampling decision watch failed; retrying", "err", err)
		})
	})
	s.goRun(func() { s.rr.run(ctx) })
	s.goRun(func() { s.housekeep(ctx) })
	s.goRun(func() { s.becomeReady(ctx) })
	s.goRun(func() { s.register(ctx, b.Registry) })
	s.goRun(func() { s.runPeers(ctx, view) })
	s.goRun(func() { s.publishStatus(ctx) })
}

func (s *Service) goRun(fn func()) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); fn() }()
}

// becomeReady opens the router once every first load is in.
func (s *Service) becomeReady(ctx context.Context) {
	for _, ch := range []<-chan struct{}{s.backendsIn, s.decisionIn} {
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
	if s.d.Config != nil {
		if err := s.d.Config.WaitReady(ctx); err != nil {
			return
		}
	}
	s.ready.Store(true)
	s.readyOnce.Do(func() { close(s.readyCh) })
	s.log.Info("router ready", "backends", len(s.tables.Load().keys), "region", s.d.Region)
}

// housekeep refreshes the queued bytes every 50ms and, for the load-aware strategies,
// rebuilds the tables every rebalance interval.
func (s *Service) housekeep(ctx context.Context) {
	mem := time.NewTicker(50 * time.Millisecond)
	defer mem.Stop()
	var rebalance <-chan time.Time
	if balance.LoadAware(s.cfg.balanceConfig().Strategy) {
		t := time.NewTicker(s.cfg.RebalanceInterval)
		defer t.Stop()
		rebalance = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-mem.C:
			var q int64
			for _, st := range s.exp.Stats() {
				q += st.QueueBytes
			}
			s.mem.setQueued(q)
			s.mon.SetQueueDepth(q)
		case <-rebalance:
			s.rebuild(nil, "rebalance")
		}
	}
}

// setListenAddrs records the bound receiver addresses.
func (s *Service) setListenAddrs(grpcAddr, httpAddr net.Addr) {
	s.addrMu.Lock()
	s.grpcAddr, s.httpAddr = grpcAddr.String(), httpAddr.String()
	s.addrMu.Unlock()
	s.listenOnce.Do(func() { close(s.listening) })
}

// Addrs returns the bound OTLP/gRPC and OTLP/HTTP addresses ("" before they listen).
func (s *Service) Addrs() (grpcAddr, httpAddr string) {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.grpcAddr, s.httpAddr
}

// advertise turns a bound address into one others can dial: the advertise host, or the
// hostname for an unspecified host.
func (s *Service) advertise(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch {
	case s.cfg.AdvertiseAddr != "":
		host = s.cfg.AdvertiseAddr
	case host == "" || net.ParseIP(host).IsUnspecified():
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// register registers the router as service.router.<instance> with its OTLP addresses
// and starts its load report, once the receivers listen.
func (s *Service) register(ctx context.Context, kv jetstream.KeyValue) {
	select {
	case <-s.listening:
	case <-ctx.Done():
		return
	}
	g, h := s.Addrs()
	meta := map[string]string{"otlp_grpc": s.advertise(g), "otlp_http": s.advertise(h), "process": "router"}
	if s.d.AdminAddr != "" {
		meta["admin"] = s.advertise(s.d.AdminAddr)
	}
	c, err := registration.New(kv, registration.Config{
		Kind: events.KindService, ID: s.d.Instance, Name: events.ServiceRouter, Region: s.d.Region,
		Address: s.advertise(g), Version: platform.Version, Metadata: meta,
		Checks:     []registration.Check{s.readyCheck},
		Registerer: s.d.Registerer,
	}, s.log.With("component", "registration"))
	if err != nil {
		s.log.Error("self registration disabled", "err", err)
		return
	}
	if err := c.Start(); err != nil {
		s.log.Error("self registration failed", "err", err)
		return
	}
	pcfg := loadreport.DefaultConfig()
	pcfg.Region, pcfg.Collector, pcfg.Interval = s.d.Region, s.d.Instance, s.cfg.ReportInterval
	pub, err := loadreport.NewPublisher(s.d.NC, s.d.NS, pcfg, &loadreport.RouterSource{
		Received: loadreport.MonitorSource{Monitor: s.mon, Healthy: s.ready.Load}, Forwarded: s.fwd}, s.log, s.d.Registerer)
	if err != nil {
		s.log.Error("load report disabled", "err", err)
	} else {
		pub.Start()
	}
	s.addrMu.Lock()
	s.reg, s.pub = c, pub
	s.addrMu.Unlock()
}

// readyCheck is the registration's "ready" health check.
func (s *Service) readyCheck(context.Context) events.CheckResult {
	if !s.ready.Load() {
		return events.CheckResult{Name: "ready", Status: events.HealthDegraded, Message: "router not ready: waiting for the registry, config and sampling decision"}
	}
	return events.CheckResult{Name: "ready", Status: events.HealthHealthy}
}

// Stop stops the router: the exporter first (flushing the queues within ctx; what a
// backend hands back meanwhile is re-routed), then its loops; what is still waiting for
// a backend is counted as dropped; finally it deregisters.
func (s *Service) Stop(ctx context.Context) error {
	var errs []error
	s.stopOnce.Do(func() {
		if err := s.exp.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			errs = append(errs, err)
		}
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		if n := s.rr.drop(); n > 0 {
			s.m.dropped.Add(float64(n))
			s.log.Error("items dropped at stop: no backend could take them", "items", n)
		}
		s.addrMu.Lock()
		c, pub := s.reg, s.pub
		s.addrMu.Unlock()
		if pub != nil {
			pub.Stop()
		}
		if c != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := c.Deregister(dctx); err != nil {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}
