// Package ratelimit enforces the fleet-wide limits of the config's rate_limiting block
// (max_qps, burst_size, per_service_limit): each router admits its share of each limit,
// computed from the live routers' observed demand.
//
// Admission, per limit (the service's bucket, then the fleet-wide one, which sees what
// the service's admitted): a bucket of the share's part of burst_size (a service's bucket
// at least one second of its per-service share) lets bursts through unshed. Once an
// item does not fit, the bucket sheds until the demand falls back to the share: it
// admits the fraction p = share / demand, traces whole by a hash of the trace ID
// (AllowTrace: a trace is admitted when its hash falls below p, so every span of it gets
// the same verdict on every request and every router with the same p, and the admitted
// rate is the share), data without a trace ID item by item (Allow). p moves only when
// share / demand changes by more than half a percent, so a steady overload keeps every
// trace's verdict; before the first demand estimate (250 ms) a full bucket refuses. The
// traces the bucket admitted (the last 1,024 by key, per bucket) keep passing while it
// sheds, so a trace whose spans straddle the moment the bucket runs out stays whole.
//
// Each router measures its own demand (items offered per second before limiting, an
// exponentially weighted rate over 250 ms windows with a DemandHalfLife), publishes it
// (Demand) and is given the other live routers' (SetPeers). Its share of a limit follows
// Share: proportional to demand when the fleet asks for more than the limit, demand plus
// an equal part of the headroom when it asks for less. A router whose peers' reports stop
// arriving (it died or left) is dropped after maxAge and the others' shares grow back to
// the whole limit. Until it has heard from any peer a router counts itself alone.
package ratelimit

import (
	"sync"
	"sync/atomic"
	"time"
)

// Limits are the fleet-wide limits (0 = none).
type Limits struct {
	// MaxQPS is the items per second the whole fleet admits.
	MaxQPS float64
	// Burst is the fleet's bucket size for MaxQPS: each router's buckets hold their
	// share's part of it (0: one second of the rate; a service's bucket always holds at
	// least one second of its per-service share).
	Burst float64
	// PerServiceLimit is the items per second the whole fleet admits for each service.
	PerServiceLimit float64
}

// PeerDemand is one other router's observed demand in items per second: Total what
// passed its per-service limits (the demand on MaxQPS), PerService what was offered for
// each service before limiting.
type PeerDemand struct {
	Total      float64
	PerService map[string]float64
	At         time.Time
}

const (
	// DemandHalfLife is the half-life of the demand estimate: long enough to smooth
	// bursts, short enough that a share follows a change within a few report intervals.
	DemandHalfLife = 2 * time.Second
	// FloorFraction is the least share of a limit a live router keeps, as a fraction of
	// an equal split: a router whose traffic starts is never shut out until the next
	// reports.
	FloorFraction = 0.1
	// otherService names the bucket of the services beyond the tracked ones.
	otherService = "\x00other"
)

// Fleet admits items against this router's share of the fleet-wide limits. It is safe
// for concurrent use; Allow does not allocate for services it already tracks.
type Fleet struct {
	maxServices int

	global   bucket
	other    *bucket
	services atomic.Pointer[map[string]*bucket] // copy-on-write, grown under mu

	mu     sync.Mutex // serialises SetLimits, SetPeers and growing services
	limits Limits
	peers  []PeerDemand // the live peers at the last SetPeers
}

// NewFleet returns a limiter with limits l, tracking at most maxServices services (the
// rest share one "other" bucket, held to one per-service share together). Services are
// tracked in the order they are first seen and stay tracked.
func NewFleet(l Limits, maxServices int) *Fleet {
	f := &Fleet{maxServices: max(maxServices, 0), limits: l}
	f.other = &bucket{}
	empty := map[string]*bucket{}
	f.services.Store(&empty)
	f.mu.Lock()
	f.reshare(0)
	f.mu.Unlock()
	return f
}

// SetLimits replaces the limits (config hot reload). Shares are recomputed from the
// demand last seen.
func (f *Fleet) SetLimits(l Limits) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits = l
	f.reshare(0)
}

// Limits returns the limits in force.
func (f *Fleet) Limits() Limits {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.limits
}

// Allow decides n items of service that carry no trace ID (untraced logs, metrics) at
// now, all or none, and reports whether it admitted them; the demand it sees (all n) is
// recorded for Demand. Items pass while both the fleet-wide bucket and the service's
// bucket hold them; beyond that each sheds to the fraction share / demand of the items
// offered.
func (f *Fleet) Allow(service []byte, n int, now time.Time) bool {
	return f.allow(service, 0, false, n, now)
}

// AllowTrace decides n items of service that belong to one trace, all or none, and
// reports whether it admitted them. key is a hash of the trace ID (the router passes
// balance.TraceKey); the limiter mixes it again, so its verdicts are independent of the
// sampling randomness and of backend placement. Items pass while the buckets hold them;
// beyond that (the demand exceeds this router's share) a trace is admitted when its hash
// falls below share / demand, so every span of a trace gets the same verdict on every
// request and on every router with the same fraction, and the admitted rate is the
// share.
func (f *Fleet) AllowTrace(service []byte, key uint64, n int, now time.Time) bool {
	return f.allow(service, key, true, n, now)
}

// Seeds of the two mixes of a trace key: the service's and the fleet-wide bucket's
// verdicts are independent, so a trace passes both with the product of their fractions.
const (
	serviceSeed = 0x243f6a8885a308d3
	globalSeed  = 0x13198a2e03707344
)

// allow is Allow and AllowTrace (traced: key is the trace's hash). The fleet-wide
// bucket sees the items the service's bucket admitted.
func (f *Fleet) allow(service []byte, key uint64, traced bool, n int, now time.Time) bool {
	if n <= 0 {
		return true // nothing to refuse
	}
	b := f.bucketFor(service)
	at := unixNano(now)
	fn := float64(n)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record(fn, at)
	su := remix(key ^ serviceSeed)
	ok, took := b.admit(fn, su, traced, at)
	if !ok {
		return false
	}
	gu := remix(key ^ globalSeed)
	f.global.mu.Lock()
	f.global.record(fn, at)
	gok, gtook := f.global.admit(fn, gu, traced, at)
	if gok && gtook && traced {
		f.global.remember(gu)
	}
	f.global.mu.Unlock()
	if !gok {
		if took { // the tokens of items the fleet-wide bucket refused go back
			b.tokens += fn
		}
		return false // and the trace is not remembered as admitted by the service's bucket
	}
	if took && traced {
		b.remember(su)
	}
	return true
}

// remix is the splitmix64 finaliser: a bijection spreading every input bit over the
// output, so a trace key's verdict here is unrelated to its use elsewhere.
func remix(x uint64) uint64 {
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// bucketFor returns the bucket of service, tracking it if there is room.
func (f *Fleet) bucketFor(service []byte) *bucket {
	if b, ok := (*f.services.Load())[string(service)]; ok {
		return b
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := *f.services.Load()
	if b, ok := m[string(service)]; ok {
		return b
	}
	if len(m) >= f.maxServices {
		return f.other
	}
	name := string(service)
	b := &bucket{}
	f.shareService(b, name, 0)
	grown := make(map[string]*bucket, len(m)+1)
	for k, v := range m {
		grown[k] = v
	}
	grown[name] = b
	f.services.Store(&grown)
	return b
}

// Demand returns this router's observed demand, to publish for the other routers:
// the total (what passed the per-service limits: the demand on MaxQPS) and each
// tracked service's (the untracked ones are in the total only).
func (f *Fleet) Demand(now time.Time) PeerDemand {
	at := unixNano(now)
	d := PeerDemand{Total: f.global.demandAt(at), At: now}
	m := *f.services.Load()
	d.PerService = make(map[string]float64, len(m))
	for name, b := range m {
		d.PerService[name] = b.demandAt(at)
	}
	return d
}

// SetPeers replaces the other live routers' demand (keyed by router id) and recomputes
// this router's shares; reports older than maxAge count as gone, and so do reports dated
// more than maxAge after now (a clock that runs ahead cannot keep a dead peer live).
func (f *Fleet) SetPeers(peers map[string]PeerDemand, now time.Time, maxAge time.Duration) {
	live := make([]PeerDemand, 0, len(peers))
	for _, p := range peers {
		if age := now.Sub(p.At); age <= maxAge && age >= -maxAge {
			live = append(live, p)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = live
	f.reshare(unixNano(now))
}

// reshare recomputes every bucket's share from the limits, own demand at now (unix ns;
// 0: as last recorded) and f.peers. f.mu is held.
func (f *Fleet) reshare(now int64) {
	others := make([]float64, len(f.peers))
	for i, p := range f.peers {
		others[i] = p.Total
	}
	f.global.setShare(f.limits.MaxQPS, f.limits, f.global.demandAt(now), others, now, 0)
	m := *f.services.Load()
	for name, b := range m {
		f.shareService(b, name, now)
	}
	// The other bucket stands for the services tracked by none here: the peers' demand
	// for them is what they report for services not tracked here.
	for i, p := range f.peers {
		others[i] = 0
		for name, d := range p.PerService {
			if _, ok := m[name]; !ok {
				others[i] += d
			}
		}
	}
	f.other.setShare(f.limits.PerServiceLimit, f.limits, f.other.demandAt(now), others, now, 1)
}

// shareService sets b's share of the per-service limit for service name. f.mu is held.
func (f *Fleet) shareService(b *bucket, name string, now int64) {
	others := make([]float64, len(f.peers))
	for i, p := range f.peers {
		others[i] = p.PerService[name]
	}
	b.setShare(f.limits.PerServiceLimit, f.limits, b.demandAt(now), others, now, 1)
}

// unixNano returns t in unix nanoseconds, never 0 (0 stands for "no time").
func unixNano(t time.Time) int64 {
	if ns := t.UnixNano(); ns != 0 {
		return ns
	}
	return 1
}

// Share returns this router's share of limit given its own demand and the other live
// routers' demands. With N live routers (this one and the others) and total demand D:
//
//   - D ≥ limit: limit × own / D, the fleet's admissions split by demand;
//   - D < limit: own + (limit − D) / N, its demand and an equal part of the headroom,
//     so the shares sum to the limit and a router whose traffic grows has room before
//     the next reports;
//
// and never below FloorFraction × limit / N. A limit ≤ 0 (none) returns 0.
func Share(limit, own float64, others []float64) float64 {
	if limit <= 0 {
		return 0
	}
	n := float64(1 + len(others))
	total := max(own, 0)
	for _, d := range others {
		total += max(d, 0)
	}
	floor := FloorFraction * limit / n
	if total < limit {
		return max(own+(limit-total)/n, floor)
	}
	return max(limit*own/total, floor)
}
