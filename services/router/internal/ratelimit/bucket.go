package ratelimit

import (
	"math"
	"sync"
	"time"
)

// bucket is one limit's admission state: a token bucket for bursts, the shedding
// fraction beyond it, and the demand estimate of what was offered to it.
type bucket struct {
	mu sync.Mutex
	// rate is the share in items per second (0: unlimited); burst the bucket size.
	rate, burst float64
	tokens      float64
	refilled    int64 // unix ns of the last refill, 0: never
	// shedding is true from the moment the bucket could not hold an item until the
	// demand falls to the rate (theta reaches 1): meanwhile items are admitted by
	// fraction, not by tokens.
	shedding bool
	// theta is the fraction of the demand admitted while shedding: rate / demand, in
	// [0, 1], moved only when the new value differs by more than thetaBand (so a trace
	// keeps its verdict while the demand is steady); 0 before the first demand window
	// closed.
	theta float64
	// admitted remembers the traces the bucket admitted by tokens (8-way sets by key, a
	// full set replaces one; allocated at the first one, cleared when shedding ends): their
	// later spans pass while shedding, so the traces of a burst stay whole.
	admitted []uint64
	// credit is what untraced data is owed while shedding: theta of every item offered,
	// less the items admitted.
	credit float64
	// The demand estimate: items offered in the window starting at windowAt are
	// counted in window; each closed window folds into rate, an exponentially weighted
	// items-per-second with a DemandHalfLife (one multiply per window, not per item).
	// The first closed window is the estimate itself.
	window     float64
	windowAt   int64 // unix ns, 0: no window yet
	demandRate float64
	estimated  bool // a window has closed
}

// demandWindow is the length of one demand window.
const demandWindow = 250 * time.Millisecond

// thetaBand is the relative change of rate / demand below which a shedding bucket keeps
// its admission fraction: the admitted rate may be this far off the share, in exchange
// for whole traces keeping their verdict while the estimate jitters.
const thetaBand = 0.005

// admittedSlots is the size of a bucket's memory of traces admitted by tokens (8 KiB).
const admittedSlots = 1024

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
	if r := b.window / demandWindow.Seconds(); b.estimated {
		b.demandRate = keep*b.demandRate + (1-keep)*r
	} else {
		b.demandRate, b.estimated = r, true
	}
	if k > 1 { // the windows after the first saw nothing
		b.demandRate *= math.Pow(keep, float64(k-1))
	}
	b.window = 0
	b.windowAt += k * int64(demandWindow)
	b.retheta()
}

// retheta recomputes the shedding fraction from the rate and the demand. b.mu is held.
func (b *bucket) retheta() {
	t := 1.0
	switch {
	case b.rate <= 0:
	case !b.estimated:
		t = 0 // nothing known of the demand yet: what the bucket cannot hold waits
	case b.demandRate > b.rate:
		t = b.rate / b.demandRate
	}
	if t >= 1 || t == 0 || b.theta == 0 || math.Abs(t-b.theta) > thetaBand*b.theta {
		b.theta = t
	}
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

// refill adds the tokens earned up to now (unix ns). b.mu is held.
func (b *bucket) refill(now int64) {
	if b.refilled == 0 {
		b.refilled, b.tokens = now, b.burst
	} else if dt := now - b.refilled; dt > 0 {
		b.tokens = min(b.burst, b.tokens+b.rate*float64(dt)*1e-9)
		b.refilled = now
	}
}

// admit decides n items at now (unix ns), all or none, and reports whether it admitted
// them and whether they took tokens (the caller then remembers a traced admission, once
// it is final). While the bucket holds them, they take tokens.
// Beyond that the bucket sheds until the demand falls to its rate: traced items (traced,
// u the trace's hash) are admitted when u falls below theta, so a trace gets one verdict
// however its spans arrive; untraced ones when the credit (theta of every item offered)
// covers them. b.mu is held; unlimited buckets admit everything.
func (b *bucket) admit(n float64, u uint64, traced bool, now int64) (ok, took bool) {
	if b.rate <= 0 {
		return true, false
	}
	b.refill(now)
	if b.shedding && b.theta >= 1 {
		b.shedding, b.credit = false, 0
		clear(b.admitted)
	}
	if !b.shedding {
		if b.tokens >= n {
			b.tokens -= n
			return true, true
		}
		b.shedding = true
	}
	if traced {
		return below(u, b.theta) || b.remembers(u), false
	}
	if b.credit += b.theta * n; b.credit >= n {
		b.credit -= n
		return true, false
	}
	return false, false
}

// remember notes trace u as admitted by tokens: in its set of memoryWays slots, the
// first empty one, else one picked by u. b.mu is held.
func (b *bucket) remember(u uint64) {
	if b.admitted == nil {
		b.admitted = make([]uint64, admittedSlots)
	}
	set := b.admitted[memorySet(u):][:memoryWays]
	for i, k := range set {
		if k == u|1 || k == 0 {
			set[i] = u | 1 // 0 marks an empty slot
			return
		}
	}
	set[(u>>32)%memoryWays] = u | 1
}

// remembers reports whether trace u was admitted by tokens. b.mu is held.
func (b *bucket) remembers(u uint64) bool {
	if b.admitted == nil {
		return false
	}
	for _, k := range b.admitted[memorySet(u):][:memoryWays] {
		if k == u|1 {
			return true
		}
	}
	return false
}

// memoryWays is the associativity of the admitted-trace memory.
const memoryWays = 8

// memorySet is the index of u's first slot.
func memorySet(u uint64) int {
	return int(u%(admittedSlots/memoryWays)) * memoryWays
}

// below reports whether u, read as a fraction of 2⁶⁴, is below theta.
func below(u uint64, theta float64) bool {
	return float64(u>>11) < theta*(1<<53)
}

// setShare sets the bucket's rate to this router's Share of limit and its size to the
// same share of the fleet's burst (one second of the rate when no burst is set), at
// least atLeast seconds of the rate and one item.
func (b *bucket) setShare(limit float64, l Limits, own float64, others []float64, now int64, atLeast float64) {
	rate := Share(limit, own, others)
	burst := rate
	if l.Burst > 0 && l.MaxQPS > 0 {
		burst = rate * l.Burst / l.MaxQPS
	}
	burst = max(burst, rate*atLeast)
	b.mu.Lock()
	defer b.mu.Unlock()
	if now != 0 {
		b.refill(now) // at the old rate up to now
	}
	b.rate, b.burst = rate, max(burst, 1)
	b.tokens = min(b.tokens, b.burst)
	b.retheta()
}
