package topologysvc

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
)

// Limits of the routers table.
const (
	// MaxRouters bounds the routers whose status is held; statuses of further routers
	// are dropped until others age out.
	MaxRouters = 1000
	// RouterStatusTTL is how long a router's last status is shown after it stopped
	// publishing.
	RouterStatusTTL = 15 * time.Second
)

// RouterView is one router on the page and in /v1/routers: its rates over the last two
// statuses it published and its backends.
type RouterView struct {
	Router   string `json:"router"`
	Region   string `json:"region"`
	Strategy string `json:"strategy"`
	GRPCAddr string `json:"grpc_addr"`
	// AgeMS is the time since its last status.
	AgeMS int64 `json:"age_ms"`
	// ReceivedPerSec and KeptPerSec are spans per second received (before sampling) and
	// kept; 0 until two statuses were seen.
	ReceivedPerSec float64 `json:"received_per_sec"`
	KeptPerSec     float64 `json:"kept_per_sec"`
	// Received and Kept are its totals since it started.
	Received int64 `json:"received"`
	Kept     int64 `json:"kept"`
	// MemoryBytes and MemoryLimit are what it holds for requests and queues.
	MemoryBytes int64               `json:"memory_bytes"`
	MemoryLimit int64               `json:"memory_limit"`
	Backends    []RouterBackendView `json:"backends"`
}

// RouterBackendView is one backend of a router.
type RouterBackendView struct {
	Key    string  `json:"key"`
	Addr   string  `json:"addr"`
	Region string  `json:"region"`
	Share  float64 `json:"share"`
	// SentPerSec is spans per second delivered to it.
	SentPerSec float64 `json:"sent_per_sec"`
	QueueBytes int64   `json:"queue_bytes"`
	InFlight   int64   `json:"in_flight"`
	// Rerouted and Dropped count since the router started.
	Rerouted int64 `json:"rerouted"`
	Dropped  int64 `json:"dropped"`
	Failed   int64 `json:"failed"`
	Leaving  bool  `json:"leaving,omitempty"`
}

// Routers is the /v1/routers reply.
type Routers struct {
	Routers []RouterView `json:"routers"`
}

type routerSeen struct {
	prev, cur         events.RouterStatus
	prevSeen, curSeen time.Time
}

// routerTable holds the last two statuses of every registered router. Safe for
// concurrent use.
type routerTable struct {
	fleet *fleetview.View
	mu    sync.Mutex
	byID  map[string]*routerSeen
}

func newRouterTable(fleet *fleetview.View) *routerTable {
	return &routerTable{fleet: fleet, byID: map[string]*routerSeen{}}
}

// registered reports whether router id is registered in region (the fleet view's rule).
func (t *routerTable) registered(region, id string) bool {
	r := t.fleet.Snapshot().Router(id)
	return r != nil && r.Region == region
}

// add records st, seen at now, when it comes from a registered router in the region it
// registered in; it returns false when st is dropped.
func (t *routerTable) add(st events.RouterStatus, now time.Time) bool {
	if !t.registered(st.Region, st.Router) {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byID[st.Router]
	if !ok {
		if len(t.byID) >= MaxRouters {
			t.pruneLocked(now)
			if len(t.byID) >= MaxRouters {
				return false
			}
		}
		e = &routerSeen{}
		t.byID[st.Router] = e
	}
	e.prev, e.prevSeen = e.cur, e.curSeen
	e.cur, e.curSeen = st, now
	return true
}

func (t *routerTable) pruneLocked(now time.Time) {
	for id, e := range t.byID {
		if now.Sub(e.curSeen) > RouterStatusTTL || !t.registered(e.cur.Region, id) {
			delete(t.byID, id)
		}
	}
}

// rate is the per-second rate of a counter that went from a to b over d; 0 when d is
// not positive or the counter went back (the router restarted).
func rate(a, b int64, d time.Duration) float64 {
	if d <= 0 || b < a {
		return 0
	}
	return float64(b-a) / d.Seconds()
}

// list returns the live routers by region and id, their rates over their last two
// statuses.
func (t *routerTable) list(now time.Time) Routers {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(now)
	out := Routers{Routers: make([]RouterView, 0, len(t.byID))}
	for _, e := range t.byID {
		c, d := &e.cur, e.curSeen.Sub(e.prevSeen)
		if e.prevSeen.IsZero() {
			d = 0
		}
		v := RouterView{Router: c.Router, Region: c.Region, Strategy: c.Strategy, GRPCAddr: c.GRPCAddr, AgeMS: now.Sub(e.curSeen).Milliseconds(),
			ReceivedPerSec: rate(e.prev.Received, c.Received, d), KeptPerSec: rate(e.prev.Kept, c.Kept, d),
			Received: c.Received, Kept: c.Kept, MemoryBytes: c.MemoryBytes, MemoryLimit: c.MemoryLimit,
			Backends: make([]RouterBackendView, 0, len(c.Backends))}
		prevSent := make(map[string]int64, len(e.prev.Backends))
		for _, b := range e.prev.Backends {
			prevSent[b.Key] = b.Sent
		}
		for _, b := range c.Backends {
			p, had := prevSent[b.Key]
			bd := d
			if !had {
				bd = 0
			}
			v.Backends = append(v.Backends, RouterBackendView{Key: b.Key, Addr: b.Addr, Region: b.Region, Share: b.Share,
				SentPerSec: rate(p, b.Sent, bd), QueueBytes: b.QueueBytes, InFlight: b.InFlight,
				Rerouted: b.Rerouted, Dropped: b.Dropped, Failed: b.Failed, Leaving: b.Leaving})
		}
		slices.SortFunc(v.Backends, func(a, b RouterBackendView) int { return strings.Compare(a.Key, b.Key) })
		out.Routers = append(out.Routers, v)
	}
	slices.SortFunc(out.Routers, func(a, b RouterView) int {
		return cmp.Or(strings.Compare(a.Region, b.Region), strings.Compare(a.Router, b.Router))
	})
	return out
}

// followRouters keeps the routers table: the routers registered in the fleet view and
// the statuses they publish on <root>.router.status.<id>, until the
// service stops. A status that does not decode, names another router than its subject,
// or comes from an unregistered router is counted and dropped.
func (s *Service) followRouters() {
	prefix := s.d.NS.Root() + ".router.status."
	sub, err := s.d.NC.Subscribe(s.d.NS.RouterStatusSubjects(), func(m *nats.Msg) {
		var st events.RouterStatus
		if err := events.Decode(m.Data, &st); err != nil || prefix+st.Router != m.Subject {
			s.m.routerStatuses.WithLabelValues("invalid").Inc()
			return
		}
		if !s.routers.add(st, s.now()) {
			s.m.routerStatuses.WithLabelValues("dropped").Inc()
			return
		}
		s.m.routerStatuses.WithLabelValues("ok").Inc()
	})
	if err != nil {
		s.log.Error("router statuses not followed; the page lists no routers", "err", err)
		return
	}
	<-s.ctx.Done()
	_ = sub.Unsubscribe()
}

func (s *Service) serveRouters(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.routers.list(s.now()))
}
