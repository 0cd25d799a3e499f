package topologysvc

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// Get answers otlp.topology.get: every region's statistics, and collectors in pages
// (see GetRequest). An unknown region yields an empty region list, not an error.
func (s *Service) Get(req GetRequest) (Topology, error) {
	if req.Region != "" {
		if err := events.CheckToken("region", req.Region); err != nil {
			return Topology{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
	}
	limit := req.Limit
	switch {
	case limit < 0:
		return Topology{}, fmt.Errorf("%w: limit %d: must be >= 0", ErrBadRequest, limit)
	case limit == 0:
		limit = DefaultPageLimit
	case limit > MaxPageLimit:
		limit = MaxPageLimit
	}
	var after collectorKey
	if req.After != "" {
		r, id, ok := strings.Cut(req.After, "/")
		if !ok {
			return Topology{}, fmt.Errorf("%w: after %q: want <region>/<id> (the next of the previous page)", ErrBadRequest, req.After)
		}
		after = collectorKey{r, id}
	}
	v, err := s.current()
	if err != nil {
		return Topology{}, err
	}
	return s.render(v, renderOpts{region: req.Region, after: after, limit: limit, statsOnly: req.StatsOnly}), nil
}

// ErrBadRequest is wrapped by query errors caused by the request itself.
var ErrBadRequest = errors.New("bad request")

// renderOpts selects what render copies.
type renderOpts struct {
	// region keeps only that region (all when empty).
	region string
	// after skips collectors up to and including this key (none when zero).
	after collectorKey
	// limit bounds the collectors listed in total (unbounded when 0); Next is set when
	// it cut the list.
	limit int
	// perRegion bounds the collectors listed per region (unbounded when 0).
	perRegion int
	// attention picks, when perRegion cuts a region, the collectors most in need of
	// attention (see attentionFirst) instead of the first by id; either way they are
	// listed in id order.
	attention bool
	// statsOnly lists no collectors.
	statsOnly bool
}

// render copies the view into a reply as o says. Statistics always cover every
// collector; Region.Omitted counts the collectors not listed.
func (s *Service) render(v *view, o renderOpts) Topology {
	out := Topology{GeneratedAt: v.built.UTC(), Instance: s.d.Instance, Leader: s.leading.Load(), Global: v.global, Regions: []Region{}}
	left, more := o.limit, false
	var last *Collector
	for i := range v.regions {
		r := &v.regions[i]
		if o.region != "" && r.Region != o.region {
			continue
		}
		reg := Region{Region: r.Region, Stats: r.Stats, Collectors: []Collector{}}
		if !o.statsOnly {
			cs := afterCursor(r.Region, r.Collectors, o.after)
			n := len(cs)
			if o.perRegion > 0 {
				n = min(n, o.perRegion)
			}
			if o.limit > 0 {
				n = min(n, left)
				left -= n
				more = more || n < len(cs)
			}
			if n > 0 {
				last = &cs[n-1]
			}
			if o.attention && n < len(cs) && o.limit == 0 {
				reg.Collectors = attentionFirst(cs, n)
			} else {
				reg.Collectors = append(reg.Collectors, cs[:n]...)
			}
		}
		reg.Omitted = len(r.Collectors) - len(reg.Collectors)
		out.Regions = append(out.Regions, reg)
	}
	if more && last != nil {
		out.Next = last.Region + "/" + last.ID
	}
	return out
}

// attentionFirst returns the n collectors of cs (sorted by id) that most need
// attention, in id order: unhealthy, then degraded, then stale, then the highest
// utilisation; ties by id.
func attentionFirst(cs []Collector, n int) []Collector {
	rank := func(c *Collector) int {
		switch c.Status {
		case StatusUnhealthy:
			return 0
		case StatusDegraded:
			return 1
		case StatusStale:
			return 2
		default:
			return 3
		}
	}
	idx := make([]int, len(cs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		ca, cb := &cs[a], &cs[b]
		if c := cmp.Compare(rank(ca), rank(cb)); c != 0 {
			return c
		}
		if c := cmp.Compare(cb.Utilization, ca.Utilization); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	idx = idx[:n]
	slices.Sort(idx)
	out := make([]Collector, n)
	for i, j := range idx {
		out[i] = cs[j]
	}
	return out
}

// afterCursor returns the collectors of region (sorted by id) that come after the
// cursor key in (region, id) order.
func afterCursor(region string, cs []Collector, after collectorKey) []Collector {
	switch {
	case after.region == "" || region > after.region:
		return cs
	case region < after.region:
		return nil
	}
	lo, hi := 0, len(cs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cs[m].ID <= after.id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return cs[lo:]
}
