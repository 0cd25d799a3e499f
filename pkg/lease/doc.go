// Package lease is the lease shared by leader election (pkg/election) and the
// distributed lock (pkg/lock): a key in a store with a bucket-level TTL, won with a
// Create, renewed with a revision-checked Update, given back with a revision-checked
// Delete, and watched so that a vacancy is noticed at once.
//
// The seam is the Lease interface (one key of a store). NewKV implements it on a
// JetStream KV bucket such as otlp_leases (bucket TTL and LimitMarkerTTL set, so an
// expired key leaves a marker that watchers see); NewMemoryStore is an in-memory fake
// with the same semantics for unit tests.
//
// On top of the seam, Acquire (blocking, watch-driven) and TryAcquire (one attempt) win
// a lease and return a Held, which renews it every TTL/3 and watches it. Held.Context is
// cancelled as soon as the lease is lost or may be lost:
//
//   - a renewal or watch shows that someone else wrote or deleted the key (ErrLost);
//   - no renewal has been confirmed within TTL - Margin since the confirmed request was
//     sent (ErrRenewalTimeout); since the store starts its TTL no earlier than the send,
//     the holder stops before the lease can expire in the store and be won elsewhere;
//   - the store is closed for good (ErrClosed);
//   - the holder released it (ErrReleased).
//
// Held.Token is the fencing token: the store revision of the winning Create. Revisions
// of a JetStream stream only increase, so tokens strictly increase from one holder to the
// next (as long as the bucket is not deleted and recreated). Give the token to every
// downstream write so that a receiver can reject a write from an older term.
//
// The lease value is JSON (events.Lease): holder, token (from the first renewal on),
// acquired_at and renewed_at, which is what `otelfleet leader ls` shows.
package lease
