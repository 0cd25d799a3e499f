package lease

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MemoryStore is an in-memory lease store for unit tests: it behaves like the leases
// bucket (one revision counter for all keys, a bucket TTL refreshed by every write,
// delete and expiry markers that watchers see), without NATS. Safe for concurrent use.
type MemoryStore struct {
	ttl time.Duration

	mu     sync.Mutex
	rev    uint64
	keys   map[string]*memKey
	closed bool
}

type memKey struct {
	last    Entry
	timer   *time.Timer
	watches []chan Entry
}

// NewMemoryStore returns an empty store whose values expire ttl after their last write.
// Close it to stop its timers.
func NewMemoryStore(ttl time.Duration) *MemoryStore {
	return &MemoryStore{ttl: ttl, keys: map[string]*memKey{}}
}

// Lease returns the lease at key.
func (s *MemoryStore) Lease(key string) Lease { return &memLease{s: s, key: key} }

// Close stops expiry timers and closes every watch; later calls fail with ErrClosed,
// like a closed NATS connection.
func (s *MemoryStore) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for _, k := range s.keys {
		if k.timer != nil {
			k.timer.Stop()
		}
		for _, w := range k.watches {
			close(w)
		}
		k.watches = nil
	}
}

// Expire makes key expire now, as if its TTL had run out (for tests that must not
// wait a TTL).
func (s *MemoryStore) Expire(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[key]
	if k == nil || k.last.Op != OpPut || s.closed {
		return
	}
	s.expireLocked(key, k)
}

func (s *MemoryStore) key(key string) *memKey {
	k := s.keys[key]
	if k == nil {
		k = &memKey{}
		s.keys[key] = k
	}
	return k
}

// writeLocked appends an entry at the next revision, re-arms the expiry of puts and
// notifies watchers.
func (s *MemoryStore) writeLocked(key string, k *memKey, op Op, value []byte) uint64 {
	s.rev++
	k.last = Entry{Op: op, Revision: s.rev, Value: slices.Clone(value), Created: time.Now()}
	if k.timer != nil {
		k.timer.Stop()
		k.timer = nil
	}
	if op == OpPut {
		rev := s.rev
		k.timer = time.AfterFunc(s.ttl, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.closed && k.last.Revision == rev {
				s.expireLocked(key, k)
			}
		})
	}
	s.notifyLocked(k)
	return s.rev
}

func (s *MemoryStore) expireLocked(key string, k *memKey) {
	s.writeLocked(key, k, OpExpire, nil)
}

// notifyLocked hands the latest entry to every watcher. A watcher that does not keep up
// (buffer full) is closed, as a broken NATS watch would be; its owner re-watches.
func (s *MemoryStore) notifyLocked(k *memKey) {
	kept := k.watches[:0]
	for _, w := range k.watches {
		select {
		case w <- k.last:
			kept = append(kept, w)
		default:
			close(w)
		}
	}
	k.watches = kept
}

type memLease struct {
	s   *MemoryStore
	key string
}

func (l *memLease) Key() string { return l.key }

func (l *memLease) TTL(context.Context) (time.Duration, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if err := l.check(); err != nil {
		return 0, err
	}
	return l.s.ttl, nil
}

// check fails once the store is closed; the caller holds l.s.mu.
func (l *memLease) check() error {
	if l.s.closed {
		return fmt.Errorf("lease %s: %w", l.key, ErrClosed)
	}
	return nil
}

func (l *memLease) Create(ctx context.Context, value []byte) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if err := l.check(); err != nil {
		return 0, err
	}
	k := l.s.key(l.key)
	if k.last.Op == OpPut {
		return 0, fmt.Errorf("lease %s: %w", l.key, ErrHeld)
	}
	return l.s.writeLocked(l.key, k, OpPut, value), nil
}

func (l *memLease) Update(ctx context.Context, value []byte, rev uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if err := l.check(); err != nil {
		return 0, err
	}
	k := l.s.key(l.key)
	if k.last.Revision != rev || k.last.Op != OpPut {
		return 0, fmt.Errorf("lease %s: revision %d is no longer the latest: %w", l.key, rev, ErrLost)
	}
	return l.s.writeLocked(l.key, k, OpPut, value), nil
}

func (l *memLease) Delete(ctx context.Context, rev uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if err := l.check(); err != nil {
		return err
	}
	k := l.s.key(l.key)
	if k.last.Revision != rev {
		return fmt.Errorf("lease %s: revision %d is no longer the latest: %w", l.key, rev, ErrLost)
	}
	l.s.writeLocked(l.key, k, OpDelete, nil)
	return nil
}

func (l *memLease) Get(ctx context.Context) (Entry, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if err := l.check(); err != nil {
		return Entry{}, err
	}
	k := l.s.key(l.key)
	if k.last.Op != OpPut {
		return Entry{}, fmt.Errorf("lease %s: %w", l.key, ErrVacant)
	}
	e := k.last
	e.Value = slices.Clone(e.Value)
	return e, nil
}

func (l *memLease) Watch(ctx context.Context) (<-chan Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if err := l.check(); err != nil {
		return nil, err
	}
	k := l.s.key(l.key)
	in := make(chan Entry, 64)
	in <- k.last
	k.watches = append(k.watches, in)
	out := make(chan Entry)
	go func() {
		defer close(out)
		defer l.unwatch(in)
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

func (l *memLease) unwatch(in chan Entry) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	k := l.s.keys[l.key]
	if k == nil {
		return
	}
	if i := slices.Index(k.watches, in); i >= 0 {
		k.watches = slices.Delete(k.watches, i, i+1)
		close(in)
	}
}
