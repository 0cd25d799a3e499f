package registrysvc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
)

// Publisher publishes to a JetStream stream and waits for the acknowledgement;
// jetstream.JetStream implements it.
type Publisher interface {
	PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Deps are what the service talks to.
type Deps struct {
	// NC (may be nil) is the connection under the bucket Run watches: a reconnect
	// re-creates the watch at once.
	NC *nats.Conn
	// Publisher publishes events to the OTLP_EVENTS stream (a jetstream.JetStream).
	Publisher Publisher
	// NS names the subjects and streams; the zero value means events.Default.
	NS events.Namespace
	// Instance names this replica in ce-source.
	Instance string
	// Log may be nil (discard).
	Log *slog.Logger
	// Registerer receives the metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
}

// Service watches the registry bucket, keeps the live registrations in memory for the
// otlp.registry.* endpoints and the metrics, and publishes a lifecycle event for every
// transition. Create it with New and run it with Run.
type Service struct {
	cfg    Config
	nc     *nats.Conn
	pub    Publisher
	ns     events.Namespace
	source string
	log    *slog.Logger
	m      *metrics

	loaded   chan struct{}
	loadOnce sync.Once

	mu   sync.RWMutex
	live map[string]record // key -> last value seen
}

// record is what the service keeps of one live registration.
type record struct {
	reg events.Registration
	rev uint64
}

// New returns the service; an invalid cfg fails with ErrConfig.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns := d.NS
	if ns == (events.Namespace{}) {
		ns = events.Default
	}
	return &Service{
		cfg: cfg, nc: d.NC, pub: d.Publisher, ns: ns, source: events.Source(events.ServiceRegistry, d.Instance), log: log, m: newMetrics(d.Registerer),
		loaded: make(chan struct{}), live: map[string]record{},
	}, nil
}

// Loaded is closed once the first full load of the bucket is done.
func (s *Service) Loaded() <-chan struct{} { return s.loaded }

// Run watches kv (the registry bucket) until ctx ends. The watch is re-created after
// every failure and every NATS reconnect; each re-created watch replays the bucket, and
// the replay is reconciled with what the service knew, so transitions during an outage
// are published too (a key that vanished entirely counts as expired).
func (s *Service) Run(ctx context.Context, kv jetstream.KeyValue) error {
	s.checkDuplicatesWindow(ctx)
	var (
		seen      map[string]bool // keys of the replay under way
		replaying bool
	)
	kvwatch.Watch(ctx, s.nc, kv, "", kvwatch.Handler{
		Start: func() { seen, replaying = map[string]bool{}, true },
		Entry: func(e jetstream.KeyValueEntry) {
			if e == nil {
				if replaying {
					replaying = false
					s.replayed(ctx, seen)
					seen = nil
				}
				return
			}
			if replaying {
				seen[e.Key()] = true
			}
			s.apply(ctx, e, replaying)
		},
		Err: func(err error) { s.log.Warn("registry watch failed, re-creating", "err", err) },
	})
	return nil
}

// first reports whether the first load is still to come.
func (s *Service) first() bool {
	select {
	case <-s.loaded:
		return false
	default:
		return true
	}
}

// replayed ends a replay: keys the service knew that the replay did not contain have
// vanished (expired while the watch was down, and their markers aged out too).
func (s *Service) replayed(ctx context.Context, seen map[string]bool) {
	if !s.first() {
		s.mu.Lock()
		var gone []string
		for key := range s.live {
			if !seen[key] {
				gone = append(gone, key)
			}
		}
		s.mu.Unlock()
		slices.Sort(gone)
		for _, key := range gone {
			s.mu.Lock()
			rec, ok := s.live[key]
			if ok {
				delete(s.live, key)
				s.m.add(rec.reg, -1)
			}
			s.mu.Unlock()
			if ok {
				s.m.expirations.WithLabelValues(rec.reg.InstanceKind).Inc()
				s.publish(ctx, events.EventRegistryExpired, key, rec.rev, &rec.reg, nil)
			}
		}
	}
	s.loadOnce.Do(func() {
		s.mu.RLock()
		n := len(s.live)
		s.mu.RUnlock()
		s.log.Info("registry loaded", "registrations", n)
		close(s.loaded)
	})
}

// apply handles one bucket entry. During the first replay it only loads state (and
// catches up recent registrations); afterwards every entry is compared with what the
// service knew and a transition publishes its event.
func (s *Service) apply(ctx context.Context, e jetstream.KeyValueEntry, replaying bool) {
	key, rev := e.Key(), e.Revision()
	initial := replaying && s.first()
	switch e.Operation() {
	case jetstream.KeyValuePut:
		reg, err := events.DecodeRegistration(e.Value())
		if err == nil {
			if k, kerr := reg.Key(); kerr != nil || k != key {
				err = fmt.Errorf("registration for %q stored at key %q", k, key)
			}
		}
		if err != nil {
			s.m.invalid.Inc()
			s.log.Warn("ignoring an invalid registry value", "key", key, "revision", rev, "err", err)
			return
		}
		s.mu.Lock()
		prev, known := s.live[key]
		if known && rev <= prev.rev {
			s.mu.Unlock()
			return // replayed, already seen
		}
		s.live[key] = record{reg: reg, rev: rev}
		if known {
			s.m.add(prev.reg, -1)
		}
		s.m.add(reg, 1)
		s.mu.Unlock()
		switch {
		case initial:
			if s.cfg.CatchUp > 0 && time.Since(reg.RegisteredAt) < s.catchUp() {
				s.publish(ctx, events.EventRegistryRegistered, key, rev, &reg, nil)
			}
		case !known || !reg.RegisteredAt.Equal(prev.reg.RegisteredAt):
			s.publish(ctx, events.EventRegistryRegistered, key, rev, &reg, nil)
		default:
			if changed := reg.Changed(prev.reg); len(changed) > 0 {
				s.publish(ctx, events.EventRegistryUpdated, key, rev, &reg, changed)
			}
		}
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		s.mu.Lock()
		prev, known := s.live[key]
		if known {
			delete(s.live, key)
			s.m.add(prev.reg, -1)
		}
		s.mu.Unlock()
		if !known || initial {
			return // a marker of something already gone
		}
		if e.Operation() == jetstream.KeyValueDelete {
			s.publish(ctx, events.EventRegistryDeregistered, key, rev, &prev.reg, nil)
			return
		}
		s.m.expirations.WithLabelValues(prev.reg.InstanceKind).Inc()
		s.publish(ctx, events.EventRegistryExpired, key, rev, &prev.reg, nil)
	}
}

// publish sends one event to the OTLP_EVENTS stream with a Nats-Msg-Id (and ce-id)
// derived from the transition, retrying until the publish timeout.
func (s *Service) publish(ctx context.Context, t events.EventType, key string, rev uint64, reg *events.Registration, changed []string) {
	ev := events.RegistryEvent{
		V: events.RegistryEventVersion, Event: t, Key: key, Revision: rev, Changed: changed,
		Registration: reg, At: time.Now().UTC(),
	}
	if reg != nil {
		ev.InstanceKind, ev.ID, ev.Region, ev.Name = reg.InstanceKind, reg.ID, reg.Region, reg.Name
	}
	id := ev.EventID()
	m, err := events.NewMsg(s.ns.EventSubject(t), s.source, ev)
	if err != nil {
		s.m.events.WithLabelValues(string(t), "failed").Inc()
		s.log.Error("cannot encode a registry event", "event", t, "key", key, "err", err)
		return
	}
	m.Header.Set(events.HeaderID, id)
	pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 50*time.Millisecond, time.Second, 0
	var ack *jetstream.PubAck
	err = backoff.Retry(func() error {
		var err error
		ack, err = s.pub.PublishMsg(pctx, m, jetstream.WithMsgID(id))
		if errors.Is(err, nats.ErrConnectionClosed) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(b, pctx))
	switch {
	case err != nil && ctx.Err() != nil:
		s.m.events.WithLabelValues(string(t), "failed").Inc()
		s.log.Info("registry event not published: shutting down (other replicas publish it)", "event", t, "key", key, "id", id)
	case err != nil:
		s.m.events.WithLabelValues(string(t), "failed").Inc()
		s.log.Error("registry event not published", "event", t, "key", key, "id", id, "err", err)
	case ack.Duplicate:
		s.m.events.WithLabelValues(string(t), "duplicate").Inc()
		s.log.Debug("registry event already published by another replica", "event", t, "key", key, "id", id)
	default:
		s.m.events.WithLabelValues(string(t), "published").Inc()
		s.log.Info("registry event", "event", t, "key", key, "revision", rev, "changed", changed)
	}
}

// catchUp is the effective catch-up window.
func (s *Service) catchUp() time.Duration {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cfg.CatchUp
}

// checkDuplicatesWindow reads the events stream's duplicates window, clamps the
// catch-up window to half of it and warns when it is too short for replicas that race
// to publish the same transition.
func (s *Service) checkDuplicatesWindow(ctx context.Context) {
	js, ok := s.pub.(jetstream.JetStream)
	if !ok {
		return
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := js.Stream(ictx, s.ns.EventsStream())
	if err != nil {
		s.log.Warn("cannot read the events stream's duplicates window", "stream", s.ns.EventsStream(), "err", err)
		return
	}
	window := st.CachedInfo().Config.Duplicates
	if window < 10*time.Second {
		s.log.Warn("the events stream's duplicates window is short: registry replicas may publish a transition twice",
			"stream", s.ns.EventsStream(), "duplicates", window)
	}
	s.mu.Lock()
	if s.cfg.CatchUp > window/2 {
		s.cfg.CatchUp = window / 2
	}
	s.mu.Unlock()
}

// Filter selects registrations; empty fields match everything.
type Filter struct {
	// Kind is "collector" or "service".
	Kind string `json:"kind,omitempty"`
	// Region matches the registration's region.
	Region string `json:"region,omitempty"`
	// Health is "healthy", "degraded" or "unhealthy".
	Health string `json:"health,omitempty"`
	// Name matches a service name (or a collector's display name).
	Name string `json:"name,omitempty"`
}

// Validate checks the filter's values.
func (f Filter) Validate() error {
	var errs []error
	if f.Kind != "" && f.Kind != events.KindCollector && f.Kind != events.KindService {
		errs = append(errs, fmt.Errorf("kind %q: want collector or service", f.Kind))
	}
	if f.Health != "" && !events.HealthStatus(f.Health).Valid() {
		errs = append(errs, fmt.Errorf("health %q: want healthy, degraded or unhealthy", f.Health))
	}
	return errors.Join(errs...)
}

func (f Filter) match(r events.Registration) bool {
	return (f.Kind == "" || r.InstanceKind == f.Kind) &&
		(f.Region == "" || r.Region == f.Region) &&
		(f.Health == "" || string(r.Health.Status) == f.Health) &&
		(f.Name == "" || r.Name == f.Name)
}

// List returns the live registrations matching f, sorted by kind, region, name and id.
func (s *Service) List(f Filter) []events.Registration {
	s.mu.RLock()
	out := make([]events.Registration, 0, len(s.live))
	for _, rec := range s.live {
		if f.match(rec.reg) {
			out = append(out, rec.reg)
		}
	}
	s.mu.RUnlock()
	SortRegistrations(out)
	return out
}

// Get returns the live registration at key.
func (s *Service) Get(key string) (events.Registration, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, ok := s.live[key]
	return rec.reg, ok
}

// SortRegistrations orders registrations by kind, region, name and id.
func SortRegistrations(rs []events.Registration) {
	slices.SortFunc(rs, func(a, b events.Registration) int {
		return cmp.Or(
			strings.Compare(a.InstanceKind, b.InstanceKind),
			strings.Compare(a.Region, b.Region),
			strings.Compare(a.Name, b.Name),
			strings.Compare(a.ID, b.ID),
		)
	})
}
