package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/kvwatch"
)

// ttlCacheFor bounds how long a KV lease trusts the bucket TTL it read.
const ttlCacheFor = 30 * time.Second

// kvLease is a Lease on a JetStream KV bucket whose TTL (and LimitMarkerTTL) is set at
// the bucket level.
type kvLease struct {
	nc  *nats.Conn
	kv  jetstream.KeyValue
	key string

	mu       sync.Mutex
	ttl      time.Duration
	ttlUntil time.Time
}

var _ Lease = (*kvLease)(nil)

// NewKV returns the lease at key in kv, a bucket with a TTL and LimitMarkerTTL (such as
// otlp_leases). The per-key TTL of nats.go's KV is deliberately not used: Update drops
// it, so a renewed key would never expire; the bucket TTL is refreshed by every write.
//
// nc is the connection under kv (nil is allowed): its watches end when nc reconnects,
// so that their owners re-watch at once instead of trusting an ordered consumer that is
// slow to notice a restarted server.
func NewKV(nc *nats.Conn, kv jetstream.KeyValue, key string) Lease {
	return &kvLease{nc: nc, kv: kv, key: key}
}

func (l *kvLease) Key() string { return l.key }

func (l *kvLease) TTL(ctx context.Context) (time.Duration, error) {
	l.mu.Lock()
	if l.ttl > 0 && time.Now().Before(l.ttlUntil) {
		defer l.mu.Unlock()
		return l.ttl, nil
	}
	l.mu.Unlock()
	st, err := l.kv.Status(ctx)
	if err != nil {
		return 0, mapErr(fmt.Errorf("lease %s: read bucket TTL: %w", l.key, err))
	}
	ttl := st.TTL()
	if ttl <= 0 {
		return 0, fmt.Errorf("lease %s: bucket %s has no TTL, a lease in it would never expire", l.key, l.kv.Bucket())
	}
	l.mu.Lock()
	l.ttl, l.ttlUntil = ttl, time.Now().Add(ttlCacheFor)
	l.mu.Unlock()
	return ttl, nil
}

func (l *kvLease) Create(ctx context.Context, value []byte) (uint64, error) {
	rev, err := l.kv.Create(ctx, l.key, value)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongLastSeq(err) {
			return 0, fmt.Errorf("lease %s: %w", l.key, ErrHeld)
		}
		return 0, mapErr(fmt.Errorf("lease %s: create: %w", l.key, err))
	}
	return rev, nil
}

func (l *kvLease) Update(ctx context.Context, value []byte, rev uint64) (uint64, error) {
	n, err := l.kv.Update(ctx, l.key, value, rev)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongLastSeq(err) || errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, fmt.Errorf("lease %s: revision %d is no longer the latest: %w", l.key, rev, ErrLost)
		}
		return 0, mapErr(fmt.Errorf("lease %s: update: %w", l.key, err))
	}
	return n, nil
}

func (l *kvLease) Delete(ctx context.Context, rev uint64) error {
	err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongLastSeq(err) {
			return fmt.Errorf("lease %s: revision %d is no longer the latest: %w", l.key, rev, ErrLost)
		}
		return mapErr(fmt.Errorf("lease %s: delete: %w", l.key, err))
	}
	return nil
}

func (l *kvLease) Get(ctx context.Context) (Entry, error) {
	e, err := l.kv.Get(ctx, l.key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return Entry{}, fmt.Errorf("lease %s: %w", l.key, ErrVacant)
		}
		return Entry{}, mapErr(fmt.Errorf("lease %s: get: %w", l.key, err))
	}
	return toEntry(e), nil
}

func (l *kvLease) Watch(ctx context.Context) (<-chan Entry, error) {
	st, err := kvwatch.Open(ctx, l.nc, l.kv, l.key)
	if err != nil {
		return nil, mapErr(fmt.Errorf("lease %s: watch: %w", l.key, err))
	}
	out := make(chan Entry, 16)
	go func() {
		defer close(out)
		defer st.Stop()
		sent := false
		for {
			e, err := st.Next()
			if err != nil {
				return // ctx ended, a reconnect (the owner re-watches) or a failure
			}
			var ent Entry
			switch {
			case e != nil:
				ent = toEntry(e)
			case sent:
				continue // end of the initial values
			}
			sent = true
			select {
			case out <- ent:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func toEntry(e jetstream.KeyValueEntry) Entry {
	ent := Entry{Revision: e.Revision(), Created: e.Created()}
	switch e.Operation() {
	case jetstream.KeyValuePut:
		ent.Op, ent.Value = OpPut, e.Value()
	case jetstream.KeyValueDelete:
		ent.Op = OpDelete
	default: // KeyValuePurge: an expiry marker (Nats-Marker-Reason MaxAge) or a purge
		ent.Op = OpExpire
	}
	return ent
}

// isWrongLastSeq reports a JetStream "wrong last sequence" error: the compare-and-set
// failed (10071 on R1 streams, 10164 on replicated ones).
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// mapErr adds ErrClosed to errors caused by a closed connection.
func mapErr(err error) error {
	if errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}
