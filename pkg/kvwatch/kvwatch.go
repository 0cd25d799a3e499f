// Package kvwatch keeps a JetStream KV watch alive across NATS outages.
//
// nats.go's KV watcher rides on an ordered consumer that is slow to notice a restarted
// server. Run re-creates the watch as soon as the connection is re-established (and
// whenever the watch fails or its channel closes), so a watcher misses nothing for
// longer than a reconnect.
//
// Every (re)created watch first replays the current value of every matching key, then
// delivers updates. Run calls fn with a nil entry at the end of each replay, so fn can
// reconcile: a key that vanished during an outage (expired and its marker gone) is simply
// absent from the replay.
package kvwatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Run watches key (a key or wildcard; "" or ">" for all keys) in kv until ctx ends. fn
// is called from one goroutine, in order, with each entry, and with nil after each
// initial replay. Run returns when ctx ends; errors creating the watch are retried every
// retry interval (1s when zero) and reported to onErr if non-nil.
func Run(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, key string, fn func(jetstream.KeyValueEntry), onErr func(error), opts ...jetstream.WatchOpt) {
	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)
	for ctx.Err() == nil {
		err := watchOnce(ctx, kv, key, fn, reconnected, opts)
		if ctx.Err() != nil {
			return
		}
		if err != nil && onErr != nil {
			onErr(err)
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// watchOnce runs one watch; it returns nil to restart at once (after a reconnect).
func watchOnce(ctx context.Context, kv jetstream.KeyValue, key string, fn func(jetstream.KeyValueEntry), reconnected <-chan nats.Status, opts []jetstream.WatchOpt) error {
	var (
		w   jetstream.KeyWatcher
		err error
	)
	if key == "" || key == ">" {
		w, err = kv.WatchAll(ctx, opts...)
	} else {
		w, err = kv.Watch(ctx, key, opts...)
	}
	if err != nil {
		return err
	}
	defer stop(w)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reconnected:
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("KV watch channel closed")
			}
			fn(e)
		}
	}
}

// stop unsubscribes w and drains its channel until nats.go closes it, so a delivery
// blocked on a full channel can finish and nothing is left running.
func stop(w jetstream.KeyWatcher) {
	_ = w.Stop()
	timeout := time.NewTimer(2 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case _, ok := <-w.Updates():
			if !ok {
				return
			}
		case <-timeout.C:
			return
		}
	}
}

// Current returns the current value of every key in kv (deleted and expired keys left
// out) with one watch instead of a round trip per key, in the order the server sends
// them. It fails when ctx ends before the server has sent them all.
func Current(ctx context.Context, kv jetstream.KeyValue) ([]jetstream.KeyValueEntry, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", kv.Bucket(), err)
	}
	defer stop(w)
	var out []jetstream.KeyValueEntry
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read %s: %w", kv.Bucket(), ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("read %s: watch closed", kv.Bucket())
			}
			if e == nil {
				return out, nil
			}
			out = append(out, e)
		}
	}
}
