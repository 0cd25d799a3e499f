package routersvc

import (
	"fmt"
	"sync"

	"github.com/otelfleet/otelfleet/pkg/configwatch"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/services/router/internal/balance"
	"github.com/otelfleet/otelfleet/services/router/internal/sampling"
)

// policy is what decides a service's rate and regions: the sampling decision in force
// (nil before the first one), the config's fallback rate and routing rules, and this
// router's region preference. It is immutable once published; a config or decision
// change publishes a new one, so its per-service plans are never stale.
type policy struct {
	region   string
	decision *events.Decision
	// snap is the config snapshot it was built from (nil before the first).
	snap       *configwatch.Snapshot
	configRate float64
	rules      []fleetconfig.RoutingRule
	pref       []string

	mu    sync.RWMutex
	plans map[string]*plan
}

// plan is how one service's items are handled under a policy.
type plan struct {
	service string
	rate    float64
	sampler sampling.Sampler
	// regions are the regions to try first, in order (the rule's target, then the
	// preference, then this router's region); every other region with backends follows.
	regions []string
	// rule is the index of the routing rule that matched, or -1.
	rule int
	// key places the service's items that carry no trace ID.
	key uint64
}

// maxPlans bounds a policy's plan cache; services beyond it get a plan per resource.
const maxPlans = 10000

// samplers caches one sampler per rate across policies.
var samplers sync.Map // float64 → sampling.Sampler

func samplerFor(rate float64) sampling.Sampler {
	if v, ok := samplers.Load(rate); ok {
		return v.(sampling.Sampler)
	}
	sm := sampling.New(rate)
	samplers.Store(rate, sm)
	return sm
}

// rate returns the sampling rate of service in this router's region and where it came
// from.
func (p *policy) rate(service string) (float64, string) {
	if p.decision == nil {
		return p.configRate, fmt.Sprintf("no sampling decision yet: the config's global.sampling_rate %v", p.configRate)
	}
	r, m := p.decision.RateFor(service), p.decision.RegionRate(p.region)
	return r * m, fmt.Sprintf("decision %d (%s): rate %v for %q × region %s multiplier %v", p.decision.Version, p.decision.Strategy, r, service, p.region, m)
}

// planFor returns the plan of service (b aliases the request; it is copied when cached).
func (p *policy) planFor(b []byte) *plan {
	p.mu.RLock()
	pl := p.plans[string(b)]
	p.mu.RUnlock()
	if pl != nil {
		return pl
	}
	pl = p.newPlan(string(b))
	p.mu.Lock()
	if len(p.plans) < maxPlans {
		p.plans[pl.service] = pl
	}
	p.mu.Unlock()
	return pl
}

func (p *policy) newPlan(service string) *plan {
	rate, _ := p.rate(service)
	pl := &plan{service: service, rate: rate, sampler: samplerFor(rate), rule: -1, key: balance.BytesKey([]byte(service))}
	add := func(r string) {
		for _, have := range pl.regions {
			if have == r {
				return
			}
		}
		pl.regions = append(pl.regions, r)
	}
	for i, rule := range p.rules {
		if fleetconfig.MatchGlob(rule.Service, service) {
			pl.rule = i
			add(rule.TargetRegion)
			break
		}
	}
	for _, r := range p.pref {
		add(r)
	}
	if p.region != "" {
		add(p.region)
	}
	return pl
}

// pick returns the destination of key for pl: the first region in pl's order, then any
// other region (by name), whose table has a member not excluded; -1 when none has.
func (t *tables) pick(pl *plan, key uint64, excluded func(int) bool) int {
	for _, r := range pl.regions {
		if rt := t.regions[r]; rt != nil {
			if d := rt.pick(key, excluded); d >= 0 {
				return d
			}
		}
	}
	for _, r := range t.regionNames {
		if inOrder(pl.regions, r) {
			continue
		}
		if d := t.regions[r].pick(key, excluded); d >= 0 {
			return d
		}
	}
	return -1
}

func inOrder(regions []string, r string) bool {
	for _, have := range regions {
		if have == r {
			return true
		}
	}
	return false
}
