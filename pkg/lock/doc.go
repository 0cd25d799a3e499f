// Package lock is a distributed mutex on the otlp_leases KV bucket, with fencing tokens.
//
// A lock named N is the key lock.<N> (events.LockKey) in otlp_leases; leadership roles
// are plain names there, so the two never collide. It is the lease of pkg/lease used
// once rather than in a loop (pkg/election): Acquire blocks until the lock is won
// (watch-driven: a release or expiry is noticed at once, no polling), TryAcquire makes
// one attempt, and the returned Held is renewed every TTL/3 until Release. The TTL is
// the bucket's (--lease-ttl of the services).
//
// Held.Context is cancelled as soon as the lock is lost or may be lost (a renewal not
// confirmed within TTL - margin), so the critical section must watch it and stop; and
// Held.Token, strictly increasing from one holder to the next, should accompany every
// write made under the lock so that the receiver can refuse a write from an older
// holder that did not notice in time (fencing).
//
//	l, _ := lock.NewKV(nc, buckets.Leases, lock.Config{Name: "migrate", ID: instance}, log)
//	h, err := l.Acquire(ctx)
//	if err != nil { ... }
//	defer h.Release(context.Background())
//	doWork(h.Context(), h.Token())
//
// A Lock is not reentrant and holds at most one Held at a time; use one Lock per
// goroutine that competes for the same name.
package lock
