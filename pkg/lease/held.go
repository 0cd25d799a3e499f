package lease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// ErrConfig is wrapped by every error about invalid Options.
var ErrConfig = errors.New("invalid lease options")

// MinMargin is the smallest default safety margin.
const MinMargin = 300 * time.Millisecond

// Options configure Acquire and TryAcquire.
type Options struct {
	// Holder is the id written into the lease value as its holder. Required; give every
	// live candidate a different one.
	Holder string
	// Margin is the safety margin: a Held context is cancelled once no renewal has been
	// confirmed for TTL - Margin (measured from when the confirmed request was sent, which
	// is never later than when the store started its TTL), so the holder stops acting
	// before the lease can expire and someone else win it. A bigger margin tolerates more
	// clock-rate drift and scheduling delay between the holder and the store, at the price
	// of giving up leadership sooner when renewals are slow. Zero means
	// DefaultMargin(TTL); it must leave TTL - Margin above TTL/2.
	Margin time.Duration
	// Observe, if set, is called by Acquire with every entry it sees while waiting (who
	// holds the lease, and when it falls vacant). It runs on Acquire's goroutine and must
	// not block.
	Observe func(Entry)
	// Log receives warnings about failed renewals and retries; nil discards them.
	Log *slog.Logger
}

// DefaultMargin is the safety margin used when Options.Margin is zero:
// max(TTL/5, 300ms).
func DefaultMargin(ttl time.Duration) time.Duration { return max(ttl/5, MinMargin) }

// RenewInterval is how often a holder renews: TTL/3, so that two renewals can fail
// before the safety deadline.
func RenewInterval(ttl time.Duration) time.Duration { return ttl / 3 }

func (o Options) resolve(ttl time.Duration) (Options, error) {
	if o.Holder == "" {
		return o, fmt.Errorf("%w: holder: empty", ErrConfig)
	}
	if o.Margin == 0 {
		o.Margin = DefaultMargin(ttl)
	}
	if o.Margin < 0 || ttl-o.Margin <= ttl/2 {
		return o, fmt.Errorf("%w: margin %v: must be positive and leave more than TTL/2 of the %v TTL", ErrConfig, o.Margin, ttl)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o, nil
}

// Held is a lease won by Acquire or TryAcquire. While held it is renewed every TTL/3
// in the background and its key is watched; Context is cancelled as soon as the lease is
// lost or may be lost (see Options.Margin), with a cause of ErrLost, ErrRenewalTimeout,
// ErrClosed or ErrReleased. Once cancelled it stays cancelled: win a new Held to act
// again. Methods are safe for concurrent use.
type Held struct {
	l          Lease
	opts       Options
	ttl        time.Duration
	token      uint64
	acquiredAt time.Time

	ctx    context.Context
	cancel context.CancelCauseFunc

	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu      sync.Mutex
	rev     uint64 // latest revision we wrote
	mayHold bool   // the store may still hold our value at rev
}

// Token is the fencing token of this hold: the revision of the Create that won it.
// Tokens strictly increase from one hold of a key to the next; pass it along with every
// action taken under the lease so that receivers can reject older holders.
func (h *Held) Token() uint64 { return h.token }

// AcquiredAt is when the lease was won (local clock).
func (h *Held) AcquiredAt() time.Time { return h.acquiredAt }

// TTL is the store TTL the hold is renewed against.
func (h *Held) TTL() time.Duration { return h.ttl }

// Context is cancelled when the hold ends; context.Cause tells why.
func (h *Held) Context() context.Context { return h.ctx }

// Done is closed when the hold ends.
func (h *Held) Done() <-chan struct{} { return h.ctx.Done() }

// Err is nil while held, then why the hold ended (ErrLost, ErrRenewalTimeout, ErrClosed
// or ErrReleased, possibly wrapped).
func (h *Held) Err() error {
	if h.ctx.Err() == nil {
		return nil
	}
	return context.Cause(h.ctx)
}

// Release ends the hold: it cancels Context (cause ErrReleased) first, so that work
// under the lease stops, then deletes the key with a revision check so that a waiting
// candidate wins at once. Deleting is retried until ctx ends; if it cannot be done the
// lease simply expires after its TTL. Release is idempotent; after the first call it
// returns nil.
func (h *Held) Release(ctx context.Context) error {
	first := false
	h.stopOnce.Do(func() {
		first = true
		h.cancel(ErrReleased)
		close(h.stop)
	})
	<-h.done
	if !first {
		return nil
	}
	h.mu.Lock()
	rev, may := h.rev, h.mayHold
	h.mayHold = false
	h.mu.Unlock()
	if !may {
		return nil
	}
	return h.deleteRetry(ctx, rev)
}

func (h *Held) deleteRetry(ctx context.Context, rev uint64) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = time.Second
	b.MaxElapsedTime = 0
	return backoff.Retry(func() error {
		err := h.deleteOurs(ctx, rev)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrClosed), ctx.Err() != nil:
			return backoff.Permanent(err)
		default:
			return err
		}
	}, backoff.WithContext(b, ctx))
}

// TryAcquire makes one attempt to win l and returns ErrHeld (wrapped) when someone else
// holds it. The returned Held is renewed until released or lost; its Context does not
// derive from ctx, which only bounds the attempt.
func TryAcquire(ctx context.Context, l Lease, o Options) (*Held, error) {
	ttl, err := l.TTL(ctx)
	if err != nil {
		return nil, err
	}
	if o, err = o.resolve(ttl); err != nil {
		return nil, err
	}
	return create(ctx, l, o, ttl, nil, nil)
}

// Acquire blocks until it wins l, or ctx ends (then it returns ctx's error), or the
// store is closed (ErrClosed). It watches the key and makes a Create attempt whenever it
// falls vacant, so a deleted or expired lease is won within a round trip; it does not
// poll. As a safety net against a lost watch event it checks the key again when a
// holder's value is more than TTL plus a second old without any news. Store errors are
// retried with backoff. The returned Held's Context does not derive from ctx.
func Acquire(ctx context.Context, l Lease, o Options) (*Held, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 2 * time.Second
	b.MaxElapsedTime = 0
	wait := func(err error) error {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrConfig) {
			return err
		}
		d := b.NextBackOff()
		o.log().Debug("lease: acquire attempt failed, retrying", "key", l.Key(), "in", d, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ttl, err := l.TTL(ctx)
		if err != nil {
			if werr := wait(err); werr != nil {
				return nil, werr
			}
			continue
		}
		ro, err := o.resolve(ttl)
		if err != nil {
			return nil, err
		}
		h, err := acquireWatching(ctx, l, ro, ttl, b)
		if h != nil {
			return h, nil
		}
		if werr := wait(err); werr != nil {
			return nil, werr
		}
	}
}

func (o Options) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o.Log
}

// acquireWatching runs one watch; it returns a Held, or the error that ended the watch.
func acquireWatching(ctx context.Context, l Lease, o Options, ttl time.Duration, b *backoff.ExponentialBackOff) (*Held, error) {
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	watch, err := l.Watch(wctx)
	if err != nil {
		wcancel()
		return nil, err
	}
	handedOver := false
	defer func() {
		if !handedOver {
			wcancel()
		}
	}()

	// check is the safety-net timer: armed when a holder's value arrives, it fires when
	// neither a renewal nor a marker has come for TTL plus grace.
	grace := max(ttl/2, time.Second)
	check := time.NewTimer(time.Hour)
	check.Stop()
	defer check.Stop()
	var retry <-chan time.Time // a Create attempt to repeat after a store error

	attempt := func() (*Held, error) {
		h, err := create(ctx, l, o, ttl, watch, wcancel)
		switch {
		case err == nil:
			handedOver = true
			return h, nil
		case errors.Is(err, ErrHeld):
			return nil, nil
		case errors.Is(err, ErrClosed), ctx.Err() != nil:
			return nil, err
		default:
			d := b.NextBackOff()
			o.Log.Warn("lease: create failed, retrying", "key", l.Key(), "in", d, "err", err)
			retry = time.After(d)
			return nil, nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-watch:
			if !ok {
				return nil, fmt.Errorf("lease %s: watch ended", l.Key())
			}
			b.Reset()
			if o.Observe != nil {
				o.Observe(e)
			}
			if !e.Vacant() {
				check.Reset(ttl + grace)
				continue
			}
			check.Stop()
			if h, err := attempt(); h != nil || err != nil {
				return h, err
			}
		case <-check.C:
			if _, err := l.Get(ctx); err == nil {
				check.Reset(grace)
				continue
			} else if !errors.Is(err, ErrVacant) {
				check.Reset(grace)
				o.Log.Warn("lease: safety check failed", "key", l.Key(), "err", err)
				continue
			}
			o.Log.Warn("lease: no expiry event seen for a vacant lease, campaigning", "key", l.Key())
			if h, err := attempt(); h != nil || err != nil {
				return h, err
			}
		case <-retry:
			retry = nil
			if h, err := attempt(); h != nil || err != nil {
				return h, err
			}
		}
	}
}

// create makes one Create attempt and, on success, starts the Held. watch (with its
// cancel func) is handed over to the Held when given; otherwise the Held opens its own.
func create(ctx context.Context, l Lease, o Options, ttl time.Duration, watch <-chan Entry, wcancel context.CancelFunc) (*Held, error) {
	now := time.Now()
	value, err := events.Encode(events.Lease{V: events.LeaseVersion, Holder: o.Holder, AcquiredAt: now.UTC(), RenewedAt: now.UTC()})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	// The Create is not cancelled with ctx: a cancel while it is in flight (Stop during a
	// campaign) would leave a lease in the store that nobody renews or gives back, and the
	// next candidate would wait a whole TTL. Its outcome is awaited (bounded) instead, and
	// a lease won after ctx ended is handed back below.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl-o.Margin)
	defer cancel()
	rev, err := l.Create(cctx, value)
	if err != nil {
		return nil, err
	}
	deadline := now.Add(ttl - o.Margin)
	if late := time.Until(deadline) <= 0; late || ctx.Err() != nil {
		// Won, but too late to use the lease safely, or nobody wants it any more: hand
		// it back.
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), o.Margin)
		defer dcancel()
		_ = l.Delete(dctx, rev)
		if !late {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("lease %s: create confirmed after the safety deadline", l.Key())
	}
	hctx, hcancel := context.WithCancelCause(context.WithoutCancel(ctx))
	h := &Held{
		l: l, opts: o, ttl: ttl, token: rev, acquiredAt: now,
		ctx: hctx, cancel: hcancel,
		stop: make(chan struct{}), done: make(chan struct{}),
		rev: rev, mayHold: true,
	}
	if watch == nil {
		wctx, c := context.WithCancel(context.WithoutCancel(ctx))
		if w, err := l.Watch(wctx); err == nil {
			watch, wcancel = w, c
		} else {
			c()
		}
	}
	go h.run(now, deadline, watch, wcancel)
	return h, nil
}

// run renews the lease until the hold ends. sent is when the last confirmed write was
// sent; deadline is sent + TTL - Margin.
func (h *Held) run(sent, deadline time.Time, watch <-chan Entry, wcancel context.CancelFunc) {
	defer close(h.done)
	defer func() {
		if wcancel != nil {
			wcancel()
		}
	}()
	expire := time.AfterFunc(time.Until(deadline), func() {
		h.cancel(fmt.Errorf("%w: no renewal confirmed within %v", ErrRenewalTimeout, h.ttl-h.opts.Margin))
	})
	defer expire.Stop()

	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = max(h.ttl/10, 50*time.Millisecond)
	b.MaxElapsedTime = 0
	next := time.NewTimer(time.Until(sent.Add(RenewInterval(h.ttl))))
	defer next.Stop()

	for {
		select {
		case <-h.stop:
			return
		case <-h.ctx.Done():
			if !errors.Is(context.Cause(h.ctx), ErrReleased) {
				h.giveBack() // Release deletes (with retries) on its own
			}
			return
		case e, ok := <-watch:
			if !ok {
				watch = nil // renewals still detect a loss; re-watched after the next renewal
				continue
			}
			if h.foreign(e) {
				h.cancel(fmt.Errorf("%w: the key changed under us (%s at revision %d)", ErrLost, e.Op, e.Revision))
				h.mu.Lock()
				h.mayHold = false
				h.mu.Unlock()
				return
			}
		case <-next.C:
			h.mu.Lock()
			rev := h.rev
			h.mu.Unlock()
			now := time.Now()
			value, _ := events.Encode(events.Lease{V: events.LeaseVersion, Holder: h.opts.Holder, Token: h.token, AcquiredAt: h.acquiredAt.UTC(), RenewedAt: now.UTC()})
			rctx, cancel := context.WithDeadline(h.ctx, deadline)
			nrev, err := h.l.Update(rctx, value, rev)
			cancel()
			switch {
			case err == nil:
				if !expire.Stop() {
					// Confirmed, but after the deadline: the hold already ended.
					h.mu.Lock()
					h.rev = nrev
					h.mu.Unlock()
					h.giveBack()
					return
				}
				h.mu.Lock()
				h.rev = nrev
				h.mu.Unlock()
				deadline = now.Add(h.ttl - h.opts.Margin)
				expire.Reset(time.Until(deadline))
				next.Reset(time.Until(now.Add(RenewInterval(h.ttl))))
				b.Reset()
				if watch == nil {
					wctx, c := context.WithCancel(context.WithoutCancel(h.ctx))
					if w, err := h.l.Watch(wctx); err == nil {
						if wcancel != nil { // nil when the first watch could not be opened
							wcancel()
						}
						watch, wcancel = w, c
					} else {
						c()
					}
				}
			case errors.Is(err, ErrLost):
				h.mu.Lock()
				h.mayHold = false
				h.mu.Unlock()
				h.cancel(err)
				return
			case errors.Is(err, ErrClosed):
				h.cancel(err)
				return
			default:
				if h.ctx.Err() != nil {
					continue // the deadline passed during the attempt
				}
				d := min(b.NextBackOff(), time.Until(deadline))
				h.opts.Log.Warn("lease: renewal failed, retrying", "key", h.l.Key(), "holder", h.opts.Holder, "token", h.token, "in", d, "deadline_in", time.Until(deadline).Round(time.Millisecond), "err", err)
				next.Reset(max(d, time.Millisecond))
			}
		}
	}
}

// foreign reports whether a watched entry shows that the lease is no longer ours: a
// delete or expiry marker, or a value written by someone else, newer than our latest
// write. Our own renewals (whose replies may not have reached us yet) are adopted.
func (h *Held) foreign(e Entry) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.Revision <= h.rev {
		return false
	}
	if h.ours(e) {
		h.rev = e.Revision
		return false
	}
	return true
}

// ours reports whether e is a value written by this hold: the winning Create (its
// revision is the token) or a renewal (it carries our holder id and token).
func (h *Held) ours(e Entry) bool {
	if e.Op != OpPut {
		return false
	}
	if e.Revision == h.token {
		return true
	}
	var v events.Lease
	return events.Decode(e.Value, &v) == nil && v.Holder == h.opts.Holder && v.Token == h.token
}

// giveBack deletes the key (revision-checked) after the hold ended on its own, so that
// a waiting candidate need not wait for the TTL. Best effort, bounded by the margin.
func (h *Held) giveBack() {
	h.mu.Lock()
	rev, may := h.rev, h.mayHold
	h.mayHold = false
	h.mu.Unlock()
	if !may {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.Margin)
	defer cancel()
	_ = h.deleteOurs(ctx, rev)
}

// deleteOurs deletes the key if it still holds our value. rev is our latest known
// revision; a renewal whose reply we never saw (cancelled in flight) may have moved it,
// so on a mismatch it reads the key and deletes our newer write, if it is ours.
func (h *Held) deleteOurs(ctx context.Context, rev uint64) error {
	for range 3 {
		err := h.l.Delete(ctx, rev)
		if !errors.Is(err, ErrLost) {
			return err
		}
		e, err := h.l.Get(ctx)
		switch {
		case errors.Is(err, ErrVacant):
			return nil
		case err != nil:
			return err
		}
		if !h.ours(e) {
			return nil // someone else's now
		}
		rev = e.Revision
	}
	return fmt.Errorf("lease %s: could not delete our value: it keeps changing", h.l.Key())
}
