package configsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// keepGood stores data, a valid document of d's key at version, as the key's last good
// copy (events.GoodConfigKey) unless the copy already holds that version or a higher
// one. It writes by compare-and-set on the copy's revision (Create when there is none),
// so racing replicas never move the copy to a lower version.
func keepGood[T any](ctx context.Context, kv jetstream.KeyValue, d docType[T], data []byte, version uint64) error {
	gk := events.GoodConfigKey(d.key)
	for range 5 {
		var rev uint64
		e, err := kv.Get(ctx, gk)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read %s: %w", gk, err)
		default:
			rev = e.Revision()
			if doc, err := d.load(e.Value()); err == nil && d.version(doc) >= version {
				return nil
			}
		}
		if rev == 0 {
			_, err = kv.Create(ctx, gk, data)
		} else {
			_, err = kv.Update(ctx, gk, data, rev)
		}
		if !natsconn.IsConflict(err) {
			if err != nil {
				return fmt.Errorf("write %s: %w", gk, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: %s kept changing while its last good copy was written", ErrConflict, gk)
}

// keepGoodEntry keeps the value of e as its key's last good copy when it is valid. A
// refused value over a key with no copy yet (a bucket written before copies existed)
// copies the last good value of the key's history instead, at most once per key per
// replay (looked).
func keepGoodEntry[T any](ctx context.Context, kv jetstream.KeyValue, d docType[T], e jetstream.KeyValueEntry, looked map[string]bool) error {
	if e.Operation() != jetstream.KeyValuePut {
		return nil
	}
	doc, err := d.load(e.Value())
	if err == nil {
		return keepGood(ctx, kv, d, e.Value(), d.version(doc))
	}
	if looked[d.key] {
		return nil
	}
	looked[d.key] = true
	if _, ok, err := configwatch.ReadGood(ctx, kv, d.key, d.load, d.version); err != nil || ok {
		return err
	}
	g, err := configwatch.LastGood(ctx, kv, d.key, d.load, d.version)
	if err != nil {
		return err
	}
	data, err := json.Marshal(g.Doc)
	if err != nil {
		return err
	}
	return keepGood(ctx, kv, d, data, g.Version)
}

// WatchGood keeps the last good copy of every config key (see Store.watchGood) until
// ctx ends; the service's module runs it once the initial config is stored.
func (s *Service) WatchGood(ctx context.Context) { s.store.watchGood(ctx, s.nc, s.log) }

// watchGood keeps the last good copy of every config key (global, region.<r>,
// collector.<group>) up to date with the valid values the bucket holds, until ctx ends:
// values written through the store are copied when written, this watch copies the rest
// (valid values written straight into the bucket, values stored before copies existed).
func (s *Store) watchGood(ctx context.Context, nc *nats.Conn, log *slog.Logger) {
	var looked map[string]bool
	kvwatch.Watch(ctx, nc, s.kv, "", kvwatch.Handler{
		Start: func() { looked = map[string]bool{} },
		Entry: func(e jetstream.KeyValueEntry) {
			if e == nil {
				return
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var err error
			key := e.Key()
			switch {
			case key == events.GlobalConfigKey:
				err = keepGoodEntry(wctx, s.kv, globalDoc(), e, looked)
			default:
				if region, ok := events.RegionFromConfigKey(key); ok {
					d, _ := regionDoc(region)
					err = keepGoodEntry(wctx, s.kv, d, e, looked)
				} else if group, ok := events.CollectorGroupFromConfigKey(key); ok {
					d, _ := collectorDoc(group)
					err = keepGoodEntry(wctx, s.kv, d, e, looked)
				}
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("the last good copy of a config key was not updated", "key", key, "revision", e.Revision(), "err", err)
			}
		},
		Err: func(err error) { log.Warn("config watch (last good copies) failed, retrying", "err", err) },
	})
}
