package samplersvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/lease"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/services/sampler/internal/strategy"
)

// ConfigSource gives the fleet configuration in force; *configwatch.Watcher implements
// it.
type ConfigSource interface {
	// Current returns the configuration in force.
	Current() configwatch.Snapshot
	// OnChange registers fn to be called with every configuration applied later.
	OnChange(fn func(configwatch.Snapshot))
}

var _ ConfigSource = (*configwatch.Watcher)(nil)

// Deps are what New needs besides the Config.
type Deps struct {
	NC *nats.Conn
	JS jetstream.JetStream
	NS events.Namespace
	// Instance is this replica's id: the leader id written in decisions.
	Instance string
	// Config is the fleet configuration.
	Config ConfigSource
	Log    *slog.Logger
	// Registerer receives the otelfleet_sampler_* metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Tracer, if set, traces every decision the leader computes and stores.
	Tracer trace.Tracer
}

// Service is one sampler replica. Every replica consumes the load reports (so that it
// can take over at once), watches the stored decision and serves it (API, micro
// endpoint); the replica that Lead is called for computes and stores decisions for as
// long as its term lasts.
type Service struct {
	cfg   Config
	d     Deps
	log   *slog.Logger
	m     *metrics
	api   *API
	loads *Loads
	now   func() time.Time

	kick chan struct{} // a config change: decide now

	mu     sync.Mutex
	addr   net.Addr // the Jaeger API's listen address, once listening
	store  *Store
	stored bool // a stored decision is installed (not the provisional one)
	// storedAt is when the last stored decision this replica installed was computed
	// (leader clock); before the first one, when this replica started. Provisional
	// decisions leave it alone: they are no decision of a leader.
	storedAt time.Time
	started  bool

	ready     chan struct{} // the stored decision (or its absence) is loaded
	readyOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// New returns a replica; Start starts it once the contract's buckets exist.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.NC == nil || d.JS == nil || d.Config == nil || d.Instance == "" {
		return nil, fmt.Errorf("%w: NATS connection, JetStream, config source and instance id are required", ErrConfigValidation)
	}
	if d.NS == (events.Namespace{}) {
		d.NS = events.Default
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	m, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, fmt.Errorf("sampler: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, d: d, log: d.Log, m: m, api: NewAPI(m.api), now: now,
		kick: make(chan struct{}, 1), ready: make(chan struct{}),
		ctx: ctx, cancel: cancel, storedAt: now(),
	}
	if err := m.decisionAge(d.Registerer, s.decisionAge, cfg.Interval); err != nil {
		cancel()
		return nil, fmt.Errorf("sampler: %w", err)
	}
	s.loads = NewLoads(cfg.ReportTTL, newView(cfg.ReportTTL, now, s.counted, fleetview.Config{NS: d.NS, Log: d.Log}))
	d.Config.OnChange(func(configwatch.Snapshot) {
		select {
		case s.kick <- struct{}{}:
		default:
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.stored {
			s.installProvisionalLocked()
		}
	})
	return s, nil
}

// API returns the Jaeger remote-sampling HTTP handler of this replica.
func (s *Service) API() *API { return s.api }

// HTTPAddr returns the address the Jaeger API listens on, once the module started it;
// nil otherwise.
func (s *Service) HTTPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Service) setHTTPAddr(a net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addr = a
}

// Loads returns the table of collectors' latest load reports.
func (s *Service) Loads() *Loads { return s.loads }

// Ready is closed once the stored decision has been loaded (or found absent, in which
// case the config's static rates are served until a leader stores one).
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Start starts following the registered collectors in b.Registry, consuming load
// reports (once the registry is loaded) and watching the stored decision in b.Sampling;
// decisions are fenced by the sampler role's lease in b.Leases. It returns at once;
// Stop stops it.
func (s *Service) Start(b *natsconn.Buckets) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.started = true
	s.store = NewStore(b.Sampling)
	if key, err := events.LeaseKey(events.ServiceSampler); err == nil && b.Leases != nil {
		s.store.FencedBy(lease.NewKV(s.d.NC, b.Leases, key), s.log)
	}
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		s.loads.View().Run(s.ctx, s.d.NC, s.d.JS, b.Registry)
	}()
	go func() {
		defer s.wg.Done()
		// Reports waiting for a registration that never came are forgotten.
		t := time.NewTicker(s.cfg.ReportTTL)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
				s.loads.View().Prune(s.now())
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		kvwatch.Run(s.ctx, s.d.NC, b.Sampling, events.DecisionKey, s.onDecision,
			func(err error) { s.log.Warn("sampling decision watch failed, retrying", "err", err) })
	}()
}

// Stop stops the goroutines Start started and waits for them. Safe to call twice.
func (s *Service) Stop() {
	s.cancel()
	s.wg.Wait()
}

// onDecision installs a stored decision (or, at the end of the initial replay with none
// stored, the provisional one).
func (s *Service) onDecision(e jetstream.KeyValueEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e == nil {
		if !s.stored {
			s.installProvisionalLocked()
		}
		s.readyOnce.Do(func() { close(s.ready) })
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		s.log.Warn("the sampling decision was deleted; serving the config's static rates until the leader stores one", "revision", e.Revision())
		s.stored = false
		s.installProvisionalLocked()
		return
	}
	d, err := events.DecodeDecision(e.Value())
	if err != nil {
		s.m.invalid.Inc()
		s.log.Error("stored sampling decision is invalid; still serving the previous one", "revision", e.Revision(), "err", err)
		return
	}
	s.stored, s.storedAt = true, d.At
	s.store.Observe(d.Version)
	s.install(&d)
}

// decisionAge is the age, in seconds, of the stored decision this replica last
// installed (since its start while it has seen none); never negative.
func (s *Service) decisionAge() float64 {
	s.mu.Lock()
	at := s.storedAt
	s.mu.Unlock()
	return max(s.now().Sub(at).Seconds(), 0)
}

func (s *Service) install(d *events.Decision) {
	s.api.Install(d)
	s.m.served.Set(float64(d.Version))
	s.m.globalRate.Set(d.GlobalRate)
	if d.Degraded {
		s.m.degraded.Set(1)
	} else {
		s.m.degraded.Set(0)
	}
}

// installProvisionalLocked serves the config's static rates (fixed, priority rules,
// sampling_rate; adaptive and cost need traffic) while no decision is stored.
func (s *Service) installProvisionalLocked() {
	g := s.d.Config.Current().Global
	p := events.SamplingParams{SamplingRate: g.SamplingRate, Degradation: g.Degradation}
	for _, st := range g.SamplingStrategies {
		if st.Type == fleetconfig.StrategyFixed || st.Type == fleetconfig.StrategyPriorityBased {
			p.Strategies = append(p.Strategies, st)
		}
	}
	d := strategy.Compute(p, strategy.Inputs{})
	d.V, d.ConfigVersion, d.At = events.DecisionVersion, g.Version, s.now()
	d.Strategy = "provisional:" + d.Strategy
	s.install(&d)
}

// counted counts one load report the fleet view read.
func (s *Service) counted(o fleetview.Outcome, subject string, _ []byte, err error) {
	if err != nil {
		s.m.reports.WithLabelValues("invalid").Inc()
		return
	}
	switch o {
	case fleetview.Counted, fleetview.Outdated:
		s.m.reports.WithLabelValues("ok").Inc()
	case fleetview.Waiting:
		s.m.reports.WithLabelValues("unregistered").Inc()
	case fleetview.WaitingLimit:
		s.m.reports.WithLabelValues("unregistered_limit").Inc()
		s.log.Debug("load report dropped: too many unregistered collectors waiting", "subject", subject, "limit", MaxWaitingCollectors)
	case fleetview.ReportingLimit:
		s.m.reports.WithLabelValues("collector_limit").Inc()
		s.log.Debug("load report dropped: too many collectors tracked", "subject", subject, "limit", MaxTrackedCollectors)
	}
}

// Lead computes and stores a decision at once and then every interval, until t.Ctx
// ends. It is the lead callback of the election for role "sampler".
func (s *Service) Lead(t election.Term) {
	s.m.leader.Set(1)
	defer s.m.leader.Set(0)
	log := s.log.With("token", t.Token)
	log.Info("leading: computing sampling decisions", "interval", s.cfg.Interval)
	defer func() { log.Info("no longer leading", "reason", t.Reason(), "cause", t.Cause()) }() // read when the term has ended
	// Let the load stream replay first, so the first decision does not see an empty
	// fleet; a replica that was following has long been synced.
	wait := time.NewTimer(min(s.cfg.Interval, 3*time.Second))
	select {
	case <-s.loads.View().CaughtUp():
	case <-wait.C:
	case <-t.Ctx.Done():
		wait.Stop()
		return
	}
	wait.Stop()
	eng := strategy.NewEngine(s.cfg.Tuning())
	if prev, _, err := s.store.Get(t.Ctx); err == nil && prev.Token <= t.Token {
		eng.Seed(&prev) // continue the smoothing and degradation state
	}
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	lt := leaderTerm{t: t, eng: eng, log: log}
	for {
		s.tracedDecide(&lt)
		select {
		case <-t.Ctx.Done():
			return
		case <-tick.C:
		case <-s.kick:
		}
	}
}

// leaderTerm is the state of one term's decision loop.
type leaderTerm struct {
	t   election.Term
	eng *strategy.Engine
	log *slog.Logger
	// pending holds the transitions whose decision could not be stored, to be published
	// with the next decision that is.
	pending []*strategy.Transition
	// written counts the decisions stored in this term; failures counts the attempts
	// since the last one stored (0 once one is).
	written, failures int
}

// decide computes one decision, stores it by compare-and-set and publishes its events.
func (s *Service) decide(lt *leaderTerm) {
	d, obs := s.compute(lt)
	data, err := s.encode(&d)
	if err != nil {
		s.m.decisions.WithLabelValues("failed").Inc()
		lt.log.Error("sampling decision cannot be encoded", "err", err)
		lt.failures++
		return
	}
	if lt.t.Ctx.Err() != nil {
		return // the term ended while computing: write nothing
	}
	if !s.write(lt, &d) {
		return
	}
	s.m.decisions.WithLabelValues("written").Inc()
	s.m.bytes.Set(float64(len(data)))
	s.logStored(lt, &d, obs)
	s.publishTransitions(lt, &d)
	s.publish(events.EventSamplingDecision, &d, "")
}

// compute steps the engine over the live load and stamps the decision with this term,
// the config version and the regional multipliers.
func (s *Service) compute(lt *leaderTerm) (events.Decision, strategy.Observation) {
	now := s.now()
	snap := s.d.Config.Current()
	g := snap.Global
	p := events.SamplingParams{SamplingRate: g.SamplingRate, Strategies: g.SamplingStrategies, Degradation: g.Degradation}
	obs := s.loads.Observe(now)
	start := time.Now()
	d, tr := lt.eng.Step(p, obs, now)
	s.m.duration.Observe(time.Since(start).Seconds())
	s.m.collectors.Set(float64(obs.Collectors))
	if tr != nil {
		lt.pending = append(lt.pending, tr)
	}
	d.V, d.Leader, d.Token = events.DecisionVersion, s.d.Instance, lt.t.Token
	d.IntervalMS, d.ConfigVersion = s.cfg.Interval.Milliseconds(), g.Version
	d.Regions = regionMultipliers(snap.Regions)
	if _, ok := p.Strategy(fleetconfig.StrategyAdaptive); ok {
		d.LowerBoundTPS = s.cfg.LowerBoundTPS
	}
	return d, obs
}

// regionMultipliers returns the regional sampling rates other than 1 (clamped to
// [0, 1]) of the regions with valid names; nil when there are none.
func regionMultipliers(regions map[string]fleetconfig.Region) map[string]float64 {
	var out map[string]float64
	for name, r := range regions {
		if r.RegionalSamplingRate != 1 && events.CheckToken("region", name) == nil {
			if out == nil {
				out = map[string]float64{}
			}
			out[name] = min(max(r.RegionalSamplingRate, 0), 1)
		}
	}
	return out
}

// encode fits d under the server's max payload (1 MB by default), leaving room for
// headers.
func (s *Service) encode(d *events.Decision) ([]byte, error) {
	maxBytes := events.MaxPayloadBytes
	if mp := int(s.d.NC.MaxPayload()); mp > 0 {
		maxBytes = min(maxBytes, mp-4096)
	}
	return fit(d, maxBytes)
}

// write stores d by compare-and-set and reports whether it did; a failure is counted
// and logged.
func (s *Service) write(lt *leaderTerm, d *events.Decision) bool {
	ctx, cancel := context.WithTimeout(lt.t.Ctx, max(s.cfg.Interval, 2*time.Second))
	defer cancel()
	_, err := s.store.Write(ctx, d)
	if err == nil {
		return true
	}
	lt.failures++
	switch {
	case errors.Is(err, ErrStale):
		s.m.decisions.WithLabelValues("stale").Inc()
		lt.log.Warn("not storing the decision: a newer leader term has stored one", "err", err)
	case lt.t.Ctx.Err() != nil:
		s.m.decisions.WithLabelValues("stale").Inc()
	default:
		s.m.decisions.WithLabelValues("failed").Inc()
		lt.log.Warn("storing the sampling decision failed; retrying next interval", "err", err, "failures", lt.failures)
	}
	return false
}

// logStored logs a stored decision: at info for the first of the term and the first
// after failures (so a leader that recovered shows at info), at debug otherwise.
func (s *Service) logStored(lt *leaderTerm, d *events.Decision, obs strategy.Observation) {
	msg, level := "sampling decision stored", slog.LevelDebug
	switch {
	case lt.written == 0:
		msg, level = "first sampling decision of this term stored", slog.LevelInfo
	case lt.failures > 0:
		msg, level = "sampling decisions resumed", slog.LevelInfo
	}
	lt.log.Log(context.Background(), level, msg, "version", d.Version, "strategy", d.Strategy, "global_rate", d.GlobalRate,
		"degraded", d.Degraded, "services", len(d.Services), "kept_qps", d.Inputs.KeptQPS, "collectors", obs.Collectors, "routers", obs.Routers,
		"failed_attempts", lt.failures)
	lt.written++
	lt.failures = 0
}

// publishTransitions publishes the degradation transitions pending, now that a
// decision carrying them is stored.
func (s *Service) publishTransitions(lt *leaderTerm, d *events.Decision) {
	for _, tr := range lt.pending {
		to := "recovered"
		typ := events.EventSamplingRecovered
		if tr.Degraded {
			to, typ = "degraded", events.EventSamplingDegraded
		}
		s.m.transitions.WithLabelValues(to).Inc()
		lt.log.Warn("sampling "+to, "reason", tr.Reason, "version", d.Version)
		s.publish(typ, d, tr.Reason)
	}
	lt.pending = nil
}

// publish sends a sampling event summarising d. The OTLP_EVENTS stream captures it.
func (s *Service) publish(typ events.EventType, d *events.Decision, reason string) {
	e := events.SamplingEvent{
		V: events.SamplingEventVersion, Event: typ, Version: d.Version, Token: d.Token, Leader: d.Leader,
		Strategy: d.Strategy, GlobalRate: d.GlobalRate, DefaultRate: d.DefaultRate, Degraded: d.Degraded,
		Utilization: d.Inputs.Utilization, FleetQPS: d.Inputs.FleetQPS, KeptQPS: d.Inputs.KeptQPS,
		Services: len(d.Services), Reason: reason, At: d.At,
	}
	m, err := events.NewMsg(s.d.NS.EventSubject(typ), events.Source(events.ServiceSampler, s.d.Instance), e)
	if err != nil {
		s.log.Error("sampling event cannot be encoded", "err", err)
		return
	}
	m.Header.Set(events.HeaderID, e.EventID())
	m.Header.Set(jetstream.MsgIDHeader, e.EventID())
	if err := s.d.NC.PublishMsg(m); err != nil {
		s.log.Warn("publishing a sampling event failed", "event", typ, "err", err)
	}
}

// fit encodes d, leaving out the least busy services when the value would exceed
// maxBytes (they then get their rule's or the default rate). It sets d.Truncated.
func fit(d *events.Decision, maxBytes int) ([]byte, error) {
	for {
		data, err := json.Marshal(d)
		if err != nil {
			return nil, err
		}
		if len(data) <= maxBytes || len(d.Services) == 0 {
			return data, nil
		}
		per := len(data) / max(len(d.Services), 1)
		drop := min(len(d.Services), (len(data)-maxBytes)/max(per, 1)+1+len(d.Services)/100)
		names := make([]string, 0, len(d.Services))
		for n := range d.Services {
			names = append(names, n)
		}
		slices.SortFunc(names, func(a, b string) int {
			qa, qb := d.Services[a].QPS, d.Services[b].QPS
			switch {
			case qa < qb:
				return -1
			case qa > qb:
				return 1
			}
			return -strings.Compare(a, b)
		})
		services := make(map[string]events.ServiceDecision, len(d.Services)-drop)
		for _, n := range names[drop:] {
			services[n] = d.Services[n]
		}
		d.Truncated += drop
		d.Services = services
	}
}

// Endpoints returns the micro endpoints of otlp-sampler: decision (the decision this
// replica serves; 503 before it has loaded one).
func (s *Service) Endpoints() []platform.Endpoint {
	return []platform.Endpoint{{
		Op:          "decision",
		Description: "the sampling decision this replica serves (rates per service, strategy, degraded, leader, token, inputs)",
		Handler: microapi.Handler(func(context.Context, micro.Request) (any, error) {
			d := s.api.Decision()
			if d == nil {
				return nil, microapi.Errorf(microapi.CodeUnavailable, "the sampler has not loaded a decision yet")
			}
			return d, nil
		}),
	}}
}
