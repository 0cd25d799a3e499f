package ratelimit

import (
	"math"
	"sync"
	"time"
)

// bucket is a token bucket and the demand estimate of what was offered to it.
type bucket struct {
	mu sync.Mutex
	// rate is the share in items per second (0: unlimited); burst the bucket size.
	rate, burst float64
	tokens      float64
	refilled    time.Time

	// demand is an exponentially decaying count of items offered, as of seen; the rate
	// is demand × ln2 / half-life.
	demand float64
	seen   time.Time
}

// decayPerNano is ln 2 / DemandHalfLife in 1/ns.
var decayPerNano = math.Ln2 / float64(DemandHalfLife)

// record adds n offered items at now. b.mu is held.
func (b *bucket) record(n float64, now time.Time) {
	b.decay(now)
	b.demand += n
}

// decay brings the demand count forward to now. b.mu is held.
func (b *bucket) decay(now time.Time) {
	if b.seen.IsZero() {
		b.seen = now
		return
	}
	if dt := now.Sub(b.seen); dt > 0 {
		b.demand *= math.Exp(-decayPerNano * float64(dt))
		b.seen = now
	}
}

// demandAt returns the demand rate in items per second at now (the zero time: as last
// recorded).
func (b *bucket) demandAt(now time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !now.IsZero() {
		b.decay(now)
	}
	return b.demand * math.Ln2 / DemandHalfLife.Seconds()
}

// available refills the bucket to now and returns how many of n items it has tokens
// for (all when unlimited). b.mu is held.
func (b *bucket) available(n float64, now time.Time) float64 {
	if b.rate <= 0 {
		return n
	}
	if b.refilled.IsZero() {
		b.refilled, b.tokens = now, b.burst
	} else if dt := now.Sub(b.refilled); dt > 0 {
		b.tokens = min(b.burst, b.tokens+b.rate*dt.Seconds())
		b.refilled = now
	}
	return min(n, math.Floor(max(b.tokens, 0)))
}

// setShare sets the bucket's rate to this router's Share of limit and its size to the
// same share of the fleet's burst (one second of the rate when no burst is set, at least
// one item).
func (b *bucket) setShare(limit float64, l Limits, own float64, others []float64, now time.Time) {
	rate := Share(limit, own, others)
	burst := rate
	if l.Burst > 0 && l.MaxQPS > 0 {
		burst = rate * l.Burst / l.MaxQPS
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !now.IsZero() {
		b.available(0, now) // refill at the old rate up to now
	}
	b.rate, b.burst = rate, max(burst, 1)
	b.tokens = min(b.tokens, b.burst)
}
