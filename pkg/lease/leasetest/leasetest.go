// Package leasetest provides fixtures for tests of code built on pkg/lease: the
// JetStream leases bucket on an in-process NATS server and the in-memory fake behind
// one interface (so one test body runs against both), a fault-injecting wrapper, and
// the goroutines goleak must ignore.
package leasetest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/lease"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// Store hands out leases of one store; every call may use a new client.
type Store interface {
	// Lease returns the lease at key.
	Lease(t testing.TB, key string) lease.Lease
}

// KVStore is the contract's leases bucket on a test server.
type KVStore struct {
	Server *natstest.Server
	// Buckets are the provisioned contract buckets (leases TTL = the given ttl).
	Buckets *natsconn.Buckets
	JS      jetstream.JetStream
}

// KV provisions the contract's streams and buckets on srv, with the leases and registry
// buckets' TTL set to ttl.
func KV(t testing.TB, srv *natstest.Server, ttl time.Duration) *KVStore {
	t.Helper()
	_, js := srv.JetStream(t)
	l := natsconn.DefaultLayout()
	l.LeaseTTL, l.RegistryTTL = ttl, ttl
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsconn.Provision(ctx, js, l)
	if err != nil {
		t.Fatalf("leasetest: provision: %v", err)
	}
	return &KVStore{Server: srv, Buckets: b, JS: js}
}

// Lease returns the lease at key on a new connection (closed when the test ends), so
// that every candidate has its own client, as separate processes would.
func (s *KVStore) Lease(t testing.TB, key string) lease.Lease {
	t.Helper()
	l, _ := s.LeaseConn(t, key)
	return l
}

// LeaseConn is Lease that also returns the connection, to cut it off abruptly.
func (s *KVStore) LeaseConn(t testing.TB, key string, opts ...nats.Option) (lease.Lease, *nats.Conn) {
	t.Helper()
	nc := s.Server.Connect(t, opts...)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("leasetest: jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, events.Default.LeasesBucket())
	if err != nil {
		t.Fatalf("leasetest: open leases bucket: %v", err)
	}
	return lease.NewKV(nc, kv, key), nc
}

// MemStore is the in-memory fake.
type MemStore struct{ *lease.MemoryStore }

// Memory returns a fake store with the given TTL, closed when the test ends.
func Memory(t testing.TB, ttl time.Duration) *MemStore {
	s := lease.NewMemoryStore(ttl)
	t.Cleanup(s.Close)
	return &MemStore{s}
}

// Lease returns the lease at key.
func (s *MemStore) Lease(_ testing.TB, key string) lease.Lease { return s.MemoryStore.Lease(key) }

// ErrInjected is returned by Faulty while it fails.
var ErrInjected = errors.New("leasetest: injected failure")

// Faulty wraps a Lease; while Fail is set, Create, Update and Delete fail with
// ErrInjected (as when NATS is unreachable) without reaching the store. Reads and
// watches still work.
type Faulty struct {
	lease.Lease
	Fail *atomic.Bool
}

// Create implements lease.Lease.
func (f *Faulty) Create(ctx context.Context, value []byte) (uint64, error) {
	if f.Fail.Load() {
		return 0, ErrInjected
	}
	return f.Lease.Create(ctx, value)
}

// Update implements lease.Lease.
func (f *Faulty) Update(ctx context.Context, value []byte, rev uint64) (uint64, error) {
	if f.Fail.Load() {
		return 0, ErrInjected
	}
	return f.Lease.Update(ctx, value, rev)
}

// Delete implements lease.Lease.
func (f *Faulty) Delete(ctx context.Context, rev uint64) error {
	if f.Fail.Load() {
		return ErrInjected
	}
	return f.Lease.Delete(ctx, rev)
}

// Holder decodes a lease entry: its holder and fencing token (the value's token, or
// the entry's revision for the winning Create).
func Holder(e lease.Entry) (holder string, token uint64, ok bool) {
	var v events.Lease
	if e.Op != lease.OpPut || events.Decode(e.Value, &v) != nil {
		return "", 0, false
	}
	token = v.Token
	if token == 0 {
		token = e.Revision
	}
	return v.Holder, token, true
}

// IgnoredGoroutines are goroutines goleak must not report in packages that run an
// in-process nats-server: none today; kept so every TestMain stays the same when one
// appears.
func IgnoredGoroutines() []goleak.Option { return nil }
