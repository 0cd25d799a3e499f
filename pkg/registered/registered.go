package registered

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
)

// Key names one collector.
type Key struct{ Region, ID string }

// KeyFilter is the registry-bucket key filter of every collector registration.
const KeyFilter = events.CollectorKeys

// KeyFromRegistry splits a registry key collector.<region>.<id> (events.CollectorFromKey);
// ok is false for any other key.
func KeyFromRegistry(key string) (Key, bool) {
	region, id, ok := events.CollectorFromKey(key)
	return Key{region, id}, ok
}

// Decode decodes a registry value stored at k and checks it is the registration of
// that collector.
func Decode(k Key, data []byte) (events.Registration, error) {
	r, err := events.DecodeRegistration(data)
	if err != nil {
		return r, err
	}
	if r.InstanceKind != events.KindCollector || r.Region != k.Region || r.ID != k.ID {
		return r, fmt.Errorf("%w: registration of %s %s/%s stored at key collector.%s.%s", events.ErrMalformed,
			r.InstanceKind, r.Region, r.ID, k.Region, k.ID)
	}
	return r, nil
}

// Sink receives the registered collectors from Watch, on one goroutine, in order.
type Sink interface {
	// Put adds or updates the collector r describes (a valid collector registration).
	Put(r *events.Registration)
	// Delete forgets the collector; it reports whether it was registered.
	Delete(k Key) bool
	// Retain forgets every registered collector not in keep and returns how many.
	Retain(keep map[Key]struct{}) int
}

// Options are Watch's optional hooks.
type Options struct {
	// Log receives rejected keys and values (warn) and resync results; nil discards.
	Log *slog.Logger
	// Loaded is called once, at the end of the first replay of the bucket.
	Loaded func()
	// Count is called with "put", "delete", "expire" or "rejected" for every entry.
	Count func(op string)
}

// Watch keeps sink in step with the collector registrations of kv (the registry
// bucket) until ctx ends. A key that is not collector.<region>.<id>, or a value that is
// not that collector's valid registration, is rejected (and a collector whose value
// became invalid is forgotten). A watch re-created after a reconnect replays the bucket;
// at the end of that replay the collectors whose keys are gone (expired while this
// process was cut off) are forgotten.
func Watch(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, sink Sink, o Options) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	count := o.Count
	if count == nil {
		count = func(string) {}
	}
	first := true
	kvwatch.Run(ctx, nc, kv, KeyFilter, func(e jetstream.KeyValueEntry) {
		if e == nil {
			if first {
				first = false
				if o.Loaded != nil {
					o.Loaded()
				}
				return
			}
			resync(ctx, kv, sink, log)
			return
		}
		k, ok := KeyFromRegistry(e.Key())
		if !ok {
			count("rejected")
			log.Warn("ignoring registry key that is not collector.<region>.<id>", "key", e.Key())
			return
		}
		if e.Operation() == jetstream.KeyValuePut {
			r, err := Decode(k, e.Value())
			if err != nil {
				count("rejected")
				log.Warn("ignoring malformed registration", "key", e.Key(), "revision", e.Revision(), "err", err)
				if sink.Delete(k) {
					log.Info("collector forgotten: its registration is no longer valid", "key", e.Key())
				}
				return
			}
			sink.Put(&r)
			count("put")
			return
		}
		op := "delete" // delete, purge, or an expiry marker
		if e.Operation() == jetstream.KeyValuePurge {
			op = "expire"
		}
		count(op)
		if sink.Delete(k) {
			log.Debug("collector forgotten", "key", e.Key(), "op", op)
		}
	}, func(err error) { log.Warn("registry watch failed, retrying", "err", err) })
}

// resync forgets registered collectors whose keys are no longer in kv. It runs on the
// watch goroutine, so no update is applied meanwhile; a key written after the replay is
// listed (and kept), a key deleted after it is not (and its delete marker, delivered
// later, finds nothing to forget).
func resync(ctx context.Context, kv jetstream.KeyValue, sink Sink, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lister, err := kv.ListKeysFiltered(ctx, KeyFilter)
	if err != nil {
		log.Warn("registry resync: listing keys failed; expired collectors may linger until their next change", "err", err)
		return
	}
	defer func() { _ = lister.Stop() }()
	keep := map[Key]struct{}{}
	for key := range lister.Keys() {
		if k, ok := KeyFromRegistry(key); ok {
			keep[k] = struct{}{}
		}
	}
	if ctx.Err() != nil {
		log.Warn("registry resync: listing keys timed out")
		return
	}
	if n := sink.Retain(keep); n > 0 {
		log.Info("forgot collectors no longer in the registry after a resync", "collectors", n)
	}
}

// Set is a Sink that keeps only which collectors are registered. Safe for concurrent
// use.
type Set struct {
	mu   sync.RWMutex
	keys map[Key]struct{}
	gen  uint64 // bumped by every change of membership
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{keys: map[Key]struct{}{}} }

var _ Sink = (*Set)(nil)

// Has reports whether the collector region/id is registered.
func (s *Set) Has(region, id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.keys[Key{region, id}]
	return ok
}

// Generation returns a number that changes whenever a collector is added or removed, so
// a reader can skip re-checking its collectors while it is unchanged.
func (s *Set) Generation() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

// Len returns the number of registered collectors.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.keys)
}

// Put implements Sink.
func (s *Set) Put(r *events.Registration) {
	k := Key{r.Region, r.ID}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[k]; !ok {
		s.keys[k] = struct{}{}
		s.gen++
	}
}

// Delete implements Sink.
func (s *Set) Delete(k Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[k]
	if ok {
		delete(s.keys, k)
		s.gen++
	}
	return ok
}

// Retain implements Sink.
func (s *Set) Retain(keep map[Key]struct{}) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k := range s.keys {
		if _, ok := keep[k]; !ok {
			delete(s.keys, k)
			n++
		}
	}
	if n > 0 {
		s.gen++
	}
	return n
}
