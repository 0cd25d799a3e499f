package routersvc

import (
	"slices"
	"sort"
	"time"

	"github.com/otelfleet/otelfleet/services/router/internal/backends"
	"github.com/otelfleet/otelfleet/services/router/internal/balance"
	"github.com/otelfleet/otelfleet/services/router/internal/export"
)

// tables are the backend tables in force: one per region, immutable once published and
// swapped atomically, so a request reads them without locks and never waits on a
// rebuild.
type tables struct {
	// keys are every backend's key in key order: the destination index space of a split.
	keys  []string
	addrs []string
	// byKey maps a key to its destination index.
	byKey map[string]int
	// regions holds each region's table; regionNames those regions in name order.
	regions     map[string]*regionTable
	regionNames []string
	strategy    balance.Strategy
}

// regionTable is one region's table and its members' destination indexes.
type regionTable struct {
	name  string
	t     *balance.Table
	dests []int // member i of t is destination dests[i]
}

// pick returns the destination for key in this region, skipping excluded destinations,
// or -1.
func (r *regionTable) pick(key uint64, excluded func(int) bool) int {
	for attempt := 0; ; attempt++ {
		i := r.t.Next(key, attempt)
		if i < 0 {
			return -1
		}
		if d := r.dests[i]; excluded == nil || !excluded(d) {
			return d
		}
	}
}

// shares returns the fraction of the key space each member holds, by sampling the table
// at evenly spaced keys (for status pages).
func (r *regionTable) shares() []float64 {
	const samples = 4096
	out := make([]float64, r.t.Len())
	for i := range samples {
		if m := r.t.Pick(uint64(i) * (^uint64(0) / samples)); m >= 0 {
			out[m] += 1.0 / samples
		}
	}
	return out
}

// buildTables makes the tables for list under cfg, keeping what it can of prev's
// placement. inFlight gives each backend's live requests (least_connections).
func buildTables(cfg balance.Config, list []backends.Backend, prev *tables, inFlight func(string) int64) (*tables, error) {
	t := &tables{byKey: make(map[string]int, len(list)), regions: map[string]*regionTable{}, strategy: cfg.Strategy}
	sorted := slices.Clone(list)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Key < sorted[j].Key })
	members := map[string][]balance.Member{}
	for _, b := range sorted {
		if _, dup := t.byKey[b.Key]; dup {
			continue
		}
		t.byKey[b.Key] = len(t.keys)
		t.keys = append(t.keys, b.Key)
		t.addrs = append(t.addrs, b.Addr)
		m := balance.Member{Key: b.Key, Capacity: b.Capacity, Load: b.Load, LatencyMS: b.LatencyMS}
		if inFlight != nil {
			m.InFlight = inFlight(b.Key)
		}
		members[b.Region] = append(members[b.Region], m)
	}
	for region, ms := range members {
		var prevTable *balance.Table
		if prev != nil {
			if pr := prev.regions[region]; pr != nil {
				prevTable = pr.t
			}
		}
		bt, err := balance.Build(cfg, ms, prevTable)
		if err != nil {
			return nil, err
		}
		rt := &regionTable{name: region, t: bt, dests: make([]int, bt.Len())}
		for i := range rt.dests {
			rt.dests[i] = t.byKey[bt.Member(i).Key]
		}
		t.regions[region] = rt
		t.regionNames = append(t.regionNames, region)
	}
	sort.Strings(t.regionNames)
	return t, nil
}

// targets returns the exporter's targets for the tables.
func (t *tables) targets(list []backends.Backend) []export.Target {
	out := make([]export.Target, 0, len(list))
	for _, b := range list {
		if _, ok := t.byKey[b.Key]; ok {
			out = append(out, export.Target{Key: b.Key, Addr: b.Addr, Region: b.Region})
		}
	}
	return out
}

// rebuild rebuilds the tables from the latest backend list and publishes them, then
// tells the exporter. It is called from the backend set's goroutine and the rebalance
// loop, one at a time.
func (s *Service) rebuild(list []backends.Backend, why string) {
	s.rebuildMu.Lock()
	defer s.rebuildMu.Unlock()
	if list == nil {
		list = s.lastBackends
	} else {
		s.lastBackends = list
	}
	list = s.usable(list)
	start := time.Now()
	t, err := buildTables(s.cfg.balanceConfig(), list, s.tables.Load(), s.exp.InFlight)
	if err != nil {
		s.log.Error("backend tables not rebuilt; the previous ones stay in force", "why", why, "err", err)
		return
	}
	// New backends get a client before the table sends them traffic; a backend that left
	// hands back its queue, re-split without it, before or after the swap alike.
	s.exp.SetTargets(t.targets(list))
	s.tables.Store(t)
	s.m.rebuilds.Inc()
	s.m.rebuildSeconds.Observe(time.Since(start).Seconds())
	s.log.Debug("backend tables rebuilt", "why", why, "backends", len(t.keys), "regions", len(t.regionNames), "took", time.Since(start))
}

// usable returns the backends to build the tables from: those not reporting unhealthy,
// or, when there is none (a saturated host marks every collector unhealthy), the
// unhealthy ones as a last resort, rather than refusing everything. Entering and leaving
// the last resort is logged once and counted. s.rebuildMu is held.
func (s *Service) usable(list []backends.Backend) []backends.Backend {
	fine := make([]backends.Backend, 0, len(list))
	for _, b := range list {
		if !b.Unhealthy {
			fine = append(fine, b)
		}
	}
	last := len(fine) == 0 && len(list) > 0
	if last != s.onLastResort {
		s.onLastResort = last
		if last {
			s.m.lastResort.Inc()
			s.m.onLastResort.Set(1)
			s.log.Warn("no healthy or degraded backend: sending to the backends reporting unhealthy as a last resort", "backends", len(list))
		} else {
			s.m.onLastResort.Set(0)
			s.log.Info("healthy or degraded backends are back: backends reporting unhealthy get no new traffic", "backends", len(fine))
		}
	}
	if last {
		return list
	}
	return fine
}
