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

// rule is one kind of registration Watch follows: its key filter, how a key names an
// instance, and the check that a stored value is that instance's registration.
type rule struct {
	filter  string
	noun    string // for logs: "collector", "router"
	keyForm string // for logs: the key pattern
	fromKey func(key string) (Key, bool)
	decode  func(k Key, data []byte) (events.Registration, error)
}

var (
	collectors = rule{filter: KeyFilter, noun: "collector", keyForm: "collector.<region>.<id>", fromKey: KeyFromRegistry, decode: Decode}
	routers    = rule{filter: RouterKeyFilter, noun: "router", keyForm: "service.router.<id>", fromKey: RouterKeyFromRegistry, decode: DecodeRouter}
)

// RouterKeyFilter is the registry-bucket key filter of every OTLP router registration.
const RouterKeyFilter = events.RouterKeys

// RouterKeyFromRegistry returns the Key of a registry key service.router.<id>: ID set,
// Region empty (a router's region is in its registration, not its key); ok is false for
// any other key.
func RouterKeyFromRegistry(key string) (Key, bool) {
	id, ok := events.RouterFromKey(key)
	return Key{ID: id}, ok
}

// DecodeRouter decodes a registry value stored at service.router.<k.ID> and checks it is
// the registration of that router, with a valid region.
func DecodeRouter(k Key, data []byte) (events.Registration, error) {
	r, err := events.DecodeRegistration(data)
	if err != nil {
		return r, err
	}
	if r.InstanceKind != events.KindService || r.Name != events.ServiceRouter || r.ID != k.ID {
		return r, fmt.Errorf("%w: registration of %s %s/%s stored at key service.router.%s", events.ErrMalformed,
			r.InstanceKind, r.Name, r.ID, k.ID)
	}
	if err := events.CheckToken("region", r.Region); err != nil {
		return r, fmt.Errorf("%w: router %s: region: %w", events.ErrMalformed, r.ID, err)
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
	watch(ctx, nc, kv, collectors, sink, o)
}

// WatchRouters is Watch for the OTLP routers' registrations, service.router.<id>: sink
// (a RouterSet) gets each valid router registration, and a Key with only ID set for a
// router to forget.
func WatchRouters(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, sink Sink, o Options) {
	watch(ctx, nc, kv, routers, sink, o)
}

func watch(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, ru rule, sink Sink, o Options) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	count := o.Count
	if count == nil {
		count = func(string) {}
	}
	first := true
	kvwatch.Run(ctx, nc, kv, ru.filter, func(e jetstream.KeyValueEntry) {
		if e == nil {
			if first {
				first = false
				if o.Loaded != nil {
					o.Loaded()
				}
				return
			}
			resync(ctx, kv, ru, sink, log)
			return
		}
		k, ok := ru.fromKey(e.Key())
		if !ok {
			count("rejected")
			log.Warn("ignoring registry key that is not "+ru.keyForm, "key", e.Key())
			return
		}
		if e.Operation() == jetstream.KeyValuePut {
			r, err := ru.decode(k, e.Value())
			if err != nil {
				count("rejected")
				log.Warn("ignoring malformed registration", "key", e.Key(), "revision", e.Revision(), "err", err)
				if sink.Delete(k) {
					log.Info(ru.noun+" forgotten: its registration is no longer valid", "key", e.Key())
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
			log.Debug(ru.noun+" forgotten", "key", e.Key(), "op", op)
		}
	}, func(err error) { log.Warn("registry watch failed, retrying", "err", err) })
}

// resync forgets registered collectors whose keys are no longer in kv. It runs on the
// watch goroutine, so no update is applied meanwhile; a key written after the replay is
// listed (and kept), a key deleted after it is not (and its delete marker, delivered
// later, finds nothing to forget).
func resync(ctx context.Context, kv jetstream.KeyValue, ru rule, sink Sink, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lister, err := kv.ListKeysFiltered(ctx, ru.filter)
	if err != nil {
		log.Warn("registry resync: listing keys failed; expired "+ru.noun+"s may linger until their next change", "err", err)
		return
	}
	defer func() { _ = lister.Stop() }()
	keep := map[Key]struct{}{}
	for key := range lister.Keys() {
		if k, ok := ru.fromKey(key); ok {
			keep[k] = struct{}{}
		}
	}
	if ctx.Err() != nil {
		log.Warn("registry resync: listing keys timed out")
		return
	}
	if n := sink.Retain(keep); n > 0 {
		log.Info("forgot "+ru.noun+"s no longer in the registry after a resync", ru.noun+"s", n)
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

// RouterSet is the Sink of WatchRouters: which routers are registered, and in which
// region. A router's load report counts as a router's only when its subject's region is
// the one its registration names. Safe for concurrent use.
type RouterSet struct {
	mu      sync.RWMutex
	regions map[string]string // router id → region
	gen     uint64
}

// NewRouterSet returns an empty set.
func NewRouterSet() *RouterSet { return &RouterSet{regions: map[string]string{}} }

var _ Sink = (*RouterSet)(nil)

// Has reports whether router id is registered in region.
func (s *RouterSet) Has(region, id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.regions[id]
	return ok && r == region
}

// Generation returns a number that changes whenever a router is added, removed or
// moves region.
func (s *RouterSet) Generation() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

// Len returns the number of registered routers.
func (s *RouterSet) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.regions)
}

// Put implements Sink.
func (s *RouterSet) Put(r *events.Registration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.regions[r.ID]; !ok || cur != r.Region {
		s.regions[r.ID] = r.Region
		s.gen++
	}
}

// Delete implements Sink; only k.ID is read.
func (s *RouterSet) Delete(k Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.regions[k.ID]
	if ok {
		delete(s.regions, k.ID)
		s.gen++
	}
	return ok
}

// Retain implements Sink; only the IDs of keep are read.
func (s *RouterSet) Retain(keep map[Key]struct{}) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id := range s.regions {
		if _, ok := keep[Key{ID: id}]; !ok {
			delete(s.regions, id)
			n++
		}
	}
	if n > 0 {
		s.gen++
	}
	return n
}
