package lock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/lease"
)

// Errors returned by this package.
var (
	// ErrLocked is returned (wrapped) by TryAcquire when someone else holds the lock. It
	// is lease.ErrHeld, so either matches with errors.Is.
	ErrLocked = lease.ErrHeld
	// ErrAlreadyHeld is returned by Acquire and TryAcquire when this Lock already holds
	// the lock: a Lock is not reentrant.
	ErrAlreadyHeld = errors.New("lock already held by this Lock")
	// ErrNotHeld is returned by Release when this Lock holds nothing.
	ErrNotHeld = errors.New("lock not held")
	// ErrConfig is wrapped by every Config validation error.
	ErrConfig = errors.New("invalid lock config")
)

// Held is one hold of the lock; see lease.Held. Its Context ends when the lock is lost
// or may be lost, and Token is its fencing token.
type Held = lease.Held

// Config configures a Lock.
type Config struct {
	// Name is the lock's name, a plain token; the key is lock.<Name>.
	Name string
	// ID identifies the holder in the lock's value; empty means <host>-<pid>-<random>.
	ID string
	// Margin is the safety margin (see lease.Options); zero means max(TTL/5, 300ms).
	Margin time.Duration
}

// Validate checks the name and margin.
func (c Config) Validate() error {
	var errs []error
	if err := events.CheckToken("lock name", c.Name); err != nil {
		errs = append(errs, fmt.Errorf("%w: name: %w", ErrConfig, err))
	}
	if c.Margin < 0 {
		errs = append(errs, fmt.Errorf("%w: margin %v: negative", ErrConfig, c.Margin))
	}
	return errors.Join(errs...)
}

// Lock is a distributed mutex. Its methods are safe for concurrent use.
type Lock struct {
	l    lease.Lease
	opts lease.Options

	mu        sync.Mutex
	acquiring bool
	held      *Held
}

// New returns a lock on l (the lease at the lock's key). log may be nil.
func New(l lease.Lease, cfg Config, log *slog.Logger) (*Lock, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ID == "" {
		cfg.ID = defaultID()
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Lock{l: l, opts: lease.Options{Holder: cfg.ID, Margin: cfg.Margin, Log: log.With("lock", cfg.Name, "holder", cfg.ID)}}, nil
}

// NewKV returns the lock cfg.Name in the leases bucket kv (key lock.<name>). nc is the
// connection under kv (may be nil), used to re-watch after reconnects.
func NewKV(nc *nats.Conn, kv jetstream.KeyValue, cfg Config, log *slog.Logger) (*Lock, error) {
	key, err := events.LockKey(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: name: %w", ErrConfig, err)
	}
	return New(lease.NewKV(nc, kv, key), cfg, log)
}

// ID is the holder id this Lock writes.
func (k *Lock) ID() string { return k.opts.Holder }

// Acquire blocks until the lock is won or ctx ends (returning ctx's error). ctx bounds
// only the wait: the Held lives until released or lost.
func (k *Lock) Acquire(ctx context.Context) (*Held, error) {
	return k.acquire(ctx, lease.Acquire)
}

// TryAcquire makes one attempt; it returns an error wrapping ErrLocked when someone
// else holds the lock.
func (k *Lock) TryAcquire(ctx context.Context) (*Held, error) {
	return k.acquire(ctx, lease.TryAcquire)
}

func (k *Lock) acquire(ctx context.Context, how func(context.Context, lease.Lease, lease.Options) (*lease.Held, error)) (*Held, error) {
	k.mu.Lock()
	if k.acquiring || k.held != nil && k.held.Err() == nil {
		k.mu.Unlock()
		return nil, ErrAlreadyHeld
	}
	k.acquiring = true
	k.mu.Unlock()
	h, err := how(ctx, k.l, k.opts)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.acquiring = false
	if err != nil {
		return nil, err
	}
	k.held = h
	return h, nil
}

// Release releases the current hold (see lease.Held.Release): it cancels the hold's
// context, then deletes the key with a revision check so that a waiter wins at once.
// It returns ErrNotHeld when nothing is held.
func (k *Lock) Release(ctx context.Context) error {
	k.mu.Lock()
	h := k.held
	k.held = nil
	k.mu.Unlock()
	if h == nil {
		return ErrNotHeld
	}
	return h.Release(ctx)
}

// Held returns the current hold, or nil.
func (k *Lock) Held() *Held {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.held
}

func defaultID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	id := fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	out := []byte(id)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			out[i] = '-'
		}
	}
	return string(out)
}
