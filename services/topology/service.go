package topologysvc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// ErrNotReady is returned by queries before the service has loaded the registry and
// built its first view.
var ErrNotReady = errors.New("topology not ready yet")

// Deps are what New needs besides the Config.
type Deps struct {
	// NC is the NATS connection; JS a JetStream context on it.
	NC *nats.Conn
	JS jetstream.JetStream
	// NS names the subjects, stream and buckets.
	NS events.Namespace
	// Instance is this replica's id (in replies and snapshots).
	Instance string
	// Log may be nil (discard).
	Log *slog.Logger
	// Registerer receives the otelfleet_topology_* metrics; nil means a private
	// registry.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is one topology replica: it ingests registrations and load reports into a
// State, rebuilds its view every RefreshInterval, answers queries from that view, and
// publishes snapshots while it leads (Lead). Create it with New, call Start once the
// buckets exist, and Stop when done.
type Service struct {
	cfg   Config
	d     Deps
	log   *slog.Logger
	m     *metrics
	state *State
	now   func() time.Time

	view    atomic.Pointer[view]
	leading atomic.Bool
	ready   chan struct{}
	// caughtUp is closed once the first load consumer has delivered the last report of
	// every collector (or found none), so the first view does not show everyone stale.
	caughtUp     chan struct{}
	caughtUpOnce sync.Once

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  sync.Once
	stop   sync.Once
}

// New returns a topology service; nothing runs until Start.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.NC == nil || d.JS == nil {
		return nil, errors.New("topology: a NATS connection and JetStream context are required")
	}
	if d.NS == (events.Namespace{}) {
		d.NS = events.Default
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Registerer == nil {
		d.Registerer = prometheus.NewRegistry()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	m, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, fmt.Errorf("topology: metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{cfg: cfg, d: d, log: d.Log, m: m, state: NewState(cfg), now: d.Now,
		ready: make(chan struct{}), caughtUp: make(chan struct{}), ctx: ctx, cancel: cancel}, nil
}

// Start begins ingesting from the registry bucket b.Registry, the sampling bucket
// b.Sampling and the load stream, and rebuilding the view. It returns at once; Ready is
// closed once the registry's current content is loaded, the last load report of every
// collector has been read (or StartupLoadWait has passed), and the first view is built.
// Calling it again does nothing.
func (s *Service) Start(b *natsconn.Buckets) {
	s.start.Do(func() {
		registryLoaded := make(chan struct{})
		s.wg.Add(4)
		go func() { defer s.wg.Done(); s.watchRegistry(b.Registry, registryLoaded) }()
		go func() { defer s.wg.Done(); s.watchSampling(b.Sampling) }()
		go func() {
			defer s.wg.Done()
			select {
			case <-registryLoaded:
			case <-s.ctx.Done():
				return
			}
			s.consumeLoad()
		}()
		go func() { defer s.wg.Done(); s.buildLoop(registryLoaded) }()
	})
}

// Ready is closed once the service answers queries.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Stop stops every goroutine Start began and waits for them. Safe to call more than
// once, and without Start.
func (s *Service) Stop() {
	s.stop.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
}

// State returns the service's mutable state (for tests and tools).
func (s *Service) State() *State { return s.state }

// watchRegistry keeps the state's registrations in step with the registry bucket. The
// end of the first replay closes loaded. A watch re-created later (after a reconnect)
// replays the bucket again; at the end of that replay the registered collectors are
// reconciled with the bucket's current keys, so a collector whose registration expired
// while this replica was cut off (its marker gone by the time it reconnected) is
// forgotten too.
func (s *Service) watchRegistry(kv jetstream.KeyValue, loaded chan struct{}) {
	first := true
	kvwatch.Run(s.ctx, s.d.NC, kv, events.KindCollector+".>", func(e jetstream.KeyValueEntry) {
		if e == nil {
			if first {
				first = false
				close(loaded)
				return
			}
			s.resync(kv)
			return
		}
		k, ok := collectorFromKey(e.Key())
		if !ok {
			s.m.registrations.WithLabelValues("rejected").Inc()
			s.log.Warn("ignoring registry key that is not collector.<region>.<id>", "key", e.Key())
			return
		}
		switch e.Operation() {
		case jetstream.KeyValuePut:
			r, err := decodeRegistration(k, e.Value())
			if err != nil {
				s.m.registrations.WithLabelValues("rejected").Inc()
				s.log.Warn("ignoring malformed registration", "key", e.Key(), "revision", e.Revision(), "err", err)
				if s.state.DeleteRegistration(k.region, k.id) {
					s.log.Info("collector forgotten: its registration is no longer valid", "key", e.Key())
				}
				return
			}
			s.state.PutRegistration(&r)
			s.m.registrations.WithLabelValues("put").Inc()
		default: // delete, purge, or an expiry marker
			op := "delete"
			if e.Operation() == jetstream.KeyValuePurge {
				op = "expire"
			}
			s.m.registrations.WithLabelValues(op).Inc()
			if s.state.DeleteRegistration(k.region, k.id) {
				s.log.Debug("collector forgotten", "key", e.Key(), "op", op)
			}
		}
	}, func(err error) { s.log.Warn("registry watch failed, retrying", "err", err) })
}

// resync forgets registered collectors whose keys are no longer in the registry bucket.
// It runs on the watch goroutine, so no registry update is applied meanwhile; a key
// written after the replay is listed (and kept), a key deleted after it is not (and its
// delete marker, delivered later, finds nothing to forget).
func (s *Service) resync(kv jetstream.KeyValue) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	lister, err := kv.ListKeysFiltered(ctx, events.KindCollector+".>")
	if err != nil {
		s.log.Warn("registry resync: listing keys failed; expired collectors may linger until their next change", "err", err)
		return
	}
	defer func() { _ = lister.Stop() }()
	keep := map[collectorKey]struct{}{}
	for key := range lister.Keys() {
		if k, ok := collectorFromKey(key); ok {
			keep[k] = struct{}{}
		}
	}
	if ctx.Err() != nil {
		s.log.Warn("registry resync: listing keys timed out")
		return
	}
	if n := s.state.RetainRegistrations(keep); n > 0 {
		s.log.Info("forgot collectors no longer in the registry after a resync", "collectors", n)
	}
}

// watchSampling follows the sampler's decision for the effective sampling rate.
func (s *Service) watchSampling(kv jetstream.KeyValue) {
	if kv == nil {
		return
	}
	kvwatch.Run(s.ctx, s.d.NC, kv, events.DecisionKey, func(e jetstream.KeyValueEntry) {
		if e == nil {
			return
		}
		if e.Operation() != jetstream.KeyValuePut {
			s.state.SetSamplingRate(nil)
			return
		}
		if r, ok := SamplingRate(e.Value()); ok {
			s.state.SetSamplingRate(&r)
		} else {
			s.log.Debug("sampling decision has no global rate this build understands", "revision", e.Revision())
		}
	}, func(err error) { s.log.Debug("sampling decision watch failed, retrying", "err", err) })
}

// consumeLoad follows the load stream (see loadreport.Follower.Follow).
func (s *Service) consumeLoad() {
	loadreport.Follower{NC: s.d.NC, JS: s.d.JS, NS: s.d.NS, Log: s.log}.Follow(s.ctx, s.ingestLoad, s.markCaughtUp)
}

func (s *Service) markCaughtUp() { s.caughtUpOnce.Do(func() { close(s.caughtUp) }) }

// StartupLoadWait bounds how long a starting replica waits for the last load report of
// every collector before it reports ready anyway.
const StartupLoadWait = 5 * time.Second

// ingestLoad decodes one load report message and records it; a malformed one is counted
// and dropped.
func (s *Service) ingestLoad(msg jetstream.Msg) {
	md, mdErr := msg.Metadata()
	r, reason, err := DecodeLoad(s.d.NS, msg.Subject(), msg.Headers(), msg.Data())
	if err != nil {
		s.m.rejected.WithLabelValues(reason).Inc()
		s.log.Debug("load report rejected", "subject", msg.Subject(), "reason", reason, "err", err)
		return
	}
	now := s.now()
	at := now
	if mdErr == nil && !md.Timestamp.IsZero() {
		at = md.Timestamp
	}
	switch s.state.PutLoad(&r, at, now) {
	case LoadAccepted:
		s.m.reports.WithLabelValues("accepted").Inc()
	case LoadUnregistered:
		s.m.reports.WithLabelValues("unregistered").Inc()
	case LoadOutdated:
		s.m.reports.WithLabelValues("outdated").Inc()
	case LoadOverflow:
		s.m.rejected.WithLabelValues(RejectOverflow).Inc()
	}
}

// buildLoop rebuilds the view every RefreshInterval once the registry is loaded.
func (s *Service) buildLoop(registryLoaded <-chan struct{}) {
	select {
	case <-registryLoaded:
	case <-s.ctx.Done():
		return
	}
	select {
	case <-s.caughtUp:
	case <-time.After(StartupLoadWait):
		s.log.Warn("the last load reports were not all read in time; starting with what has arrived", "waited", StartupLoadWait)
	case <-s.ctx.Done():
		return
	}
	s.rebuild()
	close(s.ready)
	t := time.NewTicker(s.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.rebuild()
		}
	}
}

// rebuild builds a new view from the state and publishes it to queries.
func (s *Service) rebuild() *view {
	start := time.Now()
	v, dropped := s.state.Build(s.now())
	s.m.buildSeconds.Observe(time.Since(start).Seconds())
	if dropped > 0 {
		s.m.rejected.WithLabelValues(RejectUnregistered).Add(float64(dropped))
	}
	_, unregistered := s.state.Counts()
	s.m.unregistered.Set(float64(unregistered))
	s.m.observe(v)
	s.view.Store(v)
	return v
}

// current returns the latest view, or ErrNotReady.
func (s *Service) current() (*view, error) {
	v := s.view.Load()
	if v == nil {
		return nil, ErrNotReady
	}
	return v, nil
}

// Lead publishes a snapshot every Interval until t.Ctx is done: the leader work handed
// to election.Run. The first snapshot goes out at once.
func (s *Service) Lead(t election.Term) {
	s.leading.Store(true)
	defer s.leading.Store(false)
	s.log.Info("leading: publishing topology snapshots", "token", t.Token, "interval", s.cfg.Interval)
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	var seq uint64
	for {
		select {
		case <-t.Ctx.Done():
			return
		case <-s.ctx.Done():
			return
		case <-s.ready:
		}
		seq++
		if err := s.publishSnapshot(t.Ctx, t.Token, seq); err != nil {
			s.m.snapshots.WithLabelValues("error").Inc()
			if t.Ctx.Err() == nil {
				s.log.Warn("publishing the topology snapshot failed", "err", err)
			}
		} else {
			s.m.snapshots.WithLabelValues("ok").Inc()
		}
		select {
		case <-t.Ctx.Done():
			return
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Snapshot returns the compact snapshot of the current view.
func (s *Service) Snapshot(token, seq uint64) (events.TopologySnapshot, error) {
	v, err := s.current()
	if err != nil {
		return events.TopologySnapshot{}, err
	}
	snap := events.TopologySnapshot{V: events.TopologySnapshotVersion, Leader: s.d.Instance, Token: token, Seq: seq,
		Collectors: v.global.Collectors, Global: v.global, Regions: make([]events.RegionStats, len(v.regions)), At: v.built.UTC()}
	for i := range v.regions {
		snap.Regions[i] = v.regions[i].Stats
	}
	return snap, nil
}

func (s *Service) publishSnapshot(ctx context.Context, token, seq uint64) error {
	snap, err := s.Snapshot(token, seq)
	if err != nil {
		return err
	}
	msg, err := events.NewMsg(s.d.NS.EventSubject(events.EventTopologySnapshot), "otelfleet/topology/"+s.d.Instance, snap)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = s.d.JS.PublishMsg(pctx, msg)
	return err
}

// Get answers otlp.topology.get: every region's statistics, and collectors in pages
// (see GetRequest). An unknown region yields an empty region list, not an error.
func (s *Service) Get(req GetRequest) (Topology, error) {
	if req.Region != "" {
		if err := events.CheckToken("region", req.Region); err != nil {
			return Topology{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
	}
	limit := req.Limit
	switch {
	case limit < 0:
		return Topology{}, fmt.Errorf("%w: limit %d: must be >= 0", ErrBadRequest, limit)
	case limit == 0:
		limit = DefaultPageLimit
	case limit > MaxPageLimit:
		limit = MaxPageLimit
	}
	var after collectorKey
	if req.After != "" {
		r, id, ok := strings.Cut(req.After, "/")
		if !ok {
			return Topology{}, fmt.Errorf("%w: after %q: want <region>/<id> (the next of the previous page)", ErrBadRequest, req.After)
		}
		after = collectorKey{r, id}
	}
	v, err := s.current()
	if err != nil {
		return Topology{}, err
	}
	return s.render(v, renderOpts{region: req.Region, after: after, limit: limit, statsOnly: req.StatsOnly}), nil
}

// ErrBadRequest is wrapped by query errors caused by the request itself.
var ErrBadRequest = errors.New("bad request")

// renderOpts selects what render copies.
type renderOpts struct {
	// region keeps only that region (all when empty).
	region string
	// after skips collectors up to and including this key (none when zero).
	after collectorKey
	// limit bounds the collectors listed in total (unbounded when 0); Next is set when
	// it cut the list.
	limit int
	// perRegion bounds the collectors listed per region (unbounded when 0).
	perRegion int
	// attention picks, when perRegion cuts a region, the collectors most in need of
	// attention (see attentionFirst) instead of the first by id; either way they are
	// listed in id order.
	attention bool
	// statsOnly lists no collectors.
	statsOnly bool
}

// render copies the view into a reply as o says. Statistics always cover every
// collector; Region.Omitted counts the collectors not listed.
func (s *Service) render(v *view, o renderOpts) Topology {
	out := Topology{GeneratedAt: v.built.UTC(), Instance: s.d.Instance, Leader: s.leading.Load(), Global: v.global, Regions: []Region{}}
	left, more := o.limit, false
	var last *Collector
	for i := range v.regions {
		r := &v.regions[i]
		if o.region != "" && r.Region != o.region {
			continue
		}
		reg := Region{Region: r.Region, Stats: r.Stats, Collectors: []Collector{}}
		if !o.statsOnly {
			cs := afterCursor(r.Region, r.Collectors, o.after)
			n := len(cs)
			if o.perRegion > 0 {
				n = min(n, o.perRegion)
			}
			if o.limit > 0 {
				n = min(n, left)
				left -= n
				more = more || n < len(cs)
			}
			if n > 0 {
				last = &cs[n-1]
			}
			if o.attention && n < len(cs) && o.limit == 0 {
				reg.Collectors = attentionFirst(cs, n)
			} else {
				reg.Collectors = append(reg.Collectors, cs[:n]...)
			}
		}
		reg.Omitted = len(r.Collectors) - len(reg.Collectors)
		out.Regions = append(out.Regions, reg)
	}
	if more && last != nil {
		out.Next = last.Region + "/" + last.ID
	}
	return out
}

// attentionFirst returns the n collectors of cs (sorted by id) that most need
// attention, in id order: unhealthy, then degraded, then stale, then the highest
// utilisation; ties by id.
func attentionFirst(cs []Collector, n int) []Collector {
	rank := func(c *Collector) int {
		switch c.Status {
		case StatusUnhealthy:
			return 0
		case StatusDegraded:
			return 1
		case StatusStale:
			return 2
		default:
			return 3
		}
	}
	idx := make([]int, len(cs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		ca, cb := &cs[a], &cs[b]
		if c := cmp.Compare(rank(ca), rank(cb)); c != 0 {
			return c
		}
		if c := cmp.Compare(cb.Utilization, ca.Utilization); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	idx = idx[:n]
	slices.Sort(idx)
	out := make([]Collector, n)
	for i, j := range idx {
		out[i] = cs[j]
	}
	return out
}

// afterCursor returns the collectors of region (sorted by id) that come after the
// cursor key in (region, id) order.
func afterCursor(region string, cs []Collector, after collectorKey) []Collector {
	switch {
	case after.region == "" || region > after.region:
		return cs
	case region < after.region:
		return nil
	}
	lo, hi := 0, len(cs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cs[m].ID <= after.id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return cs[lo:]
}

// BestOf answers otlp.topology.best: the eligible collector with the best score (see
// Best), with the request's weights or the configured ones.
func (s *Service) BestOf(req BestRequest) (BestReply, error) {
	w := s.cfg.Weights
	if req.LoadWeight != nil {
		w.Load = *req.LoadWeight
	}
	if req.LatencyWeight != nil {
		w.Latency = *req.LatencyWeight
	}
	if req.CapacityWeight != nil {
		w.Capacity = *req.CapacityWeight
	}
	if err := w.Validate(); err != nil {
		return BestReply{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if req.Region != "" {
		if err := events.CheckToken("region", req.Region); err != nil {
			return BestReply{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
	}
	v, err := s.current()
	if err != nil {
		return BestReply{}, err
	}
	ch, err := Best(v.regions, req.Region, w)
	if err != nil {
		return BestReply{}, err
	}
	c := &ch.Collector
	return BestReply{Region: c.Region, ID: c.ID, Address: c.Address, Score: ch.Score, Fallback: ch.Fallback, Reason: ch.Reason,
		RequestedRegion: req.Region, Candidates: ch.Candidates, Utilization: c.Utilization, QPS: c.QPS,
		CapacityQPS: c.CapacityQPS, AvgLatencyMS: c.AvgLatencyMS, Weights: w}, nil
}
