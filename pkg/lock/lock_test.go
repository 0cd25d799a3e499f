package lock_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/lease"
	"github.com/otelfleet/otelfleet/pkg/lease/leasetest"
	"github.com/otelfleet/otelfleet/pkg/lock"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leasetest.IgnoredGoroutines()...) }

const ttl = time.Second

// counter is a number read and written in two separate steps: without mutual exclusion,
// concurrent increments lose updates.
type counter interface {
	get(t *testing.T) int
	set(t *testing.T, n int)
}

// fixture opens locks on one store (each on its own client) and a counter beside it.
type fixture struct {
	store   leasetest.Store
	counter func(t *testing.T) counter
}

func forEachStore(t *testing.T, body func(t *testing.T, f fixture)) {
	t.Helper()
	for name, open := range map[string]func(t *testing.T) fixture{
		"kv": func(t *testing.T) fixture {
			st := leasetest.KV(t, natstest.Run(t), ttl)
			return fixture{store: st, counter: func(t *testing.T) counter { return newKVCounter(t, st) }}
		},
		"memory": func(t *testing.T) fixture {
			var n atomic.Int64
			return fixture{store: leasetest.Memory(t, ttl), counter: func(*testing.T) counter { return memCounter{&n} }}
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body(t, open(t))
		})
	}
}

func newLock(t *testing.T, f fixture, name, id string) *lock.Lock {
	t.Helper()
	key, err := events.LockKey(name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := lock.New(f.store.Lease(t, key), lock.Config{Name: name, ID: id}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type memCounter struct{ n *atomic.Int64 }

func (c memCounter) get(*testing.T) int      { return int(c.n.Load()) }
func (c memCounter) set(_ *testing.T, n int) { c.n.Store(int64(n)) }

// kvCounter keeps the number in a KV bucket without TTL, read with Get and written
// with a blind Put (no compare-and-set: only the lock protects it).
type kvCounter struct{ kv jetstream.KeyValue }

func newKVCounter(t *testing.T, st *leasetest.KVStore) counter {
	t.Helper()
	ctx := context.Background()
	kv, err := st.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "counter"})
	if err != nil {
		t.Fatal(err)
	}
	_, js := st.Server.JetStream(t)
	kv, err = js.KeyValue(ctx, kv.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	return kvCounter{kv}
}

func (c kvCounter) get(t *testing.T) int {
	e, err := c.kv.Get(context.Background(), "n")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0
	}
	if err != nil {
		t.Error(err)
		return 0
	}
	n, _ := strconv.Atoi(string(e.Value()))
	return n
}

func (c kvCounter) set(t *testing.T, n int) {
	if _, err := c.kv.Put(context.Background(), "n", []byte(strconv.Itoa(n))); err != nil {
		t.Error(err)
	}
}

// TestNoLostUpdates: 10 goroutines x 100 read-modify-write increments under the lock.
func TestNoLostUpdates(t *testing.T) {
	t.Parallel()
	// 200 handoffs among 5 contenders: enough to interleave, short enough under -race on a
	// loaded machine (1,000 took 30–60 s there).
	const workers, increments = 5, 40
	forEachStore(t, func(t *testing.T, f fixture) {
		var wg sync.WaitGroup
		var lastToken atomic.Uint64
		start := time.Now()
		for w := range workers {
			k := newLock(t, f, "counter", fmt.Sprintf("w%d", w))
			c := f.counter(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				for range increments {
					h, err := k.Acquire(ctx)
					if err != nil {
						t.Errorf("acquire: %v", err)
						return
					}
					if prev := lastToken.Swap(h.Token()); prev >= h.Token() {
						t.Errorf("token %d not above the previous holder's %d", h.Token(), prev)
					}
					n := c.get(t)
					if h.Err() != nil {
						t.Errorf("lost the lock mid-way: %v", h.Err())
					}
					c.set(t, n+1)
					if err := k.Release(ctx); err != nil {
						t.Errorf("release: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if got := f.counter(t).get(t); got != workers*increments {
			t.Fatalf("counter = %d, want %d: updates were lost", got, workers*increments)
		}
		t.Logf("%d locked increments in %v", workers*increments, time.Since(start).Round(time.Millisecond))
	})
}

func TestTryAcquireAndReentry(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		a, b := newLock(t, f, "job", "a"), newLock(t, f, "job", "b")
		h, err := a.TryAcquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Acquire(ctx); !errors.Is(err, lock.ErrAlreadyHeld) {
			t.Fatalf("re-entrant Acquire: %v, want ErrAlreadyHeld", err)
		}
		if _, err := b.TryAcquire(ctx); !errors.Is(err, lock.ErrLocked) {
			t.Fatalf("TryAcquire while locked: %v, want ErrLocked", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := b.Acquire(wctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Acquire with a short deadline while locked: %v, want DeadlineExceeded", err)
		}
		// Another name is independent.
		other := newLock(t, f, "other", "b")
		oh, err := other.TryAcquire(ctx)
		if err != nil {
			t.Fatalf("TryAcquire of another name: %v", err)
		}
		if err := other.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Release(ctx); !errors.Is(err, lock.ErrNotHeld) {
			t.Fatalf("second Release: %v, want ErrNotHeld", err)
		}
		if !errors.Is(h.Err(), lease.ErrReleased) {
			t.Fatalf("released hold's cause %v, want ErrReleased", h.Err())
		}
		hb, err := b.TryAcquire(ctx)
		if err != nil {
			t.Fatalf("TryAcquire after release: %v", err)
		}
		if hb.Token() <= h.Token() || hb.Token() <= oh.Token() {
			t.Errorf("token %d not above earlier tokens %d, %d", hb.Token(), h.Token(), oh.Token())
		}
		_ = b.Release(ctx)
	})
}

func TestLostLockCancelsContext(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, f fixture) {
		ctx := context.Background()
		var fail atomic.Bool
		key, _ := events.LockKey("job")
		k, err := lock.New(&leasetest.Faulty{Lease: f.store.Lease(t, key), Fail: &fail}, lock.Config{Name: "job", ID: "a"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := k.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fail.Store(true)
		select {
		case <-h.Context().Done():
		case <-time.After(2 * ttl):
			t.Fatal("hold not cancelled although renewals fail")
		}
		if !errors.Is(context.Cause(h.Context()), lease.ErrRenewalTimeout) {
			t.Fatalf("cause %v, want ErrRenewalTimeout", context.Cause(h.Context()))
		}
		// The lock can be taken again once the old lease has expired.
		b := newLock(t, f, "job", "b")
		wctx, cancel := context.WithTimeout(ctx, 3*ttl)
		defer cancel()
		hb, err := b.Acquire(wctx)
		if err != nil {
			t.Fatalf("Acquire after the holder vanished: %v", err)
		}
		if hb.Token() <= h.Token() {
			t.Errorf("token %d not above %d", hb.Token(), h.Token())
		}
		_ = b.Release(ctx)
	})
}

func TestKVKeyIsLockName(t *testing.T) {
	t.Parallel()
	st := leasetest.KV(t, natstest.Run(t), ttl)
	nc := st.Server.Connect(t)
	k, err := lock.NewKV(nc, st.Buckets.Leases, lock.Config{Name: "deploy", ID: "me"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h, err := k.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e, err := st.Buckets.Leases.Get(ctx, "lock.deploy")
	if err != nil {
		t.Fatalf("key lock.deploy: %v", err)
	}
	holder, tok, ok := leasetest.Holder(lease.Entry{Op: lease.OpPut, Revision: e.Revision(), Value: e.Value()})
	if !ok || holder != "me" || tok != h.Token() {
		t.Errorf("lock value: holder %q token %d, want me %d", holder, tok, h.Token())
	}
	if err := k.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  lock.Config
		ok   bool
	}{
		{name: "valid", cfg: lock.Config{Name: "job"}, ok: true},
		{name: "empty name", cfg: lock.Config{}},
		{name: "name with a dot", cfg: lock.Config{Name: "a.b"}},
		{name: "negative margin", cfg: lock.Config{Name: "job", Margin: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, lock.ErrConfig) {
				t.Fatalf("%v does not wrap ErrConfig", err)
			}
		})
	}
}
