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
