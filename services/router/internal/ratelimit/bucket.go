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
	refilled    int64 // unix ns of the last refill, 0: never

	// The demand estimate: items offered in the window starting at windowAt are
	// counted in window; each closed window folds into rate, an exponentially weighted
	// items-per-second with a DemandHalfLife (one multiply per window, not per item).
	window     float64
	windowAt   int64 // unix ns, 0: no window yet
	demandRate float64
}

// demandWindow is the length of one demand window.
const demandWindow = 250 * time.Millisecond

// keep is the weight an old demand rate keeps over one window: DemandHalfLife halves it.
var keep = math.Pow(0.5, float64(demandWindow)/float64(DemandHalfLife))

// record adds n offered items at now (unix ns). b.mu is held.
func (b *bucket) record(n float64, now int64) {
	b.roll(now)
	b.window += n
}

// roll closes the demand windows that ended by now (unix ns). b.mu is held.
func (b *bucket) roll(now int64) {
	if b.windowAt == 0 {
		b.windowAt = now
		return
	}
	elapsed := time.Duration(now - b.windowAt)
	if elapsed < demandWindow {
		return
	}
	k := int64(elapsed / demandWindow)
	b.demandRate = keep*b.demandRate + (1-keep)*b.window/demandWindow.Seconds()
	if k > 1 { // the windows after the first saw nothing
		b.demandRate *= math.Pow(keep, float64(k-1))
	}
	b.window = 0
	b.windowAt += k * int64(demandWindow)
}

// demandAt returns the demand rate in items per second at now (unix ns; 0: as last
// recorded).
func (b *bucket) demandAt(now int64) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now != 0 {
		b.roll(now)
	}
	return b.demandRate
}

// available refills the bucket to now (unix ns) and returns how many of n items it has
// tokens for (all when unlimited). b.mu is held.
func (b *bucket) available(n float64, now int64) float64 {
	if b.rate <= 0 {
		return n
	}
	if b.refilled == 0 {
		b.refilled, b.tokens = now, b.burst
	} else if dt := now - b.refilled; dt > 0 {
		b.tokens = min(b.burst, b.tokens+b.rate*float64(dt)*1e-9)
		b.refilled = now
	}
	return min(n, math.Floor(max(b.tokens, 0)))
}

// setShare sets the bucket's rate to this router's Share of limit and its size to the
// same share of the fleet's burst (one second of the rate when no burst is set, at least
// one item).
func (b *bucket) setShare(limit float64, l Limits, own float64, others []float64, now int64) {
	rate := Share(limit, own, others)
	burst := rate
	if l.Burst > 0 && l.MaxQPS > 0 {
		burst = rate * l.Burst / l.MaxQPS
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if now != 0 {
		b.available(0, now) // refill at the old rate up to now
	}
	b.rate, b.burst = rate, max(burst, 1)
	b.tokens = min(b.tokens, b.burst)
}
