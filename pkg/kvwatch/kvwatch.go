// Package kvwatch is the one way otelfleet watches JetStream KV keys: a watch that
// survives NATS outages.
//
// nats.go's KV watcher rides on an ordered consumer that is slow to notice a restarted
// server. Watch (and its short form Run) re-creates the watch as soon as the connection
// is re-established, and whenever the watch fails or its channel closes (after a jittered
// exponential backoff, 100 ms growing to 5 s, reset by every reconnect), so a watcher
// misses nothing for longer than a reconnect.
//
// Every (re)created watch first replays the current value of every matching key, then
// delivers updates. Handler.Start marks the start of each replay and Entry gets a nil
// entry at its end, so a caller can reconcile: a key that vanished during an outage
// (expired and its marker gone) is simply absent from the replay.
//
// Open is the single watch underneath, for a caller that re-watches on its own terms
// (package lease ends a lease watch on a reconnect so its owner re-reads the lease).
package kvwatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrReconnected is returned by Stream.Next after the NATS connection was re-established:
// the watch must be re-created (Watch does so at once).
var ErrReconnected = errors.New("NATS reconnected; re-create the KV watch")

// errClosed is returned by Stream.Next when nats.go closes the watch's channel.
var errClosed = errors.New("KV watch channel closed")

// Handler receives what Watch sees. Every function is called from Watch's goroutine, in
// order; nil functions are skipped.
type Handler struct {
	// Start is called each time a watch is created, before its replay.
	Start func()
	// Entry is called with each entry, and with nil at the end of each replay.
	Entry func(jetstream.KeyValueEntry)
	// Err is called with each failure to create or keep a watch, before the retry.
	Err func(error)
}

// Watch watches key (a key or wildcard; "" or ">" for all keys) in kv until ctx ends,
// re-creating the watch after every reconnect of nc (nil: no reconnect detection) and
// every failure (see the package doc). It returns when ctx ends.
func Watch(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, key string, h Handler, opts ...jetstream.WatchOpt) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = 100*time.Millisecond, 5*time.Second, 0
	for ctx.Err() == nil {
		err := once(ctx, nc, kv, key, h, opts)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrReconnected) {
			bo.Reset()
			continue
		}
		if h.Err != nil {
			h.Err(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(bo.NextBackOff()):
		}
	}
}

// Run is Watch for a caller that needs no Start: fn gets each entry and nil after each
// replay, onErr (if non-nil) each failure.
func Run(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, key string, fn func(jetstream.KeyValueEntry), onErr func(error), opts ...jetstream.WatchOpt) {
	Watch(ctx, nc, kv, key, Handler{Entry: fn, Err: onErr}, opts...)
}

// once runs one watch until it ends; it never returns nil.
func once(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, key string, h Handler, opts []jetstream.WatchOpt) error {
	s, err := Open(ctx, nc, kv, key, opts...)
	if err != nil {
		return err
	}
	defer s.Stop()
	if h.Start != nil {
		h.Start()
	}
	for {
		e, err := s.Next()
		if err != nil {
			return err
		}
		if h.Entry != nil {
			h.Entry(e)
		}
	}
}

// Stream is one watch created by Open. Not safe for concurrent use.
type Stream struct {
	ctx         context.Context
	nc          *nats.Conn
	w           jetstream.KeyWatcher
	reconnected chan nats.Status
}

// Open creates one watch of key ("" or ">" for all keys) in kv. Listening for nc's
// reconnects (nc may be nil) starts before the watch is created, so none is missed.
func Open(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, key string, opts ...jetstream.WatchOpt) (*Stream, error) {
	s := &Stream{ctx: ctx, nc: nc}
	if nc != nil {
		s.reconnected = nc.StatusChanged(nats.CONNECTED)
	}
	var err error
	if key == "" || key == ">" {
		s.w, err = kv.WatchAll(ctx, opts...)
	} else {
		s.w, err = kv.Watch(ctx, key, opts...)
	}
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Next blocks for the watch's next entry: each current value, nil once at the end of the
// replay, then every update. It fails with ctx's error when ctx ends, ErrReconnected
// after a reconnect, or an error when the watch's channel closes.
func (s *Stream) Next() (jetstream.KeyValueEntry, error) {
	select {
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	case <-s.reconnected:
		return nil, ErrReconnected
	case e, ok := <-s.w.Updates():
		if !ok {
			return nil, errClosed
		}
		return e, nil
	}
}

// Stop ends the watch: it stops listening for reconnects, unsubscribes and drains the
// channel until nats.go closes it (2 s at most), so a delivery blocked on a full channel
// can finish and nothing is left running.
func (s *Stream) Stop() {
	if s.reconnected != nil {
		s.nc.RemoveStatusListener(s.reconnected)
		s.reconnected = nil
	}
	if s.w != nil {
		stop(s.w)
		s.w = nil
	}
}

// stop unsubscribes w and drains its channel until nats.go closes it.
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
