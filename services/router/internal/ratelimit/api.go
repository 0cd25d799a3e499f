// Package ratelimit enforces the fleet-wide limits of the config's rate_limiting block
// (max_qps, burst_size, per_service_limit): each router admits its share of each limit,
// computed from the live routers' observed demand, with local token buckets.
//
// Each router measures its own demand (items offered per second before limiting, an
// exponentially weighted rate over 250 ms windows with a DemandHalfLife), publishes it (Demand) and is given
// the other live routers' (SetPeers). Its share of a limit follows Share: proportional to
// demand when the fleet asks for more than the limit, demand plus an equal part of the
// headroom when it asks for less. A router whose peers' reports stop arriving (it died or
// left) is dropped after maxAge and the others' shares grow back to the whole limit.
// Until it has heard from any peer a router counts itself alone.
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
	// Burst is the fleet's bucket size for MaxQPS: each router's bucket holds its share
	// of it (0: one second of its rate).
	Burst float64
	// PerServiceLimit is the items per second the whole fleet admits for each service.
	PerServiceLimit float64
}

// PeerDemand is one other router's observed demand (items per second before limiting).
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

// Allow admits up to n items of service at now and returns how many were admitted;
// the demand it sees (all n) is recorded for Demand. Items are admitted only when both
// the fleet-wide bucket and the service's bucket have tokens.
func (f *Fleet) Allow(service []byte, n int, now time.Time) int {
	if n <= 0 {
		return 0
	}
	b := f.bucketFor(service)
	at := unixNano(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record(float64(n), at)
	k := b.available(float64(n), at)
	f.global.mu.Lock()
	f.global.record(float64(n), at)
	k = f.global.available(k, at)
	f.global.tokens -= k
	f.global.mu.Unlock()
	b.tokens -= k
	return int(k)
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
// the total and each tracked service's (the untracked ones are in the total only).
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
// this router's shares; reports older than maxAge count as gone.
func (f *Fleet) SetPeers(peers map[string]PeerDemand, now time.Time, maxAge time.Duration) {
	live := make([]PeerDemand, 0, len(peers))
	for _, p := range peers {
		if now.Sub(p.At) <= maxAge {
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
	f.global.setShare(f.limits.MaxQPS, f.limits, f.global.demandAt(now), others, now)
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
	f.other.setShare(f.limits.PerServiceLimit, f.limits, f.other.demandAt(now), others, now)
}

// shareService sets b's share of the per-service limit for service name. f.mu is held.
func (f *Fleet) shareService(b *bucket, name string, now int64) {
	others := make([]float64, len(f.peers))
	for i, p := range f.peers {
		others[i] = p.PerService[name]
	}
	b.setShare(f.limits.PerServiceLimit, f.limits, b.demandAt(now), others, now)
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
