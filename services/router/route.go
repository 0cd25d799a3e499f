package routersvc

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/services/router/internal/balance"
	"github.com/otelfleet/otelfleet/services/router/internal/export"
	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
	"github.com/otelfleet/otelfleet/services/router/internal/ratelimit"
)

// exportResult is what one request came to.
type exportResult struct {
	Total, Kept, Sampled, Rejected int
}

func (r exportResult) outcome() string {
	if r.Rejected > 0 {
		return outcomePartial
	}
	return outcomeOK
}

// message is the partial_success error message.
func (r exportResult) message(sig otlpwire.Signal) string {
	if r.Rejected == 0 {
		return ""
	}
	return strconv.Itoa(r.Rejected) + " " + itemNoun(sig) + " refused by the fleet's rate limits (rate_limiting); retrying them later may succeed"
}

func itemNoun(sig otlpwire.Signal) string {
	switch sig {
	case otlpwire.Logs:
		return "log records"
	case otlpwire.Metrics:
		return "data points"
	}
	return "spans"
}

// resState is what a split learned about one resource of the request.
type resState struct {
	plan                                 *plan
	received, kept, sampled, rateLimited int
}

// splitState is one split's scratch: pooled, one per request in flight.
type splitState struct {
	sp  otlpwire.Splitter
	t   *tables
	pol *policy
	lim *ratelimit.Fleet
	sig otlpwire.Signal
	// routeOnly re-splits already-admitted items: no sampling or rate limiting.
	routeOnly bool
	exclude   []bool
	// avoid marks suspect backends (they handed back batches lately): skipped while any
	// other backend can take the item.
	avoid    []bool
	anyAvoid bool
	res      []resState
	arena    []byte
	now      time.Time
	nowhere  int
	s        *Service
	fn       func(*otlpwire.Item) otlpwire.Verdict
	excl     func(int) bool
	exclSoft func(int) bool
	// stranded collects the parts deliver found no backend for.
	stranded []otlpwire.Part
	// top holds the first split's parts: a later Split reuses the Splitter's slice.
	top []otlpwire.Part
	// first holds the first split's per-resource counts.
	first []resState
	// queuedBytes sums the payloads deliver handed to the exporter; failedOver the items
	// it submitted to another backend than the first choice.
	queuedBytes int64
	failedOver  int
	// acks are the waiters every submitted part carries (nil: nobody waits).
	acks []*export.Ack
	// ownAck holds this request's Ack (delivered mode) without an allocation.
	ownAck [1]*export.Ack
}

var splitStates = sync.Pool{New: func() any {
	st := &splitState{}
	st.fn = st.route
	st.excl = func(d int) bool { return st.exclude[d] }
	st.exclSoft = func(d int) bool { return st.exclude[d] || st.avoid[d] }
	return st
}}

func (s *Service) getSplitState(sig otlpwire.Signal, t *tables) *splitState {
	st := splitStates.Get().(*splitState)
	st.s, st.t, st.pol, st.lim, st.sig, st.routeOnly, st.now = s, t, s.policy.Load(), s.limiter.Load(), sig, false, time.Now()
	st.nowhere = len(t.keys)
	st.exclude, st.avoid, st.anyAvoid = st.exclude[:0], st.avoid[:0], false
	for range len(t.keys) {
		st.exclude = append(st.exclude, false)
		st.avoid = append(st.avoid, false)
	}
	if sus := s.suspects.Load(); sus != nil {
		for key, until := range *sus {
			if d, ok := t.byKey[key]; ok && st.now.Before(until) {
				st.avoid[d], st.anyAvoid = true, true
			}
		}
	}
	st.res, st.arena, st.stranded, st.top, st.first = st.res[:0], st.arena[:0], st.stranded[:0], st.top[:0], st.first[:0]
	st.queuedBytes, st.failedOver, st.acks = 0, 0, nil
	return st
}

func putSplitState(st *splitState) {
	st.s, st.t, st.pol, st.lim, st.acks, st.ownAck[0] = nil, nil, nil, nil, nil, nil
	if cap(st.arena) > 1<<20 {
		st.arena = nil
	}
	splitStates.Put(st)
}

// resource returns the state of the item's resource, planning it on first sight.
func (st *splitState) resource(it *otlpwire.Item) *resState {
	for len(st.res) <= it.Resource {
		st.res = append(st.res, resState{})
	}
	r := &st.res[it.Resource]
	if r.plan == nil {
		r.plan = st.pol.planFor(it.Service)
	}
	return r
}

// route decides one item: rate limit, sampling (traces), then its backend.
func (st *splitState) route(it *otlpwire.Item) otlpwire.Verdict {
	r := st.resource(it)
	key := r.plan.key
	if it.HasTraceID {
		key = balance.TraceKey(it.TraceID)
	}
	var ts []byte
	if !st.routeOnly {
		r.received += it.Count
		if st.lim != nil && !st.admit(it, key) {
			r.rateLimited += it.Count
			return otlpwire.Verdict{Dest: otlpwire.DestRejected}
		}
		if st.sig == otlpwire.Traces && it.HasTraceID {
			if cap(st.arena)-len(st.arena) < maxTraceState {
				// A fresh block: the trace states already written keep the old one.
				st.arena = make([]byte, 0, arenaBlock)
			}
			free := st.arena[len(st.arena):]
			o := r.plan.sampler.Decide(it.TraceID, it.TraceState, free)
			if !o.Keep {
				r.sampled += it.Count
				return otlpwire.Verdict{Dest: otlpwire.DestSampled}
			}
			if o.TraceState != nil {
				ts = o.TraceState
				st.grow(ts)
			}
		}
		r.kept += it.Count
	}
	d := -1
	if st.anyAvoid {
		d = st.t.pick(r.plan, key, st.exclSoft)
	}
	if d < 0 {
		d = st.t.pick(r.plan, key, st.excl)
	}
	if d < 0 {
		d = st.nowhere
	}
	return otlpwire.Verdict{Dest: d, TraceState: ts}
}

// admit asks the rate limiter about one item: a traced item (key: its trace key) is
// decided whole by its trace, so every span of a trace gets one verdict; others by count.
func (st *splitState) admit(it *otlpwire.Item, key uint64) bool {
	if it.HasTraceID {
		return st.lim.AllowTrace(it.Service, key, it.Count, st.now)
	}
	return st.lim.Allow(it.Service, it.Count, st.now)
}

// Trace-state arena sizes: a block holds the new trace states of many spans; a block
// with less room than maxTraceState left is replaced.
const (
	arenaBlock    = 16 << 10
	maxTraceState = 512
)

// grow extends the arena over ts when Decide appended it in place, so later spans'
// trace states do not overwrite it; a reallocated ts starts a new arena.
func (st *splitState) grow(ts []byte) {
	n := len(st.arena)
	if cap(st.arena)-n >= len(ts) && len(ts) > 0 && &st.arena[:n+1][n] == &ts[0] {
		st.arena = st.arena[:n+len(ts)]
		return
	}
	st.arena = ts[len(ts):]
}

// export samples, limits and routes one request (protobuf) and hands every part to its
// backend, failing over part by part; it refuses the request (busy) only when some part
// can go nowhere.
//
// In delivered mode it then waits until a backend took every part (or a part could not
// be delivered, the wait's bound passed or ctx ended: busy, the client retries).
func (s *Service) export(ctx context.Context, sig otlpwire.Signal, req []byte) (exportResult, *refusal) {
	if !s.ready.Load() {
		return exportResult{}, busy(retryBusy, "router starting: waiting for the registry, config and sampling decision; retry shortly")
	}
	s.active.Add(1)
	defer s.active.Add(-1)
	t := s.tables.Load()
	st := s.getSplitState(sig, t)
	defer putSplitState(st)
	res, err := st.sp.Split(sig, req, len(t.keys)+1, st.fn)
	if err != nil {
		if errors.Is(err, otlpwire.ErrMalformed) {
			return exportResult{}, refuse(refuseMalformed, "%v", err)
		}
		return exportResult{}, refuse(refuseMalformed, "%s request: %v", sig, err)
	}
	// deliver's re-splits reuse st.res: keep the first split's counts.
	st.first = append(st.first[:0], st.res...)
	accepted := false
	defer func() { s.count(sig, st.first, accepted) }()
	out := exportResult{Total: res.Total, Sampled: res.Sampled, Rejected: res.Rejected, Kept: res.Total - res.Sampled - res.Rejected}
	st.top = append(st.top[:0], res.Parts...)
	var held int64
	for _, p := range st.top {
		held += int64(len(p.Payload))
	}
	if !s.mem.take(held) {
		for i := range st.top {
			st.top[i].Release()
		}
		return exportResult{}, busy(retryBusy, "router memory limit (%d bytes) reached; retry later", s.mem.limit)
	}
	st.routeOnly = true
	var ack *export.Ack
	if s.cfg.Ack == AckDelivered {
		ack = export.NewAck()
		st.ownAck[0] = ack
		st.acks = st.ownAck[:]
	}
	submitted, stranded := 0, 0
	for _, p := range st.top {
		submitted += s.deliver(st, sig, p)
	}
	// The submitted bytes now sit in the backends' queues (until the next refresh reads
	// them there): released from this request first, so they are never counted twice.
	s.mem.give(held)
	s.mem.queued.Add(st.queuedBytes)
	s.m.rerouted.Add(float64(st.failedOver))
	for i := range st.stranded {
		stranded += st.stranded[i].Items
		st.stranded[i].Release()
	}
	if ack != nil && submitted > 0 && s.active.Load() == 1 {
		// This is the only request in the router: its client waits for these parts and
		// no other can send more before they go, so the linger would only add latency
		// (one sequential exporter would wait out every linger). With others active, the
		// linger lets their parts share the export call.
		s.exp.FlushLingering()
	}
	if ack != nil {
		export.Settle(st.acks, true) // the request's own reference: every part is out
	}
	if stranded > 0 {
		if submitted > 0 {
			s.m.duplicates.Add(float64(submitted))
		}
		return exportResult{}, busy(retryBusy, "no backend can take %d of the %d %s now (backends full or gone); retry later", stranded, out.Kept, itemNoun(sig))
	}
	if ack != nil {
		if r := s.awaitDelivery(ctx, ack, submitted, sig); r != nil {
			return exportResult{}, r
		}
	}
	accepted = true
	return out, nil
}

// awaitDelivery waits until every part of a request carrying ack was accepted by a
// backend, within the ack timeout and ctx; otherwise the request is refused (busy) and
// its submitted items, which may still arrive, are counted as duplicates of the retry.
func (s *Service) awaitDelivery(ctx context.Context, ack *export.Ack, submitted int, sig otlpwire.Signal) *refusal {
	start := time.Now()
	timer := time.NewTimer(s.cfg.AckTimeout)
	defer timer.Stop()
	var why string
	select {
	case <-ack.Done():
		s.m.ackWait.Observe(time.Since(start).Seconds())
		if !ack.Failed() {
			return nil
		}
		why = "a backend could not take part of the request and it could not be re-routed"
	case <-timer.C:
		why = "no backend confirmed delivery within " + s.cfg.AckTimeout.String()
	case <-ctx.Done():
		why = "the request ended before delivery was confirmed"
	}
	if submitted > 0 {
		s.m.duplicates.Add(float64(submitted))
	}
	s.m.ackFailed.Inc()
	return busy(retryBusy, "%s (%d %s); retry later", why, submitted, itemNoun(sig))
}

// deliver submits part p to its backend; a full or gone backend is excluded and p
// re-split over the next backends of its items. It returns the items submitted; parts
// that can go nowhere are appended to st.stranded.
func (s *Service) deliver(st *splitState, sig otlpwire.Signal, p otlpwire.Part) int {
	return s.deliverAt(st, sig, p, 0)
}

// deliverAt is deliver for a part re-split depth times.
func (s *Service) deliverAt(st *splitState, sig otlpwire.Signal, p otlpwire.Part, depth int) (submitted int) {
	if p.Dest == st.nowhere {
		st.stranded = append(st.stranded, p)
		return 0
	}
	err := s.exp.Submit(st.t.keys[p.Dest], export.Batch{Signal: sig, Payload: p.Payload, Items: p.Items, Acks: st.acks})
	if err == nil {
		st.queuedBytes += int64(len(p.Payload))
		n := p.Items
		if depth > 0 {
			st.failedOver += n
		}
		p.Release() // the exporter copied it
		return n
	}
	if !errors.Is(err, export.ErrFull) && !errors.Is(err, export.ErrNoTarget) {
		s.log.Warn("backend refused a batch; failing over", "backend", st.t.keys[p.Dest], "err", err)
	}
	st.exclude[p.Dest] = true
	st.res = st.res[:0]
	res, err := st.sp.Split(sig, p.Payload, len(st.t.keys)+1, st.fn)
	if err != nil { // our own output: only a bug gets here
		s.log.Error("re-split of a part failed", "err", err)
		st.stranded = append(st.stranded, otlpwire.Part{Dest: st.nowhere, Payload: p.Payload, Items: p.Items})
		return 0
	}
	p.Release()                                 // re-split into res.Parts
	for _, q := range slices.Clone(res.Parts) { // the next Split reuses res.Parts
		submitted += s.deliverAt(st, sig, q, depth+1)
	}
	return submitted
}

// count adds one request's per-resource counts to the metrics and the load monitor:
// received always (it is the demand), the verdicts only when the request was accepted
// (a refused request comes back).
func (s *Service) count(sig otlpwire.Signal, res []resState, accepted bool) {
	for i := range res {
		r := &res[i]
		if r.plan == nil || r.received == 0 {
			continue
		}
		c := s.m.service(sig.String(), r.plan.service)
		c.received.Add(float64(r.received))
		if sig == otlpwire.Traces {
			s.mon.RecordService(r.plan.service, r.received)
			s.mon.RecordSpans(r.received, 0)
			s.totals.received.Add(int64(r.received))
		}
		if !accepted {
			continue
		}
		if r.kept > 0 {
			c.kept.Add(float64(r.kept))
		}
		if r.sampled > 0 {
			c.sampledOut.Add(float64(r.sampled))
		}
		if r.rateLimited > 0 {
			c.rateLimited.Add(float64(r.rateLimited))
		}
		if sig == otlpwire.Traces {
			if r.kept > 0 {
				s.fwd.RecordService(r.plan.service, r.kept)
				s.fwd.RecordSpans(r.kept, 0)
			}
			s.totals.kept.Add(int64(r.kept))
			s.totals.sampled.Add(int64(r.sampled))
			s.totals.rateLimited.Add(int64(r.rateLimited))
		}
	}
}
