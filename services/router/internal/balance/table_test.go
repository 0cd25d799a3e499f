package balance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// members returns n members with capacity c each, keyed like registrations.
func members(n int, c float64) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{Key: fmt.Sprintf("collector.eu.c%03d", i), Capacity: c}
	}
	return ms
}

// build builds or fails the test.
func build(t testing.TB, cfg Config, ms []Member) *Table {
	t.Helper()
	tb, err := Build(cfg, ms, nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return tb
}

// cfgFor returns the default config with strategy s.
func cfgFor(s Strategy) Config {
	c := DefaultConfig()
	c.Strategy = s
	return c
}

// traceIDs returns n random trace IDs from a fixed seed; tweak may rewrite each.
func traceIDs(n int, seed uint64, tweak func(*[16]byte)) [][16]byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	ids := make([][16]byte, n)
	for i := range ids {
		binary.BigEndian.PutUint64(ids[i][:8], r.Uint64())
		binary.BigEndian.PutUint64(ids[i][8:], r.Uint64())
		if tweak != nil {
			tweak(&ids[i])
		}
	}
	return ids
}

// spread returns max/mean of the per-member counts of ids divided by the members'
// weights (nil: equal).
func spread(tb *Table, ids [][16]byte, weights []float64) float64 {
	counts := make([]float64, tb.Len())
	for _, id := range ids {
		counts[tb.Pick(TraceKey(id))]++
	}
	var sumW float64
	for i := range counts {
		w := 1.0
		if weights != nil {
			w = weights[i]
		}
		sumW += w
	}
	var worst float64
	for i, c := range counts {
		w := 1.0
		if weights != nil {
			w = weights[i]
		}
		expected := float64(len(ids)) * w / sumW
		worst = max(worst, c/expected)
	}
	return worst
}

func TestSpreadEqualCapacity(t *testing.T) {
	ids := traceIDs(100_000, 1, nil)
	for _, s := range []Strategy{BoundedLoad, RoundRobin, WeightedRoundRobin} {
		t.Run(string(s), func(t *testing.T) {
			tb := build(t, cfgFor(s), members(10, 1000))
			if got := spread(tb, ids, nil); got > 1.1 {
				t.Fatalf("max/mean spread %.3f over 100000 trace IDs on 10 members, want ≤ 1.1", got)
			}
		})
	}
}

func TestSpreadWeighted(t *testing.T) {
	ms := members(10, 0)
	w := make([]float64, len(ms))
	for i := range ms {
		ms[i].Capacity = float64(500 * (1 + i%4)) // 500..2000
		w[i] = ms[i].Capacity
	}
	ids := traceIDs(100_000, 2, nil)
	for _, s := range []Strategy{BoundedLoad, WeightedRoundRobin} {
		t.Run(string(s), func(t *testing.T) {
			tb := build(t, cfgFor(s), ms)
			if got := spread(tb, ids, w); got > 1.1 {
				t.Fatalf("capacity-weighted max/mean spread %.3f, want ≤ 1.1", got)
			}
		})
	}
}

// TestSpreadSampledTraffic checks that trace IDs that all have low (or high) sampling
// randomness — what a sampler keeps, or an SDK's ratio rule lets through — spread as
// evenly as any.
func TestSpreadSampledTraffic(t *testing.T) {
	tweaks := map[string]func(*[16]byte){
		"low randomness": func(id *[16]byte) { // bytes 9..15 below 2^56/100
			r := binary.BigEndian.Uint64(id[8:]) & (1<<56 - 1) % (1 << 56 / 100)
			binary.BigEndian.PutUint64(id[8:], uint64(id[8])<<56|r)
		},
		"high randomness": func(id *[16]byte) { // bytes 9..15 at the top 1%
			r := 1<<56 - 1 - (binary.BigEndian.Uint64(id[8:])&(1<<56-1))%(1<<56/100)
			binary.BigEndian.PutUint64(id[8:], uint64(id[8])<<56|r)
		},
		"low SDK ratio bits": func(id *[16]byte) { // the lower half's top bits zero
			binary.BigEndian.PutUint64(id[8:], binary.BigEndian.Uint64(id[8:])>>7)
		},
		"only upper half random": func(id *[16]byte) {
			binary.BigEndian.PutUint64(id[8:], 42)
		},
		"only lower half random": func(id *[16]byte) {
			binary.BigEndian.PutUint64(id[:8], 42)
		},
	}
	tb := build(t, DefaultConfig(), members(10, 1000))
	for name, tweak := range tweaks {
		t.Run(name, func(t *testing.T) {
			ids := traceIDs(100_000, 3, tweak)
			if got := spread(tb, ids, nil); got > 1.1 {
				t.Fatalf("max/mean spread %.3f, want ≤ 1.1", got)
			}
		})
	}
}

// movedBySampling returns the fraction of sampled keys whose member (by Key) differs.
func movedBySampling(a, b *Table, ids [][16]byte) float64 {
	var moved int
	for _, id := range ids {
		k := TraceKey(id)
		if a.Member(a.Pick(k)).Key != b.Member(b.Pick(k)).Key {
			moved++
		}
	}
	return float64(moved) / float64(len(ids))
}

func TestMembershipChangeMovesLittle(t *testing.T) {
	ids := traceIDs(50_000, 4, nil)
	for _, s := range Strategies() {
		for _, n := range []int{10, 100} {
			t.Run(fmt.Sprintf("%s/%d", s, n), func(t *testing.T) {
				ms := members(n+1, 1000)
				base := build(t, cfgFor(s), ms[:n])
				added := build(t, cfgFor(s), ms)
				removed := build(t, cfgFor(s), append(append([]Member(nil), ms[:n/2]...), ms[n/2+1:n]...))
				bound := 1/float64(n) + 0.05
				for name, other := range map[string]*Table{"add one": added, "remove one": removed} {
					if got := Moved(base, other); got > bound {
						t.Errorf("%s: Moved %.4f, want ≤ 1/N + 5%% = %.4f", name, got, bound)
					}
					if got := movedBySampling(base, other, ids); got > bound {
						t.Errorf("%s: %.4f of sampled keys moved, want ≤ %.4f", name, got, bound)
					}
				}
			})
		}
	}
}

func TestDeterministic(t *testing.T) {
	for _, s := range Strategies() {
		t.Run(string(s), func(t *testing.T) {
			ms := members(37, 0)
			for i := range ms {
				ms[i].Capacity = float64(100 + i*7)
				ms[i].Load = float64(i%10) / 10
				ms[i].LatencyMS = float64(i % 5)
				ms[i].InFlight = int64(i % 7)
			}
			a := build(t, cfgFor(s), ms)
			rev := make([]Member, len(ms))
			for i := range ms {
				rev[i] = ms[len(ms)-1-i]
			}
			b, err := Build(cfgFor(s), rev, a)
			if err != nil {
				t.Fatal(err)
			}
			if m := Moved(a, b); m != 0 {
				t.Fatalf("two builds from the same members differ on %.4f of the key space", m)
			}
			for i := range a.Len() {
				if a.Member(i).Key != b.Member(i).Key {
					t.Fatalf("member %d: %q vs %q", i, a.Member(i).Key, b.Member(i).Key)
				}
			}
		})
	}
}

func TestLoadAwareShares(t *testing.T) {
	ms := members(4, 1000)
	ms[0].InFlight, ms[1].InFlight, ms[2].InFlight, ms[3].InFlight = 0, 10, 10, 100
	lc := build(t, cfgFor(LeastConnections), ms)
	if !(lc.Share(0) > lc.Share(1) && lc.Share(1) > lc.Share(3)) {
		t.Fatalf("least_connections shares %v %v %v %v: fewer in flight should take more", lc.Share(0), lc.Share(1), lc.Share(2), lc.Share(3))
	}
	ms = members(3, 1000)
	ms[0].Load, ms[1].Load, ms[2].Load = 0.1, 0.5, 0.9
	in := build(t, cfgFor(Intelligent), ms)
	if !(in.Share(0) > in.Share(1) && in.Share(1) > in.Share(2) && in.Share(2) > 0) {
		t.Fatalf("intelligent shares %v %v %v: a less loaded member should take more, every member some", in.Share(0), in.Share(1), in.Share(2))
	}
	cfg := cfgFor(Intelligent)
	cfg.Weights = Weights{Latency: 1}
	ms = members(2, 1000)
	ms[1].LatencyMS = 9
	in = build(t, cfg, ms)
	if got := in.Share(0) / in.Share(1); math.Abs(got-10) > 0.1 {
		t.Fatalf("latency-only score: share ratio %.2f, want 10 (1/(1+0) over 1/(1+9))", got)
	}
}

func TestBoundedLoadCap(t *testing.T) {
	for _, n := range []int{2, 3, 10, 100} {
		tb := build(t, DefaultConfig(), members(n, 1))
		for i := range n {
			held, limit := tb.Share(i)*numSlots, math.Ceil(1.05*numSlots/float64(n))
			if held > limit {
				t.Fatalf("%d members: member %d holds %v slots, cap ⌈1.05 × fair share⌉ = %v", n, i, held, limit)
			}
		}
	}
}

func TestNextFailover(t *testing.T) {
	tb := build(t, DefaultConfig(), members(7, 1))
	for _, k := range []uint64{0, 1, math.MaxUint64, 0x8000000000000000, 12345678901234567} {
		seen := map[int]bool{}
		for a := range 7 {
			m := tb.Next(k, a)
			if m < 0 || seen[m] {
				t.Fatalf("key %x attempt %d: %d (seen %v): want a member not offered yet", k, a, m, seen)
			}
			seen[m] = true
		}
		if got := tb.Next(k, 7); got != -1 {
			t.Fatalf("key %x: attempt 7 of 7 members gave %d, want -1", k, got)
		}
		if tb.Next(k, 0) != tb.Pick(k) {
			t.Fatal("attempt 0 is not Pick")
		}
	}
	big := build(t, DefaultConfig(), members(40, 1))
	seen := map[int]bool{}
	for a := range 40 {
		m := big.Next(99, a)
		if m < 0 || seen[m] {
			t.Fatalf("40 members, attempt %d: %d repeats or is none", a, m)
		}
		seen[m] = true
	}
}

func TestEmpty(t *testing.T) {
	var nilTable *Table
	empty := build(t, DefaultConfig(), nil)
	for _, tb := range []*Table{nilTable, empty} {
		if tb.Pick(1) != -1 || tb.Next(1, 0) != -1 || tb.Len() != 0 || tb.Index("x") != -1 {
			t.Fatal("an empty table must pick -1 and hold nothing")
		}
	}
	one := build(t, DefaultConfig(), members(1, 0))
	if Moved(nilTable, empty) != 0 || Moved(nilTable, one) != 1 || Moved(one, one) != 0 {
		t.Fatal("Moved: empty↔empty is 0, empty↔some is 1, a table with itself 0")
	}
}

func TestBuildRejects(t *testing.T) {
	tests := map[string][]Member{
		"duplicate key":   {{Key: "a"}, {Key: "a"}},
		"empty key":       {{Key: ""}},
		"NaN capacity":    {{Key: "a", Capacity: math.NaN()}},
		"negative load":   {{Key: "a", Load: -1}},
		"negative flight": {{Key: "a", InFlight: -1}},
		"inf latency":     {{Key: "a", LatencyMS: math.Inf(1)}},
	}
	for name, ms := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Build(DefaultConfig(), ms, nil); !errors.Is(err, ErrMembers) {
				t.Fatalf("Build: %v, want ErrMembers", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default", DefaultConfig(), true},
		{"every strategy", Config{Strategy: Intelligent, LoadFactor: 1.2, Weights: Weights{Load: 1, Latency: 2, Capacity: 3}}, true},
		{"unknown strategy", Config{Strategy: "random", LoadFactor: 1.05}, false},
		{"load factor 1", Config{LoadFactor: 1}, false},
		{"load factor NaN", Config{LoadFactor: math.NaN()}, false},
		{"negative weight", Config{LoadFactor: 1.1, Weights: Weights{Load: -1}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Fatalf("Validate: %v, want ok=%v (errors wrap ErrConfig)", err, tt.ok)
			}
		})
	}
	if s, err := ParseStrategy(""); err != nil || s != BoundedLoad {
		t.Fatalf(`ParseStrategy(""): %v %v, want bounded_load`, s, err)
	}
	if _, err := ParseStrategy("nope"); !errors.Is(err, ErrConfig) {
		t.Fatalf("ParseStrategy(nope): %v, want ErrConfig", err)
	}
}

func BenchmarkPick(b *testing.B) {
	ids := traceIDs(1024, 5, nil)
	for _, s := range Strategies() {
		b.Run(string(s), func(b *testing.B) {
			tb := build(b, cfgFor(s), members(100, 1000))
			b.ReportAllocs()
			sink := 0
			i := 0
			for b.Loop() {
				sink += tb.Pick(TraceKey(ids[i&1023]))
				i++
			}
			_ = sink
		})
	}
}

func BenchmarkNext(b *testing.B) {
	tb := build(b, DefaultConfig(), members(100, 1000))
	b.ReportAllocs()
	var k uint64
	for b.Loop() {
		k += 0x9e3779b97f4a7c15
		_ = tb.Next(k, 2)
	}
}

func BenchmarkBuild(b *testing.B) {
	for _, s := range Strategies() {
		b.Run(string(s), func(b *testing.B) {
			ms := members(100, 1000)
			for i := range ms {
				ms[i].InFlight = int64(i % 9)
				ms[i].Load = float64(i%10) / 10
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(cfgFor(s), ms, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestUnknownCapacityCountsAsMean(t *testing.T) {
	ms := members(3, 0)
	ms[0].Capacity, ms[1].Capacity = 1000, 3000 // ms[2] unknown: counted as 2000
	tb := build(t, cfgFor(WeightedRoundRobin), ms)
	for i, want := range []float64{1.0 / 6, 3.0 / 6, 2.0 / 6} {
		if got := tb.Share(i); math.Abs(got-want) > 0.001 {
			t.Fatalf("member %d share %.4f, want %.4f", i, got, want)
		}
	}
}

// TestRebalanceMovesBounded: when one member's readings change, the load-aware
// strategies move little more than the change of its share.
func TestRebalanceMovesBounded(t *testing.T) {
	for _, n := range []int{10, 100} {
		ms := members(n, 1000)
		for i := range ms {
			ms[i].InFlight, ms[i].Load = 10, 0.5
		}
		before := map[Strategy]*Table{LeastConnections: build(t, cfgFor(LeastConnections), ms), Intelligent: build(t, cfgFor(Intelligent), ms)}
		ms[0].InFlight, ms[0].Load = 20, 0.9
		for s, a := range before {
			b := build(t, cfgFor(s), ms)
			change := a.Share(0) - b.Share(0)
			if change <= 0 {
				t.Fatalf("%s/%d: the busier member's share did not shrink (%.4f → %.4f)", s, n, a.Share(0), b.Share(0))
			}
			if m := Moved(a, b); m > 2*change+0.02 {
				t.Errorf("%s/%d: moved %.4f for a share change of %.4f, want ≤ 2 × change + 2%%", s, n, m, change)
			}
		}
	}
}

// TestBuildFromPrevIsTheSame: a table built with the previous one equals one built
// without it (prev only saves work).
func TestBuildFromPrevIsTheSame(t *testing.T) {
	ms := members(60, 1000)
	for _, s := range Strategies() {
		prev := build(t, cfgFor(s), ms[:50])
		next := append(append([]Member(nil), ms[5:45]...), ms[50:]...) // 10 gone, 10 new
		a, err := Build(cfgFor(s), next, prev)
		if err != nil {
			t.Fatal(err)
		}
		b := build(t, cfgFor(s), next)
		if m := Moved(a, b); m != 0 || !slices.Equal(a.ring, b.ring) {
			t.Fatalf("%s: built from prev differs from built afresh (moved %.4f)", s, m)
		}
	}
}

func BenchmarkRebuild(b *testing.B) {
	ms := members(101, 1000)
	prev := build(b, DefaultConfig(), ms[:100])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(DefaultConfig(), ms[1:], prev); err != nil { // one joins, one leaves
			b.Fatal(err)
		}
	}
}

// TestStrategyTable: every row of the table has a name, help and a dealer, names are
// unique, the default comes first, and parsing, LoadAware and Names read the table.
func TestStrategyTable(t *testing.T) {
	seen := map[Strategy]bool{}
	for _, d := range Definitions() {
		if d.Name == "" || d.Help == "" || d.Dealer == nil || seen[d.Name] {
			t.Fatalf("bad row %+v", d)
		}
		seen[d.Name] = true
		if got, err := ParseStrategy(string(d.Name)); err != nil || got != d.Name {
			t.Fatalf("ParseStrategy(%q) = %v, %v", d.Name, got, err)
		}
		if LoadAware(d.Name) != d.LoadAware || !strings.Contains(Names(), string(d.Name)) {
			t.Fatalf("%s: LoadAware or Names disagree with the table", d.Name)
		}
	}
	if def, _ := ParseStrategy(""); def != BoundedLoad || Strategies()[0] != BoundedLoad {
		t.Fatal("the default is not first")
	}
	if _, err := ParseStrategy("fastest"); err == nil || !strings.Contains(err.Error(), Names()) {
		t.Fatalf("unknown strategy error %v does not list the known ones", err)
	}
	if LoadAware("fastest") {
		t.Fatal("an unknown strategy is load-aware")
	}
}
