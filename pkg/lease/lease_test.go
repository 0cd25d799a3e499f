package lease_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/lease"
	"github.com/otelfleet/otelfleet/pkg/lease/leasetest"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leasetest.IgnoredGoroutines()...) }

const ttl = time.Second

// forEachStore runs body against the JetStream KV lease and the in-memory fake.
func forEachStore(t *testing.T, body func(t *testing.T, st leasetest.Store)) {
	t.Helper()
	for name, open := range map[string]func(t *testing.T) leasetest.Store{
		"kv":     func(t *testing.T) leasetest.Store { return leasetest.KV(t, natstest.Run(t), ttl) },
		"memory": func(t *testing.T) leasetest.Store { return leasetest.Memory(t, ttl) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body(t, open(t))
		})
	}
}

func TestLeaseCompareAndSet(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st leasetest.Store) {
		ctx := context.Background()
		l := st.Lease(t, "role")
		if got, err := l.TTL(ctx); err != nil || got != ttl {
			t.Fatalf("TTL = %v, %v; want %v", got, err, ttl)
		}
		if _, err := l.Get(ctx); !errors.Is(err, lease.ErrVacant) {
			t.Fatalf("Get on a fresh key: %v, want ErrVacant", err)
		}
		r1, err := l.Create(ctx, []byte("a"))
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if _, err := l.Create(ctx, []byte("b")); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("second Create: %v, want ErrHeld", err)
		}
		if _, err := l.Update(ctx, []byte("b"), r1+100); !errors.Is(err, lease.ErrLost) {
			t.Fatalf("Update with a wrong revision: %v, want ErrLost", err)
		}
		r2, err := l.Update(ctx, []byte("a2"), r1)
		if err != nil || r2 <= r1 {
			t.Fatalf("Update = %d, %v; want a revision above %d", r2, err, r1)
		}
		if _, err := l.Update(ctx, []byte("a3"), r1); !errors.Is(err, lease.ErrLost) {
			t.Fatalf("Update with a stale revision: %v, want ErrLost", err)
		}
		e, err := l.Get(ctx)
		if err != nil || string(e.Value) != "a2" || e.Revision != r2 || e.Op != lease.OpPut {
			t.Fatalf("Get = %+v, %v; want a2 at %d", e, err, r2)
		}
		if err := l.Delete(ctx, r1); !errors.Is(err, lease.ErrLost) {
			t.Fatalf("Delete with a stale revision: %v, want ErrLost", err)
		}
		if err := l.Delete(ctx, r2); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := l.Get(ctx); !errors.Is(err, lease.ErrVacant) {
			t.Fatalf("Get after Delete: %v, want ErrVacant", err)
		}
		r3, err := l.Create(ctx, []byte("c"))
		if err != nil || r3 <= r2 {
			t.Fatalf("Create over a deleted key = %d, %v; want a revision above %d", r3, err, r2)
		}
	})
}

func TestLeaseWatchSeesPutDeleteAndExpiry(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st leasetest.Store) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		l := st.Lease(t, "role")
		w, err := l.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		next := func(want lease.Op, within time.Duration) lease.Entry {
			t.Helper()
			select {
			case e, ok := <-w:
				if !ok {
					t.Fatal("watch closed")
				}
				if e.Op != want {
					t.Fatalf("watch entry %+v, want op %s", e, want)
				}
				return e
			case <-time.After(within):
				t.Fatalf("no %s entry within %v", want, within)
			}
			return lease.Entry{}
		}
		next(lease.OpNone, 5*time.Second)
		rev, err := l.Create(ctx, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if e := next(lease.OpPut, 5*time.Second); e.Revision != rev || string(e.Value) != "x" {
			t.Fatalf("put entry %+v, want x at %d", e, rev)
		}
		if err := l.Delete(ctx, rev); err != nil {
			t.Fatal(err)
		}
		next(lease.OpDelete, 5*time.Second)
		start := time.Now()
		if _, err := l.Create(ctx, []byte("y")); err != nil {
			t.Fatal(err)
		}
		next(lease.OpPut, 5*time.Second)
		e := next(lease.OpExpire, ttl+time.Second)
		if d := time.Since(start); d < ttl-50*time.Millisecond {
			t.Fatalf("expired after %v, before the %v TTL", d, ttl)
		}
		if e.Revision <= rev {
			t.Fatalf("expiry marker revision %d not above %d", e.Revision, rev)
		}
		// A watch opened now starts with the marker: the lease is vacant.
		w2, err := l.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if first := <-w2; !first.Vacant() {
			t.Fatalf("first entry of a new watch %+v, want vacant", first)
		}
		if _, err := l.Create(ctx, []byte("z")); err != nil {
			t.Fatalf("Create over an expired key: %v", err)
		}
	})
}

func TestAcquireWaitsAndReleaseHandsOver(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st leasetest.Store) {
		ctx := context.Background()
		la, lb := st.Lease(t, "role"), st.Lease(t, "role")
		a, err := lease.Acquire(ctx, la, lease.Options{Holder: "a"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lease.TryAcquire(ctx, lb, lease.Options{Holder: "b"}); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("TryAcquire while held: %v, want ErrHeld", err)
		}
		got := make(chan *lease.Held, 1)
		go func() {
			h, err := lease.Acquire(ctx, lb, lease.Options{Holder: "b"})
			if err != nil {
				t.Errorf("Acquire b: %v", err)
			}
			got <- h
		}()
		// a keeps the lease over several TTLs: renewals work.
		select {
		case <-got:
			t.Fatal("b won while a held the lease")
		case <-time.After(3 * ttl):
		}
		if a.Err() != nil {
			t.Fatalf("a lost the lease: %v", a.Err())
		}
		released := time.Now()
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(a.Err(), lease.ErrReleased) {
			t.Fatalf("a.Err() = %v, want ErrReleased", a.Err())
		}
		var b *lease.Held
		select {
		case b = <-got:
		case <-time.After(ttl):
			t.Fatal("b did not win within a TTL of the release")
		}
		if d := time.Since(released); d > 500*time.Millisecond {
			t.Errorf("handover took %v, want <= 500ms", d)
		}
		if b.Token() <= a.Token() {
			t.Errorf("token %d not above the previous %d", b.Token(), a.Token())
		}
		e, err := lb.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h, tok, ok := leasetest.Holder(e); !ok || h != "b" || tok != b.Token() {
			t.Errorf("lease value says holder %q token %d, want b %d", h, tok, b.Token())
		}
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Release(ctx); err != nil {
			t.Fatalf("second Release: %v", err)
		}
	})
}

func TestHeldEndsBeforeTheLeaseCanExpire(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st leasetest.Store) {
		ctx := context.Background()
		var fail atomic.Bool
		l := &leasetest.Faulty{Lease: st.Lease(t, "role"), Fail: &fail}
		h, err := lease.Acquire(ctx, l, lease.Options{Holder: "a"})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(ctx)
		fail.Store(true) // renewals now fail as if NATS were unreachable
		failedAt := time.Now()
		select {
		case <-h.Done():
		case <-time.After(2 * ttl):
			t.Fatal("hold not ended although renewals fail")
		}
		ended := time.Now()
		if !errors.Is(h.Err(), lease.ErrRenewalTimeout) {
			t.Fatalf("cause %v, want ErrRenewalTimeout", h.Err())
		}
		if d := ended.Sub(failedAt); d > ttl-lease.DefaultMargin(ttl)+100*time.Millisecond {
			t.Errorf("hold ended %v after renewals began to fail, want within TTL - margin", d)
		}
		// The store still holds the value (the give-back delete fails like the renewals
		// do) until the TTL runs out, which must be after the hold ended.
		other := st.Lease(t, "role")
		natstest.Eventually(t, 3*ttl, func() bool {
			_, err := other.Create(ctx, []byte("b"))
			return err == nil
		}, "lease never became free")
		if won := time.Now(); !won.After(ended) {
			t.Fatalf("another holder won at %v, before the hold ended at %v", won, ended)
		}
	})
}

func TestHeldNoticesTakeover(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st leasetest.Store) {
		ctx := context.Background()
		l := st.Lease(t, "role")
		h, err := lease.Acquire(ctx, l, lease.Options{Holder: "a"})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(ctx)
		// An operator deletes the key by hand (nats kv del).
		admin := st.Lease(t, "role")
		e, err := admin.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		if err := admin.Delete(ctx, e.Revision); err != nil {
			t.Fatal(err)
		}
		select {
		case <-h.Done():
		case <-time.After(ttl):
			t.Fatal("hold not ended after the key was deleted")
		}
		if d := time.Since(deleted); d > 200*time.Millisecond {
			t.Errorf("noticed the deletion after %v, want it from the watch", d)
		}
		if !errors.Is(h.Err(), lease.ErrLost) {
			t.Fatalf("cause %v, want ErrLost", h.Err())
		}
	})
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	st := leasetest.Memory(t, ttl)
	tests := []struct {
		name string
		opts lease.Options
		ok   bool
	}{
		{name: "defaults", opts: lease.Options{Holder: "a"}, ok: true},
		{name: "explicit margin", opts: lease.Options{Holder: "a", Margin: 400 * time.Millisecond}, ok: true},
		{name: "no holder", opts: lease.Options{}},
		{name: "negative margin", opts: lease.Options{Holder: "a", Margin: -time.Second}},
		{name: "margin eats half the TTL", opts: lease.Options{Holder: "a", Margin: ttl / 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := lease.TryAcquire(context.Background(), st.Lease(t, "k-"+tc.name[:2]), tc.opts)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				_ = h.Release(context.Background())
				return
			}
			if !errors.Is(err, lease.ErrConfig) {
				t.Fatalf("err %v, want ErrConfig", err)
			}
		})
	}
}

func TestDefaultMargin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ttl, want time.Duration
	}{
		{time.Second, 300 * time.Millisecond},
		{2 * time.Second, 400 * time.Millisecond},
		{5 * time.Second, time.Second},
	} {
		if got := lease.DefaultMargin(tc.ttl); got != tc.want {
			t.Errorf("DefaultMargin(%v) = %v, want %v", tc.ttl, got, tc.want)
		}
	}
}
