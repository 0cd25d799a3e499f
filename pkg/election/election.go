package election

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/lease"
)

// Errors returned by this package.
var (
	// ErrConfig is wrapped by every Config validation error.
	ErrConfig = errors.New("invalid election config")
	// ErrRunning is returned by Run (and Start) when the election already runs.
	ErrRunning = errors.New("election already running")
	// ErrResigned is the cause of a term context cancelled by Resign, Stop or the end of
	// Run's context.
	ErrResigned = errors.New("resigned")
)

// Publisher publishes leader.elected and leader.lost events; *nats.Conn implements it
// (the OTLP_EVENTS stream captures <root>.events.>).
type Publisher interface {
	PublishMsg(m *nats.Msg) error
}

// Config configures one candidate.
type Config struct {
	// Role is the leadership role, e.g. "sampler" or "topology": a plain name token, and
	// the key of the lease in the leases bucket.
	Role string
	// ID identifies this candidate (its instance id). Required; every live candidate of a
	// role needs a different one.
	ID string
	// Margin is the safety margin of lease.Options: a term ends when no renewal has been
	// confirmed for TTL - Margin. Zero means max(TTL/5, 300ms).
	Margin time.Duration
	// Namespace builds event subjects; the zero value means events.Default.
	Namespace events.Namespace
	// OnLeader, if set, is called whenever the observed leader changes while this
	// candidate waits, and when it wins or loses itself. Leader.Holder is empty when the
	// role is vacant. It runs on the election's goroutine and must not block.
	OnLeader func(Leader)
	// Registerer, if set, receives otelfleet_election_* metrics labelled with the role.
	Registerer prometheus.Registerer
}

// Validate checks the role and id.
func (c Config) Validate() error {
	var errs []error
	if err := events.CheckToken("role", c.Role); err != nil {
		errs = append(errs, fmt.Errorf("%w: role: %w", ErrConfig, err))
	}
	if c.ID == "" {
		errs = append(errs, fmt.Errorf("%w: id: empty", ErrConfig))
	}
	if c.Margin < 0 {
		errs = append(errs, fmt.Errorf("%w: margin %v: negative", ErrConfig, c.Margin))
	}
	return errors.Join(errs...)
}

// Term is one term of leadership won by this candidate.
type Term struct {
	// Role is the role led.
	Role string
	// Token is the fencing token: the leases-bucket revision of the Create that won the
	// term. It strictly increases from term to term; attach it to every write made as
	// leader so that readers can ignore writes from an older term.
	Token uint64
	// Since is when the term was won (local clock).
	Since time.Time
	// Ctx is cancelled as soon as leadership is lost or may be lost (a renewal not
	// confirmed within TTL - Margin), on Resign, and when Run's context ends. Stop all
	// leader work when it is done; context.Cause(Ctx) says why.
	Ctx context.Context
}

// Cause says why the term ended (context.Cause of Ctx): nil while it lasts, then
// ErrResigned or a lease error (lease.ErrLost, lease.ErrRenewalTimeout, ...). Read it
// once Ctx is done: a deferred log line must call it inside a deferred func, since the
// arguments of a deferred call are evaluated when the defer statement runs.
func (t Term) Cause() error { return context.Cause(t.Ctx) }

// Reason is Reason(t.Cause()): resigned, renewal-failed, lease-lost, connection-closed,
// or unknown (also while the term lasts).
func (t Term) Reason() string { return Reason(t.Cause()) }

// Leader is who holds a role, as seen in the leases bucket.
type Leader struct {
	// Holder is the winning candidate's id; empty when the role is vacant.
	Holder string `json:"holder"`
	// Token is the fencing token of the holder's term.
	Token uint64 `json:"token"`
	// Since is when the holder won the term (holder's clock).
	Since time.Time `json:"since"`
	// RenewedAt is the holder's last renewal (holder's clock).
	RenewedAt time.Time `json:"renewed_at"`
}

// LeaderFromEntry decodes a lease entry; ok is false when the entry is vacant or
// unreadable.
func LeaderFromEntry(e lease.Entry) (Leader, bool) {
	if e.Op != lease.OpPut {
		return Leader{}, false
	}
	var v events.Lease
	if events.Decode(e.Value, &v) != nil {
		return Leader{}, false
	}
	tok := v.Token
	if tok == 0 {
		tok = e.Revision // the winning Create itself
	}
	return Leader{Holder: v.Holder, Token: tok, Since: v.AcquiredAt, RenewedAt: v.RenewedAt}, true
}

// ReadLeader returns who holds l; ok is false when nobody does.
func ReadLeader(ctx context.Context, l lease.Lease) (Leader, bool, error) {
	e, err := l.Get(ctx)
	if err != nil {
		if errors.Is(err, lease.ErrVacant) {
			return Leader{}, false, nil
		}
		return Leader{}, false, err
	}
	ld, ok := LeaderFromEntry(e)
	if !ok {
		return Leader{}, false, fmt.Errorf("lease %s: value is not a lease: %q", l.Key(), truncate(e.Value))
	}
	return ld, true, nil
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// Election is one candidate for one role. Create it with New or NewKV, then call Run (or
// Start and Stop). All methods are safe for concurrent use.
type Election struct {
	l   lease.Lease
	cfg Config
	log *slog.Logger
	pub Publisher
	m   *metrics

	mu        sync.Mutex
	running   bool
	stopRun   context.CancelFunc
	runDone   chan struct{}
	runErr    error
	resignCtx context.Context
	term      *Term
	observed  Leader
	// vacantSince is when this candidate last saw the role become vacant (its start
	// until the first observation); zero while a holder is observed.
	vacantSince time.Time
	now         func() time.Time
}

// New returns a candidate for cfg.Role on l (the lease at the role's key). pub may be
// nil (no events); log may be nil.
func New(l lease.Lease, cfg Config, log *slog.Logger, pub Publisher) (*Election, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Namespace == (events.Namespace{}) {
		cfg.Namespace = events.Default
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := &Election{l: l, cfg: cfg, log: log.With("role", cfg.Role, "candidate", cfg.ID), pub: pub, now: time.Now}
	e.vacantSince = e.now()
	m, err := newMetrics(cfg.Registerer, cfg.Role, e.vacantSeconds)
	if err != nil {
		return nil, err
	}
	e.m = m
	return e, nil
}

// NewKV returns a candidate whose lease is the role's key (events.LeaseKey) in the
// leases bucket kv (otlp_leases: bucket TTL = the lease TTL, LimitMarkerTTL on). nc is
// the connection under kv, used to notice reconnects and, when pub is nil, to publish
// events.
func NewKV(nc *nats.Conn, kv jetstream.KeyValue, cfg Config, log *slog.Logger) (*Election, error) {
	key, err := events.LeaseKey(cfg.Role)
	if err != nil {
		return nil, fmt.Errorf("%w: role: %w", ErrConfig, err)
	}
	var pub Publisher
	if nc != nil {
		pub = nc
	}
	return New(lease.NewKV(nc, kv, key), cfg, log, pub)
}

// Run campaigns for the role until ctx ends or Resign is called, and returns nil then.
// It returns an error only when it cannot go on: the store was closed for good
// (lease.ErrClosed) or the configuration is invalid.
//
// Each time this candidate wins, Run publishes leader.elected and calls lead in a new
// goroutine with the term (lead may be nil: then use IsLeader or Current). When the term
// ends it publishes leader.lost and waits for lead to return before campaigning again,
// so one candidate never runs two terms at once: lead must return promptly once
// term.Ctx is done. When ctx ends (or on Resign), Run cancels the term, waits for lead
// (up to the lease TTL), then deletes the lease with a revision check so another
// candidate takes over at once.
func (e *Election) Run(ctx context.Context, lead func(Term)) error {
	runCtx, err := e.begin(ctx)
	if err != nil {
		return err
	}
	return e.finish(e.run(runCtx, lead))
}

// begin marks the election running and returns the context Run campaigns under.
func (e *Election) begin(ctx context.Context) (context.Context, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running {
		return nil, ErrRunning
	}
	runCtx, cancel := context.WithCancel(ctx)
	e.running, e.stopRun, e.runDone, e.runErr, e.resignCtx = true, cancel, make(chan struct{}), nil, nil
	return runCtx, nil
}

// finish marks the election stopped with the error that ended it.
func (e *Election) finish(err error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopRun()
	e.running, e.runErr = false, err
	close(e.runDone)
	return err
}

func (e *Election) run(ctx context.Context, lead func(Term)) error {
	opts := lease.Options{Holder: e.cfg.ID, Margin: e.cfg.Margin, Log: e.log, Observe: e.observe}
	for {
		if ttl, err := e.l.TTL(ctx); err == nil { // cached by the store; Acquire reads it too
			e.m.ttl.Set(ttl.Seconds())
		}
		h, err := lease.Acquire(ctx, e.l, opts)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("election %s: %w", e.cfg.Role, err)
		}
		e.serve(ctx, h, lead)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// serve runs one term until it ends.
func (e *Election) serve(ctx context.Context, h *lease.Held, lead func(Term)) {
	termCtx, endTerm := context.WithCancelCause(h.Context())
	defer endTerm(nil)
	t := Term{Role: e.cfg.Role, Token: h.Token(), Since: h.AcquiredAt(), Ctx: termCtx}
	e.mu.Lock()
	e.term = &t
	e.mu.Unlock()
	e.m.won()
	e.log.Info("elected", "token", t.Token)
	e.publish(events.EventLeaderElected, t.Token, "")
	e.setObserved(Leader{Holder: e.cfg.ID, Token: t.Token, Since: t.Since, RenewedAt: t.Since})

	leading := make(chan struct{})
	go func() {
		defer close(leading)
		if lead != nil {
			lead(t)
		}
	}()

	select {
	case <-h.Done():
		cause := context.Cause(h.Context())
		endTerm(cause)
		e.ended(t, Reason(cause))
		<-leading
	case <-ctx.Done():
		endTerm(ErrResigned)
		rctx, cancel := e.resignContext(h.TTL())
		defer cancel()
		select {
		case <-leading:
		case <-rctx.Done():
			e.log.Warn("leader work did not stop in time; resigning anyway", "token", t.Token)
		}
		if err := h.Release(rctx); err != nil {
			e.log.Warn("resign: could not delete the lease; it will expire", "err", err)
		}
		e.ended(t, "resigned")
		<-leading
	}
}

func (e *Election) ended(t Term, why string) {
	e.mu.Lock()
	e.term = nil
	e.mu.Unlock()
	e.m.lost(why)
	e.log.Info("leadership lost", "token", t.Token, "reason", why)
	e.publish(events.EventLeaderLost, t.Token, why)
	e.setObserved(Leader{})
}

// resignContext bounds a resignation: the context given to Resign, or one TTL.
func (e *Election) resignContext(ttl time.Duration) (context.Context, context.CancelFunc) {
	e.mu.Lock()
	parent := e.resignCtx
	e.mu.Unlock()
	if parent == nil {
		parent = context.Background()
	}
	return context.WithTimeout(parent, ttl)
}

// Reason maps why a term ended (context.Cause of Term.Ctx) to the reason of its
// leader.lost event: resigned, renewal-failed, lease-lost, connection-closed or unknown.
func Reason(cause error) string {
	switch {
	case errors.Is(cause, lease.ErrRenewalTimeout):
		return "renewal-failed"
	case errors.Is(cause, lease.ErrLost):
		return "lease-lost"
	case errors.Is(cause, lease.ErrClosed):
		return "connection-closed"
	case errors.Is(cause, lease.ErrReleased), errors.Is(cause, ErrResigned):
		return "resigned"
	default:
		return "unknown"
	}
}

func (e *Election) observe(en lease.Entry) {
	ld, _ := LeaderFromEntry(en)
	e.setObserved(ld)
}

func (e *Election) setObserved(ld Leader) {
	e.mu.Lock()
	changed := ld.Holder != e.observed.Holder || ld.Token != e.observed.Token
	e.observed = ld
	switch {
	case ld.Holder != "":
		e.vacantSince = time.Time{}
	case e.vacantSince.IsZero():
		e.vacantSince = e.now()
	}
	e.mu.Unlock()
	if changed && e.cfg.OnLeader != nil {
		e.cfg.OnLeader(ld)
	}
}

// vacantSeconds is for how long this candidate has seen the role without a holder: 0
// while it observes one.
func (e *Election) vacantSeconds() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.vacantSince.IsZero() {
		return 0
	}
	return e.now().Sub(e.vacantSince).Seconds()
}

func (e *Election) publish(t events.EventType, token uint64, why string) {
	if e.pub == nil {
		return
	}
	m, err := events.NewMsg(e.cfg.Namespace.EventSubject(t), events.Source("election", e.cfg.ID), events.LeaderChange{
		V: events.LeaderChangeVersion, Role: e.cfg.Role, Holder: e.cfg.ID, Token: token, Reason: why, At: time.Now().UTC(),
	})
	if err == nil {
		err = e.pub.PublishMsg(m)
	}
	if err != nil {
		e.log.Debug("could not publish leader event", "event", t, "err", err)
	}
}

// Resign ends this candidate's participation: it cancels the current term (if any),
// waits for the leader work to return (bounded by ctx), deletes the lease with a
// revision check so another candidate wins at once, and makes Run return. It returns
// when Run has returned or ctx ends. Without a running Run it does nothing.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	if !e.running {
		e.mu.Unlock()
		return nil
	}
	e.resignCtx = ctx
	stop, done := e.stopRun, e.runDone
	e.mu.Unlock()
	stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// IsLeader reports whether this candidate holds a live term right now.
func (e *Election) IsLeader() bool {
	t, ok := e.Current()
	return ok && t.Ctx.Err() == nil
}

// Current returns the current term, if this candidate leads.
func (e *Election) Current() (Term, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.term == nil || e.term.Ctx.Err() != nil {
		return Term{}, false
	}
	return *e.term, true
}

// Leader reads who holds the role from the store (for observers; it does not need
// Run). ok is false when the role is vacant.
func (e *Election) Leader(ctx context.Context) (Leader, bool, error) {
	return ReadLeader(ctx, e.l)
}

// Start runs Run(context.Background(), lead) in a goroutine, for fx OnStart hooks. An
// error that ends Run early is logged and returned by Stop.
func (e *Election) Start(lead func(Term)) error {
	runCtx, err := e.begin(context.Background())
	if err != nil {
		return err
	}
	go func() {
		if err := e.finish(e.run(runCtx, lead)); err != nil {
			e.log.Error("election stopped", "err", err)
		}
	}()
	return nil
}

// Stop resigns (see Resign) and waits for Run to return; for fx OnStop hooks. It
// returns the error that ended Run, if any.
func (e *Election) Stop(ctx context.Context) error {
	if err := e.Resign(ctx); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runErr
}
