package samplersvc

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
	"github.com/otelfleet/otelfleet/services/sampler/internal/strategy"
)

// Limits on what the sampler tracks, so that a flood of reports with made-up collector
// or service names costs bounded memory and decision time.
const (
	// MaxTrackedCollectors bounds the collectors and routers whose reports are held
	// (the fleet view's MaxReporting); reports from new ones beyond it are refused until
	// others age out.
	MaxTrackedCollectors = fleetview.DefaultMaxReporting
	// MaxTrackedServices bounds the services an observation lists: the busiest are kept
	// and the traffic of the rest counts as "other" (sampled at the default rate).
	MaxTrackedServices = 10_000
	// MaxWaitingCollectors bounds the collectors whose reports are held, uncounted,
	// while their registration is not (yet) seen (the fleet view's MaxWaiting); reports
	// from further unregistered collectors are dropped. A flood of made-up collectors
	// fills this table only.
	MaxWaitingCollectors = fleetview.DefaultMaxWaiting
)

// newView returns the sampler's fleet view: reports wait for their registration, and
// are forgotten to make room, after ttl.
func newView(ttl time.Duration, now func() time.Time, reports func(fleetview.Outcome, string, []byte, error), cfg fleetview.Config) *fleetview.View {
	cfg.MaxReporting, cfg.MaxWaiting = MaxTrackedCollectors, MaxWaitingCollectors
	cfg.WaitFor, cfg.ForgetAfter, cfg.Now, cfg.Reports = ttl, ttl, now, reports
	return fleetview.New(cfg)
}

// Loads sums the live load reports of the fleet view (those received within the TTL)
// into the fleet's traffic:
//
//	fleet traffic = Σ collectors' rate + Σ routers' (received − forwarded) rate
//
// per service and in total. A router reports what it received before sampling; its
// backends (collectors) report again the part it forwarded, so adding a router's
// received rate less its forwarded rate counts each span once, whether SDKs send to
// collectors, through routers, or both. Who counts is the fleet view's rule: registered
// collectors, and routers registered in their report's region. Safe for concurrent use.
type Loads struct {
	ttl         time.Duration
	maxServices int
	view        *fleetview.View

	mu sync.Mutex
	// fwd is Observe's scratch map of one router's forwarded rates by service.
	fwd map[string]float64
}

// NewLoads returns the sums over view's reports that count for ttl after they were
// received.
func NewLoads(ttl time.Duration, view *fleetview.View) *Loads {
	return &Loads{ttl: ttl, maxServices: MaxTrackedServices, view: view, fwd: map[string]float64{}}
}

// View returns the fleet view the sums are taken over.
func (l *Loads) View() *fleetview.View { return l.view }

// Observe returns the sums over the live reporters at now: fleet spans/s per service and
// in total (collectors' rates plus routers' received less forwarded, each clamped at 0),
// and the load and capacity of the collectors that report a capacity (routers never
// count there: utilisation and degradation are the collectors').
func (l *Loads) Observe(now time.Time) strategy.Observation {
	s := l.view.Snapshot()
	l.mu.Lock()
	defer l.mu.Unlock()
	obs := strategy.Observation{Services: make(map[string]float64)}
	for _, rt := range s.Routers {
		if rt.Report != nil && now.Sub(rt.ReceivedAt) <= l.ttl {
			obs.Routers++
			l.addRouterLocked(&obs, rt.Report)
		}
	}
	for _, c := range s.Collectors {
		r := c.Report
		if r == nil || now.Sub(c.ReceivedAt) > l.ttl {
			continue
		}
		obs.Collectors++
		obs.FleetQPS += r.QPS
		if r.Capacity > 0 {
			obs.LoadQPS += r.QPS
			obs.Capacity += r.Capacity
		}
		for _, sr := range r.Services {
			obs.Services[sr.Name] += sr.SpansPerSec
		}
	}
	if len(obs.Services) > l.maxServices {
		keepBusiest(obs.Services, l.maxServices)
	}
	return obs
}

// addRouterLocked adds a router's received less forwarded rates to obs.
func (l *Loads) addRouterLocked(obs *strategy.Observation, r *events.LoadReport) {
	obs.FleetQPS += max(r.QPS-r.ForwardedQPS, 0)
	clear(l.fwd)
	for _, f := range r.Forwarded {
		l.fwd[f.Name] += f.SpansPerSec
	}
	for _, sr := range r.Services {
		if v := sr.SpansPerSec - l.fwd[sr.Name]; v > 0 {
			obs.Services[sr.Name] += v
		}
	}
}

// keepBusiest deletes all but the n busiest services (ties by name) from m.
func keepBusiest(m map[string]float64, n int) {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, name := range names[n:] {
		delete(m, name)
	}
}
