package routersvc

import (
	"context"
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/services/router/internal/export"
)

// handBack is a batch a backend gave back, waiting to be re-split over the others.
type handBack struct {
	from string
	b    export.Batch
}

// rerouter re-splits the batches backends hand back (retries exhausted, the backend
// left) over the tables in force without the backend that failed. A batch no backend
// can take now waits and is tried again; it is only dropped (and counted) when the
// router stops with nowhere to send it.
type rerouter struct {
	s       *Service
	mu      sync.Mutex
	pending []handBack
	kick    chan struct{}
}

func newRerouter(s *Service) *rerouter { return &rerouter{s: s, kick: make(chan struct{}, 1)} }

// add queues b from backend `from` (export.Rerouter; called from exporter goroutines).
func (r *rerouter) add(from string, b export.Batch) {
	r.s.suspect(from)
	r.mu.Lock()
	r.pending = append(r.pending, handBack{from: from, b: b})
	r.mu.Unlock()
	r.s.mem.held.Add(int64(len(b.Payload)))
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// rerouteRetry is how soon batches nobody could take are tried again.
const rerouteRetry = 100 * time.Millisecond

// run re-routes until ctx ends.
func (r *rerouter) run(ctx context.Context) {
	t := time.NewTicker(rerouteRetry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-t.C:
		}
		r.flush()
	}
}

// flush tries every pending batch once; what cannot go anywhere stays pending.
func (r *rerouter) flush() {
	r.mu.Lock()
	batch := r.pending
	r.pending = nil
	r.mu.Unlock()
	var keep []handBack
	for _, hb := range batch {
		if !r.s.resplit(hb) {
			keep = append(keep, hb)
			continue
		}
		r.s.mem.held.Add(-int64(len(hb.b.Payload)))
	}
	if len(keep) > 0 {
		r.mu.Lock()
		r.pending = append(keep, r.pending...)
		r.mu.Unlock()
	}
}

// drop counts what is still pending as dropped (at stop) and returns the items.
func (r *rerouter) drop() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, hb := range r.pending {
		n += hb.b.Items
		r.s.mem.held.Add(-int64(len(hb.b.Payload)))
		export.Settle(hb.b.Acks, false)
	}
	r.pending = nil
	return n
}

// resplit re-splits one handed-back batch without its backend and submits the parts; it
// reports false, having submitted nothing, when some item has nowhere to go now.
func (s *Service) resplit(hb handBack) bool {
	t := s.tables.Load()
	st := s.getSplitState(hb.b.Signal, t)
	defer putSplitState(st)
	st.routeOnly = true
	st.acks = hb.b.Acks // every new part carries the batch's waiters
	if d, ok := t.byKey[hb.from]; ok {
		st.exclude[d] = true
	}
	res, err := st.sp.Split(hb.b.Signal, hb.b.Payload, len(t.keys)+1, st.fn)
	if err != nil {
		s.log.Error("a handed-back batch cannot be re-split; dropped", "from", hb.from, "items", hb.b.Items, "err", err)
		s.m.dropped.Add(float64(hb.b.Items))
		export.Settle(hb.b.Acks, false)
		return true
	}
	st.top = append(st.top[:0], res.Parts...)
	for _, p := range st.top {
		if p.Dest == st.nowhere {
			for i := range st.top {
				st.top[i].Release()
			}
			return false
		}
	}
	submitted := 0
	for _, p := range st.top {
		submitted += s.deliver(st, hb.b.Signal, p)
	}
	s.m.rerouted.Add(float64(submitted))
	s.mem.queued.Add(st.queuedBytes)
	// Parts that found every backend full after the check wait for the next try.
	for _, p := range st.stranded {
		export.Hold(hb.b.Acks)
		s.rr.add(hb.from, export.Batch{Signal: hb.b.Signal, Payload: p.Payload, Items: p.Items, Acks: hb.b.Acks})
	}
	// The new parts hold their own references: the handed-back batch's are passed on.
	export.Settle(hb.b.Acks, true)
	return true
}

// suspectFor is how long new traffic avoids a backend that handed a batch back (its
// retries ran out or it left), unless no other backend can take it: a dead backend whose
// registration has not expired yet stops getting new traces at once.
const suspectFor = 5 * time.Second

// suspect marks backend key as avoided for suspectFor.
func (s *Service) suspect(key string) {
	s.suspectMu.Lock()
	defer s.suspectMu.Unlock()
	now := time.Now()
	next := map[string]time.Time{key: now.Add(suspectFor)}
	if old := s.suspects.Load(); old != nil {
		for k, until := range *old {
			if k != key && now.Before(until) {
				next[k] = until
			}
		}
	}
	s.suspects.Store(&next)
}
