package lease

import (
	"context"
	"errors"
	"time"
)

// Errors returned by Lease implementations and by Acquire, TryAcquire and Held.
var (
	// ErrHeld is returned by Lease.Create and TryAcquire when another holder has the
	// lease.
	ErrHeld = errors.New("lease is held by someone else")
	// ErrLost is returned by Lease.Update and Lease.Delete when the revision given is no
	// longer the key's latest (the lease expired, was deleted or was taken), and is the
	// cause of a Held context cancelled for that reason.
	ErrLost = errors.New("lease lost")
	// ErrVacant is returned by Lease.Get when nobody holds the lease (never written,
	// deleted, or expired).
	ErrVacant = errors.New("lease is vacant")
	// ErrClosed is returned when the store can never answer again (its NATS connection was
	// closed). Callers should give up rather than retry.
	ErrClosed = errors.New("lease store closed")
	// ErrRenewalTimeout is the cause of a Held context cancelled because no renewal was
	// confirmed within TTL minus the safety margin: the lease may be lost, so the holder
	// must stop acting before someone else can win it.
	ErrRenewalTimeout = errors.New("lease renewal not confirmed in time")
	// ErrReleased is the cause of a Held context cancelled by Held.Release.
	ErrReleased = errors.New("lease released")
)

// Op says what an Entry records.
type Op int

// Entry operations.
const (
	// OpNone is an entry for a key that holds nothing at all: never written, or its last
	// marker has aged out too. Only Watch's first entry has it.
	OpNone Op = iota
	// OpPut is a value written by Create or Update: the lease is held.
	OpPut
	// OpDelete is a delete marker (Release, Resign): the lease is vacant.
	OpDelete
	// OpExpire is an expiry marker: the holder stopped renewing and the TTL ran out.
	OpExpire
)

// String returns "none", "put", "delete" or "expire".
func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpExpire:
		return "expire"
	default:
		return "none"
	}
}

// Entry is the state of a lease key at one revision.
type Entry struct {
	Op Op
	// Revision is the store revision of the entry (0 for OpNone). Revisions are strictly
	// increasing across all writes of the store, so the revision of a winning Create is a
	// fencing token.
	Revision uint64
	// Value is the written value (OpPut only).
	Value []byte
	// Created is when the store wrote the entry (store clock).
	Created time.Time
}

// Vacant reports whether the entry leaves the lease free to win.
func (e Entry) Vacant() bool { return e.Op != OpPut }

// Lease is one key of a store with a TTL, compare-and-set writes and a watch: the seam
// under elections and locks. The JetStream KV implementation is NewKV; NewMemoryStore is
// an in-memory fake with the same behaviour for unit tests.
//
// Every write refreshes the key's TTL; a key not written within TTL expires and
// watchers see an OpExpire entry. All methods are safe for concurrent use.
type Lease interface {
	// Key is the key this lease lives at.
	Key() string
	// TTL is the store's time to live for the key: a value not rewritten within it
	// expires.
	TTL(ctx context.Context) (time.Duration, error)
	// Create writes value if the lease is vacant (never written, deleted or expired) and
	// returns the new revision; ErrHeld when someone holds it.
	Create(ctx context.Context, value []byte) (uint64, error)
	// Update writes value if rev is still the latest revision and returns the new one;
	// ErrLost otherwise.
	Update(ctx context.Context, value []byte, rev uint64) (uint64, error)
	// Delete writes a delete marker if rev is still the latest revision; ErrLost
	// otherwise.
	Delete(ctx context.Context, rev uint64) error
	// Get returns the current value; ErrVacant (with the marker entry, if any) when the
	// lease is vacant.
	Get(ctx context.Context) (Entry, error)
	// Watch delivers the current state first (one entry, OpNone when the key holds
	// nothing), then every later entry in revision order. Entries superseded before they
	// are delivered may be skipped. The channel is closed when ctx ends or the watch
	// fails; call Watch again to resume.
	Watch(ctx context.Context) (<-chan Entry, error)
}
