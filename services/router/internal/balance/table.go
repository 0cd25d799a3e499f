package balance

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

const (
	// slotBits is log2 of the number of slots a table deals out: 16384 slots keep the
	// quantisation of a share under 0.7% at 100 members (one slot of 164) while the slot
	// array (2 bytes each, 32 KiB) stays in cache and a rebuild stays well under 1 ms.
	slotBits  = 14
	numSlots  = 1 << slotBits
	slotShift = 64 - slotBits
	// vnodes is the number of ring points per member. Placement only ever depends on a
	// member's own points, so a change of membership moves only the key space the
	// joining or leaving member takes or gives.
	vnodes = 160
	// MaxMembers is the most members a table holds (slots store member indexes in 16
	// bits).
	MaxMembers = math.MaxUint16
)

// Table is an immutable key → member mapping. The zero of *Table (nil) is an empty
// table: Pick returns -1. A Table is safe for concurrent use.
type Table struct {
	strategy Strategy
	members  []Member
	index    map[string]int
	slots    []uint16 // slot → member index
	ring     []uint64 // sorted ring points: position (top 48 bits) | member index
}

// Build makes the table for members (any order; Keys must be unique) under cfg. prev, the
// table in force (nil for none), only makes the build faster (its ring is reused): every
// strategy deals the slots as a pure function of the members and their readings, so
// that every router holds the same table (a table that depended on what a router saw
// before would split traces between routers that started at different times).
// Consistent hashing already keeps the placement of keys whose member stays.
func Build(cfg Config, members []Member, prev *Table) (*Table, error) {
	if cfg.Strategy == "" {
		cfg.Strategy = strategies[0].Name
	}
	if cfg.LoadFactor == 0 {
		cfg.LoadFactor = DefaultConfig().LoadFactor
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(members) > MaxMembers {
		return nil, fmt.Errorf("%w: %d members, at most %d", ErrMembers, len(members), MaxMembers)
	}
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.Key, b.Key) })
	index := make(map[string]int, len(ms))
	for i, m := range ms {
		if m.Key == "" {
			return nil, fmt.Errorf("%w: member %d: empty key", ErrMembers, i)
		}
		if i > 0 && ms[i-1].Key == m.Key {
			return nil, fmt.Errorf("%w: member %q: duplicate key", ErrMembers, m.Key)
		}
		if err := m.check(); err != nil {
			return nil, err
		}
		index[m.Key] = i
	}
	t := &Table{strategy: cfg.Strategy, members: ms, index: index}
	if len(ms) == 0 {
		return t, nil
	}
	t.buildRing(prev)
	weights, factor := shares(cfg, ms)
	t.deal(weights, factor)
	return t, nil
}

// check reports a member's bad readings.
func (m Member) check() error {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }
	switch {
	case bad(m.Capacity):
		return fmt.Errorf("%w: member %q: capacity %v must be a finite number ≥ 0", ErrMembers, m.Key, m.Capacity)
	case bad(m.Load):
		return fmt.Errorf("%w: member %q: load %v must be a finite number ≥ 0", ErrMembers, m.Key, m.Load)
	case bad(m.LatencyMS):
		return fmt.Errorf("%w: member %q: latency %v must be a finite number ≥ 0", ErrMembers, m.Key, m.LatencyMS)
	case m.InFlight < 0:
		return fmt.Errorf("%w: member %q: in flight %d must be ≥ 0", ErrMembers, m.Key, m.InFlight)
	}
	return nil
}

// buildRing hashes every member's virtual nodes onto the ring. A ring point is one
// uint64: the top 48 bits its position, the low 16 its member's index, so sorting the
// points orders them by position and breaks the (vanishingly rare) ties by member index,
// i.e. by Key: still deterministic. With a previous table the ring is the same, made
// faster: its points of the members that stay are kept in order (re-indexed) and merged
// with the sorted points of the new ones.
func (t *Table) buildRing(prev *Table) {
	if prev.Len() == 0 {
		pts := make([]uint64, 0, len(t.members)*vnodes)
		for i := range t.members {
			pts = t.appendPoints(pts, i)
		}
		t.ring = ringSort(pts)
		return
	}
	remap := make([]uint64, len(prev.members))
	for i, m := range prev.members {
		remap[i] = ownerMask + 1 // gone
		if j, ok := t.index[m.Key]; ok {
			remap[i] = uint64(j)
		}
	}
	var fresh []uint64
	for i, m := range t.members {
		if prev.Index(m.Key) < 0 {
			fresh = t.appendPoints(fresh, i)
		}
	}
	slices.Sort(fresh)
	ring := make([]uint64, 0, len(t.members)*vnodes)
	for _, x := range prev.ring {
		j := remap[x&ownerMask]
		if j > ownerMask {
			continue
		}
		x = x&^ownerMask | j
		for len(fresh) > 0 && fresh[0] < x {
			ring = append(ring, fresh[0])
			fresh = fresh[1:]
		}
		ring = append(ring, x)
	}
	t.ring = append(ring, fresh...)
}

// appendPoints appends member i's ring points to pts.
func (t *Table) appendPoints(pts []uint64, i int) []uint64 {
	base := BytesKey([]byte(t.members[i].Key))
	for v := range vnodes {
		pts = append(pts, mix64(base+uint64(v+1)*0x9e3779b97f4a7c15)&^ownerMask|uint64(i))
	}
	return pts
}

// ownerMask selects a ring point's member index.
const ownerMask = 1<<16 - 1

// owner returns the member index of ring point p.
func (t *Table) owner(p int) uint16 { return uint16(t.ring[p] & ownerMask) }

// ringSort sorts ring points: a counting sort into one bucket per slot by the top
// slotBits bits (about one point per slot at 100 members), then an insertion sort inside
// each bucket — linear in len(a), where a comparison sort took most of a rebuild.
func ringSort(a []uint64) []uint64 {
	start := make([]int32, numSlots+1)
	for _, x := range a {
		start[x>>slotShift+1]++
	}
	for i := range numSlots {
		start[i+1] += start[i]
	}
	b := make([]uint64, len(a))
	for _, x := range a {
		s := x >> slotShift
		b[start[s]] = x
		start[s]++
	}
	// start[s] is now the end of bucket s, i.e. the start of bucket s+1.
	lo := int32(0)
	for s := range numSlots {
		hi := start[s]
		for i := lo + 1; i < hi; i++ {
			for j := i; j > lo && b[j] < b[j-1]; j-- {
				b[j], b[j-1] = b[j-1], b[j]
			}
		}
		lo = hi
	}
	return b
}

// shares returns each member's relative share of the key space under cfg and the factor
// over its fair share a member may hold (+Inf: no cap): the strategy's Dealer.
func shares(cfg Config, ms []Member) ([]float64, float64) {
	d, _ := lookup(cfg.Strategy) // Build validated cfg
	return d.Dealer.Shares(cfg, ms)
}

// capacities returns the members' capacities with unknown ones (0) counted as the mean
// of the known ones, or 1 when none is known.
func capacities(ms []Member) []float64 {
	c := make([]float64, len(ms))
	var sum float64
	var known int
	for _, m := range ms {
		if m.Capacity > 0 {
			sum += m.Capacity
			known++
		}
	}
	fill := 1.0
	if known > 0 {
		fill = sum / float64(known)
	}
	for i, m := range ms {
		c[i] = m.Capacity
		if c[i] == 0 {
			c[i] = fill
		}
	}
	return c
}

// deal assigns every slot: to the owner of its ring position unless that member holds
// its cap (⌈factor × its fair share⌉ slots), else to the next member on the ring below
// its cap. weights nil means no caps.
func (t *Table) deal(weights []float64, factor float64) {
	n := len(t.members)
	caps := make([]int, n)
	if weights == nil || math.IsInf(factor, 1) {
		for i := range caps {
			caps[i] = numSlots
		}
	} else {
		var sum float64
		for _, w := range weights {
			sum += w
		}
		for i, w := range weights {
			caps[i] = max(1, int(math.Ceil(factor*numSlots*w/sum)))
		}
	}
	held := make([]int, n)
	// next[p] leads to the next ring point at or after p whose member is below its cap
	// (union-find with path halving over the ring; len(ring) stands for "wrap").
	pts := len(t.ring)
	next := make([]int32, pts+1)
	for i := range next {
		next[i] = int32(i)
	}
	find := func(p int) int {
		for next[p] != int32(p) {
			next[p] = next[next[p]]
			p = int(next[p])
		}
		return p
	}
	// The points of a member that reaches its cap are dropped together: byOwner lists
	// the ring points member by member, member m's from start[m] to start[m+1].
	var start []int32
	var byOwner []int32
	if weights != nil && !math.IsInf(factor, 1) {
		start = make([]int32, n+1)
		for p := range t.ring {
			start[t.owner(p)+1]++
		}
		for m := range n {
			start[m+1] += start[m]
		}
		fill := slices.Clone(start[:n])
		byOwner = make([]int32, pts)
		for p := range t.ring {
			o := t.owner(p)
			byOwner[fill[o]] = int32(p)
			fill[o]++
		}
	}
	t.slots = make([]uint16, numSlots)
	// assign deals slots [from, to), whose positions all lead to ring point p, in runs:
	// each run goes to the first member at or after p below its cap.
	assign := func(from, to, p int) {
		for from < to {
			q := find(p)
			if q == pts {
				q = find(0)
			}
			m := t.owner(q)
			k := min(to-from, caps[m]-held[m])
			for i := from; i < from+k; i++ {
				t.slots[i] = m
			}
			from += k
			held[m] += k
			if held[m] == caps[m] && start != nil {
				for _, r := range byOwner[start[m]:start[m+1]] {
					next[r] = r + 1
				}
			}
		}
	}
	// Slot s (position s<<slotShift + half a slot) leads to the first ring point at or
	// after its position, wrapping to point 0 after the last.
	const half = 1 << (slotShift - 1)
	s := 0
	for p := 0; p < pts && s < numSlots; p++ {
		end := 0 // slots whose position is ≤ ring[p]
		if t.ring[p] >= half {
			end = min(int((t.ring[p]-half)>>slotShift)+1, numSlots)
		}
		if end > s {
			assign(s, end, p)
			s = end
		}
	}
	assign(s, numSlots, 0)
}

// Strategy returns the strategy the table was built with.
func (t *Table) Strategy() Strategy {
	if t == nil {
		return ""
	}
	return t.strategy
}

// Len returns the number of members.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.members)
}

// Member returns member i (0 ≤ i < Len), in Key order.
func (t *Table) Member(i int) Member { return t.members[i] }

// Index returns the index of the member with key, or -1.
func (t *Table) Index(key string) int {
	if t == nil {
		return -1
	}
	if i, ok := t.index[key]; ok {
		return i
	}
	return -1
}

// Pick returns the member index for key, or -1 for an empty table. It does not allocate.
func (t *Table) Pick(key uint64) int {
	if t == nil || len(t.slots) == 0 {
		return -1
	}
	return int(t.slots[key>>slotShift])
}

// Share returns the fraction of the key space member i holds.
func (t *Table) Share(i int) float64 {
	if t == nil || i < 0 || i >= len(t.members) {
		return 0
	}
	var c int
	for _, m := range t.slots {
		if int(m) == i {
			c++
		}
	}
	return float64(c) / numSlots
}

// Next returns the attempt-th choice for key: attempt 0 is Pick, each later attempt a
// different member (the fail-over order for that key: the distinct members met walking
// the ring from the key's position), -1 once every member was offered. It does not
// allocate for attempts below 32.
func (t *Table) Next(key uint64, attempt int) int {
	first := t.Pick(key)
	if first < 0 || attempt < 0 || attempt >= len(t.members) {
		return -1
	}
	if attempt == 0 {
		return first
	}
	var small [32]uint16
	seen := small[:0]
	var big []bool
	if attempt >= len(small) {
		big = make([]bool, len(t.members))
		big[first] = true
	}
	seen = append(seen, uint16(first))
	start, _ := slices.BinarySearch(t.ring, key)
	pts := len(t.ring)
	found := 0
	for k := range pts {
		m := t.owner((start + k) % pts)
		if big != nil {
			if big[m] {
				continue
			}
			big[m] = true
		} else {
			if slices.Contains(seen, m) {
				continue
			}
			seen = append(seen, m)
		}
		found++
		if found == attempt {
			return int(m)
		}
	}
	return -1 // unreachable: every member has points on the ring
}

// Moved returns the fraction of the key space whose member (by Key) differs between a and
// b (either may be nil).
func Moved(a, b *Table) float64 {
	if a.Len() == 0 || b.Len() == 0 {
		if a.Len() == 0 && b.Len() == 0 {
			return 0
		}
		return 1
	}
	toB := make([]int, len(a.members))
	for i, m := range a.members {
		toB[i] = b.Index(m.Key)
	}
	var moved int
	for s, m := range a.slots {
		if toB[m] != int(b.slots[s]) {
			moved++
		}
	}
	return float64(moved) / numSlots
}

// TraceKey mixes all 16 bytes of a trace ID into a 64-bit key. It is independent of the
// 56-bit randomness sampling uses, so sampled traffic spreads like unsampled traffic:
// both halves go through a strong 64-bit finaliser, and the key is the finaliser of
// their combination, so every output bit depends on every input bit.
func TraceKey(id [16]byte) uint64 {
	hi := binary.BigEndian.Uint64(id[:8])
	lo := binary.BigEndian.Uint64(id[8:])
	return mix64(mix64(hi^0x6a09e667f3bcc908) ^ lo*0x9e3779b97f4a7c15 ^ 0xbb67ae8584caa73b)
}

// BytesKey hashes a name (a service, for data without a trace ID) into a key.
func BytesKey(b []byte) uint64 {
	h := uint64(0xcbf29ce484222325) // FNV-1a offset basis
	for _, c := range b {
		h ^= uint64(c)
		h *= 0x100000001b3
	}
	return mix64(h)
}

// mix64 is the 64-bit finaliser of MurmurHash3: a bijection whose every output bit
// depends on every input bit.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb93fe53cc3ab
	x ^= x >> 33
	return x
}
