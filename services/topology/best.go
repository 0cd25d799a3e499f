package topologysvc

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
)

// ErrNoCollector is returned by Best when no region has an eligible collector (healthy,
// fresh, with a known capacity and utilisation below 1).
var ErrNoCollector = errors.New("no eligible collector")

// Reasons a collector is not eligible for Best, as counted in reasons and replies.
const (
	reasonStale           = "stale"
	reasonUnhealthy       = "unhealthy"
	reasonDegraded        = "degraded"
	reasonFull            = "full"
	reasonUnknownCapacity = "unknown capacity"
)

// ineligible says why c cannot be chosen, or "" when it can: it must be healthy, fresh,
// with a known capacity and utilisation below 1.
func ineligible(c *Collector) string {
	switch {
	case c.Stale:
		return reasonStale
	case c.Health == events.HealthDegraded:
		return reasonDegraded
	case c.Health != events.HealthHealthy:
		return reasonUnhealthy
	case !(c.CapacityQPS > 0):
		return reasonUnknownCapacity
	case !(c.Utilization < 1):
		return reasonFull
	}
	return ""
}

// spare is the qps a collector can still take.
func spare(c *Collector) float64 { return math.Max(0, c.CapacityQPS-c.QPS) }

// Score rates collector c in [0, 1], higher is better: fleetview.Score (the formula the
// router's intelligent strategy uses too) of its utilisation, average latency and spare
// qps, against maxSpare, the largest spare qps among the candidates.
func Score(w Weights, c *Collector, maxSpare float64) float64 {
	return fleetview.Score(w, fleetview.Reading{Utilization: c.Utilization, LatencyMS: c.AvgLatencyMS, Spare: spare(c)}, maxSpare)
}

// Choice is what Best chose.
type Choice struct {
	// Collector is the chosen collector.
	Collector Collector
	// Score is its score (see Score).
	Score float64
	// Fallback is true when a region was asked for, had no eligible collector, and the
	// choice comes from another region; Reason then says why.
	Fallback bool
	Reason   string
	// Candidates counts the eligible collectors the choice was made among.
	Candidates int
}

// Best chooses the eligible collector with the highest Score: in region when it is not
// empty, else in every region. When region has no eligible collector it falls back to
// every other region and says so (Fallback, Reason). Equal scores are broken by id, then
// region, so the choice is deterministic. The error wraps ErrNoCollector and counts why
// collectors were not eligible when there is nothing to choose.
func Best(regions []Region, region string, w Weights) (Choice, error) {
	if region == "" {
		ch, why := bestOf(regions, func(string) bool { return true }, w)
		if ch.Candidates == 0 {
			return Choice{}, fmt.Errorf("%w in any region (%s)", ErrNoCollector, why)
		}
		return ch, nil
	}
	ch, why := bestOf(regions, func(r string) bool { return r == region }, w)
	if ch.Candidates > 0 {
		return ch, nil
	}
	reason := fmt.Sprintf("region %q has no registered collectors", region)
	if why.total > 0 {
		reason = fmt.Sprintf("region %q has no eligible collector (%s)", region, why)
	}
	fb, fwhy := bestOf(regions, func(r string) bool { return r != region }, w)
	if fb.Candidates == 0 {
		return Choice{}, fmt.Errorf("%w: %s, nor has any other region (%s)", ErrNoCollector, reason, fwhy)
	}
	fb.Fallback = true
	fb.Reason = reason + fmt.Sprintf("; chose the best collector of the other regions, in %q", fb.Collector.Region)
	return fb, nil
}

// tally counts collectors by why they were not eligible.
type tally struct {
	total   int
	reasons map[string]int
}

func (t tally) String() string {
	if t.total == 0 {
		return "no registered collectors"
	}
	parts := make([]string, 0, len(t.reasons))
	for r, n := range t.reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return fmt.Sprintf("%d registered", t.total)
	}
	return fmt.Sprintf("%d registered: %s", t.total, strings.Join(parts, ", "))
}

// bestOf picks the best eligible collector in the regions keep accepts.
func bestOf(regions []Region, keep func(string) bool, w Weights) (Choice, tally) {
	var why tally
	maxSpare := 0.0
	for ri := range regions {
		if !keep(regions[ri].Region) {
			continue
		}
		cs := regions[ri].Collectors
		for i := range cs {
			why.total++
			if r := ineligible(&cs[i]); r != "" {
				if why.reasons == nil {
					why.reasons = map[string]int{}
				}
				why.reasons[r]++
				continue
			}
			maxSpare = math.Max(maxSpare, spare(&cs[i]))
		}
	}
	var best *Collector
	var ch Choice
	for ri := range regions {
		if !keep(regions[ri].Region) {
			continue
		}
		cs := regions[ri].Collectors
		for i := range cs {
			c := &cs[i]
			if ineligible(c) != "" {
				continue
			}
			ch.Candidates++
			s := Score(w, c, maxSpare)
			if best == nil || better(s, c, ch.Score, best) {
				best, ch.Score = c, s
			}
		}
	}
	if best != nil {
		ch.Collector = *best
	}
	return ch, why
}

// scoreEpsilon is the difference below which two scores count as equal.
const scoreEpsilon = 1e-12

// better reports whether (s, c) beats (bs, b): a higher score, or an equal score and a
// smaller id, then a smaller region.
func better(s float64, c *Collector, bs float64, b *Collector) bool {
	if math.Abs(s-bs) > scoreEpsilon {
		return s > bs
	}
	if c.ID != b.ID {
		return c.ID < b.ID
	}
	return c.Region < b.Region
}

// BestOf answers otlp.topology.best: the eligible collector with the best score (see
// Best), with the request's weights or the configured ones.
func (s *Service) BestOf(req BestRequest) (BestReply, error) {
	w := s.cfg.Weights
	if req.LoadWeight != nil {
		w.Load = *req.LoadWeight
	}
	if req.LatencyWeight != nil {
		w.Latency = *req.LatencyWeight
	}
	if req.CapacityWeight != nil {
		w.Capacity = *req.CapacityWeight
	}
	if err := validateWeights(w); err != nil {
		return BestReply{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if req.Region != "" {
		if err := events.CheckToken("region", req.Region); err != nil {
			return BestReply{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
	}
	v, err := s.current()
	if err != nil {
		return BestReply{}, err
	}
	ch, err := Best(v.regions, req.Region, w)
	if err != nil {
		return BestReply{}, err
	}
	c := &ch.Collector
	return BestReply{Region: c.Region, ID: c.ID, Address: c.Address, Score: ch.Score, Fallback: ch.Fallback, Reason: ch.Reason,
		RequestedRegion: req.Region, Candidates: ch.Candidates, Utilization: c.Utilization, QPS: c.QPS,
		CapacityQPS: c.CapacityQPS, AvgLatencyMS: c.AvgLatencyMS, Weights: w}, nil
}
