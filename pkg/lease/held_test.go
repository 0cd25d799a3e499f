package lease_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/lease"
	"github.com/otelfleet/otelfleet/pkg/lease/leasetest"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// watchFails wraps a Lease whose Watch fails while failWatches > 0 (each failure counts
// one down), as when a consumer cannot be created during a NATS hiccup.
type watchFails struct {
	lease.Lease
	failWatches atomic.Int32
}

func (w *watchFails) Watch(ctx context.Context) (<-chan lease.Entry, error) {
	if w.failWatches.Add(-1) >= 0 {
		return nil, errors.New("injected watch failure")
	}
	return w.Lease.Watch(ctx)
}

// A hold whose first watch could not be opened must keep renewing (and re-watch later)
// rather than crash on the renewal that re-opens the watch.
func TestTryAcquireSurvivesAFailedWatch(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st leasetest.Store) {
		ctx := context.Background()
		l := &watchFails{Lease: st.Lease(t, "role")}
		l.failWatches.Store(1)
		h, err := lease.TryAcquire(ctx, l, lease.Options{Holder: "a"})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(ctx)
		// Two renewals, the first of which re-opens the watch.
		admin := st.Lease(t, "role")
		var e lease.Entry
		natstest.Eventually(t, 2*ttl, func() bool {
			var err error
			e, err = admin.Get(ctx)
			return err == nil && e.Revision >= h.Token()+2
		}, "no second renewal")
		if h.Err() != nil {
			t.Fatalf("hold ended: %v", h.Err())
		}
		// Right after a renewal, the next one is TTL/3 away: only the re-opened watch
		// can notice a takeover within a fraction of that.
		if err := admin.Delete(ctx, e.Revision); err != nil {
			t.Fatal(err)
		}
		select {
		case <-h.Done():
		case <-time.After(150 * time.Millisecond):
			t.Fatal("hold not ended after the key was deleted")
		}
		if !errors.Is(h.Err(), lease.ErrLost) {
			t.Fatalf("cause %v, want ErrLost", h.Err())
		}
	})
}

// cancelDuringCreate wraps a Lease whose Create is interrupted by the caller's cancel
// after the write left the client: the store applies it, but the caller sees only the
// cancellation (as with jetstream's PublishMsg when ctx ends while awaiting the ack).
type cancelDuringCreate struct {
	lease.Lease
	cancel context.CancelFunc
}

func (c *cancelDuringCreate) Create(ctx context.Context, value []byte) (uint64, error) {
	c.cancel() // e.g. Stop/Resign while the campaign's Create is in flight
	rev, err := c.Lease.Create(context.WithoutCancel(ctx), value)
	if err == nil && ctx.Err() != nil {
		return 0, ctx.Err()
	}
	return rev, err
}

// A campaign cancelled while its Create is in flight must not leave a lease behind that
// nobody renews or releases: the next candidate would wait a whole TTL.
func TestCancelledAcquireLeavesNoLease(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st leasetest.Store) {
		ctx, cancel := context.WithCancel(context.Background())
		l := &cancelDuringCreate{Lease: st.Lease(t, "role"), cancel: cancel}
		h, err := lease.Acquire(ctx, l, lease.Options{Holder: "a"})
		if err == nil {
			// Won just before the cancel took effect: then it is a proper hold.
			_ = h.Release(context.Background())
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("Acquire: %v, want context.Canceled", err)
		}
		other := st.Lease(t, "role")
		natstest.Eventually(t, ttl/2, func() bool {
			_, err := other.Get(context.Background())
			return errors.Is(err, lease.ErrVacant)
		}, "the cancelled campaign left the lease held")
	})
}
