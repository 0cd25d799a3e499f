package rollout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/promreg"
)

// ErrConfig is wrapped by every Config validation error.
var ErrConfig = errors.New("invalid rollout config")

// Config tunes the controller.
type Config struct {
	// Tick is how often every group is re-evaluated without a change (soak times and
	// wave timeouts end on a tick); changes in the buckets are acted on at once.
	Tick time.Duration
	// SamplingThreshold is the relative change of a rendered sampling placeholder
	// (new/old - 1, in either direction) beyond which the group's config is rendered
	// again and rolled out; smaller moves keep the config as it is.
	SamplingThreshold float64
}

// DefaultConfig returns a 250 ms tick and a 10% sampling threshold.
func DefaultConfig() Config { return Config{Tick: 250 * time.Millisecond, SamplingThreshold: 0.1} }

// Validate checks the values.
func (c Config) Validate() error {
	var errs []error
	if c.Tick < 10*time.Millisecond || c.Tick > time.Minute {
		errs = append(errs, fmt.Errorf("%w: --rollout-tick %v: must be in [10ms, 1m]", ErrConfig, c.Tick))
	}
	if !(c.SamplingThreshold >= 0 && c.SamplingThreshold <= 10) {
		errs = append(errs, fmt.Errorf("%w: --rollout-sampling-threshold %v: must be in [0, 10]", ErrConfig, c.SamplingThreshold))
	}
	return errors.Join(errs...)
}

// Bind registers the knobs.
func (c *Config) Bind(k *knobs.Set) {
	k.Duration(&c.Tick, "rollout-tick", "ROLLOUT_TICK", c.Tick, "how often the rollout controller re-evaluates every group (soak and wave timeouts end on a tick)")
	k.Float(&c.SamplingThreshold, "rollout-sampling-threshold", "ROLLOUT_SAMPLING_THRESHOLD", c.SamplingThreshold, "relative change of a rendered sampling placeholder that re-renders and rolls out a collector config")
}

// Controller runs rollouts while its Run lasts (one leader term).
type Controller struct {
	cfg    Config
	nc     *nats.Conn
	ns     events.Namespace
	source string
	log    *slog.Logger
	now    func() time.Time
	// events counts otelfleet_rollout_events_total{type}: each rollout event once its
	// state is stored.
	events *prometheus.CounterVec
	tracer trace.Tracer // set by Trace
}

// eventTypes are the rollout events, the type label without "rollout.".
var eventTypes = []events.EventType{events.EventRolloutStarted, events.EventRolloutWave, events.EventRolloutCompleted, events.EventRolloutFailed, events.EventRolloutRolledBack}

// New returns a controller publishing events with nc under ns, as instance; reg (nil:
// unregistered) receives otelfleet_rollout_events_total, exported from the start by
// every replica, leader or not.
func New(cfg Config, nc *nats.Conn, ns events.Namespace, instance string, log *slog.Logger, reg prometheus.Registerer) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	counts, err := promreg.Shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otelfleet_rollout_events_total",
		Help: "Collector config rollout events this replica's controller stored, by type: started, wave, completed, failed, rolled_back.",
	}, []string{"type"}))
	if err != nil {
		return nil, err
	}
	for _, t := range eventTypes {
		counts.WithLabelValues(strings.TrimPrefix(string(t), "rollout."))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ns == (events.Namespace{}) {
		ns = events.Default
	}
	return &Controller{cfg: cfg, nc: nc, ns: ns, source: events.Source(events.ServiceOpAMP, instance), log: log.With("component", "rollout"), now: time.Now, events: counts}, nil
}

// stored is a decoded value and its revision.
type stored[T any] struct {
	v   T
	rev uint64
}

// caches are the controller's view of the buckets, filled by the watches.
type caches struct {
	mu       sync.Mutex
	docs     map[string]fleetconfig.CollectorConfig // by group
	agents   map[string]events.AgentState           // by uid
	desired  map[string]stored[events.DesiredConfig]
	states   map[string]stored[*events.RolloutState] // by group; v nil for a hostile value
	decision *events.Decision
	replayed map[string]bool
	// looked holds the groups whose last good document was read in the current replay
	// of the config watch: refused values cost at most one read per group per replay.
	looked map[string]bool
}

// Run runs rollouts on the buckets until ctx ends (the leader term's context); token
// is the term's fencing token. It returns nil when ctx ends. A new leader's Run resumes
// every rollout from its stored state.
func (c *Controller) Run(ctx context.Context, b *natsconn.Buckets, token uint64) error {
	cc := &caches{docs: map[string]fleetconfig.CollectorConfig{}, agents: map[string]events.AgentState{},
		desired: map[string]stored[events.DesiredConfig]{}, states: map[string]stored[*events.RolloutState]{}, replayed: map[string]bool{}}
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	watch := func(name string, kv jetstream.KeyValue, key string, start func(), entry func(jetstream.KeyValueEntry)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kvwatch.Watch(ctx, c.nc, kv, key, kvwatch.Handler{
				Start: func() { cc.mu.Lock(); start(); cc.mu.Unlock() },
				Entry: func(e jetstream.KeyValueEntry) {
					cc.mu.Lock()
					if e == nil {
						cc.replayed[name] = true
					} else {
						entry(e)
					}
					cc.mu.Unlock()
					poke()
				},
				Err: func(err error) { c.log.Warn("rollout watch failed; retrying", "watch", name, "err", err) },
			})
		}()
	}
	watch("config", b.Config, events.CollectorConfigKeyPrefix+">", func() { clear(cc.docs); cc.looked = map[string]bool{} }, func(e jetstream.KeyValueEntry) { c.onDoc(ctx, b.Config, cc, e) })
	watch("agents", b.Agents, events.AgentKeyPrefix+">", func() { clear(cc.agents) }, func(e jetstream.KeyValueEntry) { c.onAgent(cc, e) })
	watch("rollouts", b.Rollouts, ">", func() { clear(cc.desired); clear(cc.states) }, func(e jetstream.KeyValueEntry) { c.onRollout(cc, e) })
	watch("sampling", b.Sampling, events.DecisionKey, func() { cc.decision = nil }, func(e jetstream.KeyValueEntry) {
		if e.Operation() != jetstream.KeyValuePut {
			return
		}
		if d, err := events.DecodeDecision(e.Value()); err == nil {
			cc.decision = &d
		} else {
			c.log.Warn("ignoring an invalid sampling decision; keeping the last good one", "revision", e.Revision(), "err", err)
		}
	})
	t := time.NewTicker(c.cfg.Tick)
	defer t.Stop()
	// Changes are acted on at once, but at most once per gap: a fleet heart-beating
	// thousands of agent states costs one evaluation per gap, not one per heartbeat.
	gap := max(c.cfg.Tick/5, 10*time.Millisecond)
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-kick:
		case <-t.C:
		}
		c.evaluate(ctx, b, cc, token)
		pause.Reset(gap)
		select {
		case <-ctx.Done():
		case <-pause.C:
		}
	}
}

func (c *Controller) onDoc(ctx context.Context, kv jetstream.KeyValue, cc *caches, e jetstream.KeyValueEntry) {
	group, ok := events.CollectorGroupFromConfigKey(e.Key())
	if !ok {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(cc.docs, group)
		return
	}
	doc, err := fleetconfig.DecodeStoredCollector(e.Key(), group, e.Value())
	if err == nil {
		if old, ok := cc.docs[group]; !ok || doc.Version > old.Version {
			cc.docs[group] = doc
		}
		return
	}
	c.log.Error("collector config value refused; the last good version stays in force", "key", e.Key(), "revision", e.Revision(), "err", err)
	if _, ok := cc.docs[group]; ok {
		return
	}
	// Starting over a refused newest value: the last good one (history or the config
	// service's copy), read once per group per replay, however many values are refused.
	if cc.looked[group] {
		return
	}
	cc.looked[group] = true
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	good, err := configwatch.LastGood(hctx, kv, e.Key(), func(b []byte) (fleetconfig.CollectorConfig, error) {
		return fleetconfig.DecodeStoredCollector(e.Key(), group, b)
	}, func(d fleetconfig.CollectorConfig) uint64 { return d.Version })
	if err != nil {
		c.log.Warn("no good collector config to fall back to", "key", e.Key(), "err", err)
		return
	}
	cc.docs[group] = good.Doc
}

func (c *Controller) onAgent(cc *caches, e jetstream.KeyValueEntry) {
	uid := e.Key()[len(events.AgentKeyPrefix):]
	if e.Operation() != jetstream.KeyValuePut {
		delete(cc.agents, uid)
		return
	}
	var a events.AgentState
	if err := events.Decode(e.Value(), &a); err != nil || a.UID != uid {
		c.log.Warn("ignoring an invalid agent state", "key", e.Key(), "err", err)
		delete(cc.agents, uid)
		return
	}
	cc.agents[uid] = a
}

func (c *Controller) onRollout(cc *caches, e jetstream.KeyValueEntry) {
	key := e.Key()
	put := e.Operation() == jetstream.KeyValuePut
	switch {
	case len(key) > len(events.DesiredKeyPrefix) && key[:len(events.DesiredKeyPrefix)] == events.DesiredKeyPrefix:
		uid := key[len(events.DesiredKeyPrefix):]
		if old, ok := cc.desired[uid]; ok && old.rev > e.Revision() {
			return
		}
		var d events.DesiredConfig
		if !put || events.Decode(e.Value(), &d) != nil || d.UID != uid {
			delete(cc.desired, uid) // a hostile value is as good as none: it is rewritten
			return
		}
		cc.desired[uid] = stored[events.DesiredConfig]{d, e.Revision()}
	case len(key) > len(events.RolloutKeyPrefix) && key[:len(events.RolloutKeyPrefix)] == events.RolloutKeyPrefix:
		group := key[len(events.RolloutKeyPrefix):]
		if old, ok := cc.states[group]; ok && old.rev > e.Revision() {
			return
		}
		if !put {
			delete(cc.states, group)
			return
		}
		var st events.RolloutState
		if err := events.Decode(e.Value(), &st); err != nil || st.Group != group {
			c.log.Warn("invalid rollout state; the group starts over from its document", "key", key, "err", err)
			cc.states[group] = stored[*events.RolloutState]{nil, e.Revision()}
			return
		}
		cc.states[group] = stored[*events.RolloutState]{&st, e.Revision()}
	}
}

// evaluate runs Step for every group once every watch has replayed, and applies it.
func (c *Controller) evaluate(ctx context.Context, b *natsconn.Buckets, cc *caches, token uint64) {
	cc.mu.Lock()
	if len(cc.replayed) < 4 {
		cc.mu.Unlock()
		return
	}
	selectors := make(map[string]fleetconfig.Selector, len(cc.docs))
	for g, d := range cc.docs {
		selectors[g] = d.Selector
	}
	members := map[string]map[string]events.AgentState{}
	for uid, a := range cc.agents {
		if !acceptsRemoteConfig(a) {
			continue
		}
		g, ok := fleetconfig.GroupFor(selectors, a.Region, a.Attribute)
		if !ok {
			continue
		}
		if members[g] == nil {
			members[g] = map[string]events.AgentState{}
		}
		members[g][uid] = a
	}
	desired := make(map[string]events.DesiredConfig, len(cc.desired))
	for uid, d := range cc.desired {
		desired[uid] = d.v
	}
	type job struct {
		in  Input
		rev uint64
	}
	var jobs []job
	groups := map[string]bool{}
	for g := range cc.docs {
		groups[g] = true
	}
	for g := range cc.states {
		groups[g] = true
	}
	for g := range groups {
		st := cc.states[g]
		in := Input{Now: c.now(), Group: g, State: st.v, Agents: members[g], Desired: desired, Token: token}
		if doc, ok := cc.docs[g]; ok {
			in.Policy = doc.Rollout
			in.Target = c.render(g, doc, st.v, cc.decision)
		}
		jobs = append(jobs, job{in, st.rev})
	}
	cc.mu.Unlock()
	for _, j := range jobs {
		out := Step(j.in)
		if err := c.apply(ctx, b, cc, j.in.Group, j.rev, out); err != nil && ctx.Err() == nil {
			c.log.Warn("applying a rollout step failed; retrying on the next tick", "group", j.in.Group, "err", err)
		}
	}
}

func acceptsRemoteConfig(a events.AgentState) bool {
	return slices.Contains(a.Capabilities, "AcceptsRemoteConfig")
}

// render renders doc's config from the decision. The values of the state's target are
// kept while each new value is within SamplingThreshold of it, so a small move of the
// decision rolls nothing out. nil when the document has placeholders and no decision
// exists yet.
func (c *Controller) render(group string, doc fleetconfig.CollectorConfig, st *events.RolloutState, d *events.Decision) *events.RolloutConfig {
	ps, _ := fleetconfig.Placeholders(doc.Config)
	if len(ps) > 0 && d == nil {
		c.log.Debug("collector config waits for a sampling decision to render its placeholders", "group", group)
		return nil
	}
	text, vals := fleetconfig.Render(doc.Config, func(p fleetconfig.Placeholder) string {
		rate := d.DefaultRate
		if p.Arg != "" {
			rate = d.RateFor(p.Arg)
		}
		if doc.Selector.Region != "" {
			rate *= d.RegionRate(doc.Selector.Region)
		}
		return fleetconfig.FormatPercent(rate)
	})
	if st != nil && st.Target.Version == doc.Version && len(st.Target.Values) == len(vals) && st.Target.Config != "" && within(st.Target.Values, vals, c.cfg.SamplingThreshold) {
		t := st.Target
		return &t
	}
	sum := sha256.Sum256([]byte(text))
	return &events.RolloutConfig{Version: doc.Version, Hash: hex.EncodeToString(sum[:]), Config: text, Values: vals}
}

// within reports whether every value of now is within threshold (relative) of was.
func within(was, now map[string]string, threshold float64) bool {
	for k, v := range now {
		w, ok := was[k]
		if !ok {
			return false
		}
		a, err1 := strconv.ParseFloat(w, 64)
		b, err2 := strconv.ParseFloat(v, 64)
		if err1 != nil || err2 != nil {
			return w == v
		}
		if a == 0 {
			if b != 0 {
				return false
			}
			continue
		}
		if math.Abs(b/a-1) > threshold {
			return false
		}
	}
	return true
}

// apply writes out's desired configs, then the state by compare-and-set on rev, then
// publishes its events. A lost compare-and-set (another writer) is retried from fresh
// caches on the next evaluation.
func (c *Controller) apply(ctx context.Context, b *natsconn.Buckets, cc *caches, group string, rev uint64, out Output) (err error) {
	ctx, span := c.startStep(ctx, group, out)
	defer func() { endStep(span, err) }()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var errs []error
	for _, d := range out.Write {
		key, err := events.DesiredKey(d.UID)
		if err != nil {
			continue
		}
		data, err := events.Encode(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r, err := b.Rollouts.Put(wctx, key, data)
		if err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", key, err))
			continue
		}
		c.setDesired(cc, d.UID, stored[events.DesiredConfig]{d, r}, true)
	}
	for _, uid := range out.Delete {
		key, err := events.DesiredKey(uid)
		if err != nil {
			continue
		}
		if err := b.Rollouts.Delete(wctx, key); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", key, err))
			continue
		}
		c.setDesired(cc, uid, stored[events.DesiredConfig]{}, false)
	}
	if len(errs) > 0 || out.State == nil {
		return errors.Join(errs...)
	}
	key, err := events.RolloutKey(group)
	if err != nil {
		return err
	}
	data, err := events.Encode(*out.State)
	if err != nil {
		return err
	}
	var r uint64
	if rev == 0 {
		r, err = b.Rollouts.Create(wctx, key, data)
	} else {
		r, err = b.Rollouts.Update(wctx, key, data, rev)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	cc.mu.Lock()
	if old, ok := cc.states[group]; !ok || old.rev < r {
		cc.states[group] = stored[*events.RolloutState]{out.State, r}
	}
	cc.mu.Unlock()
	for _, ev := range out.Events {
		c.events.WithLabelValues(strings.TrimPrefix(ev.Type, "rollout.")).Inc()
		ev.At = c.now().UTC()
		c.log.Info("rollout "+ev.Type[len("rollout."):], "group", ev.Group, "rollout", ev.Rollout, "version", ev.Version, "wave", ev.Wave, "waves", ev.Waves, "reason", ev.Reason)
		msg, err := events.NewMsg(c.ns.EventSubject(events.EventType(ev.Type)), c.source, ev)
		if err == nil {
			platform.InjectTrace(ctx, msg.Header)
			err = c.nc.PublishMsg(msg)
		}
		if err != nil {
			c.log.Error("publishing a rollout event failed", "type", ev.Type, "group", ev.Group, "err", err)
		}
	}
	return nil
}

func (c *Controller) setDesired(cc *caches, uid string, d stored[events.DesiredConfig], put bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if !put {
		delete(cc.desired, uid)
		return
	}
	if old, ok := cc.desired[uid]; !ok || old.rev < d.rev {
		cc.desired[uid] = d
	}
}
