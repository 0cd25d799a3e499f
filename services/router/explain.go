package routersvc

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/micro"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/platform"
	"github.com/otelfleet/otelfleet/pkg/tracesample"
	"github.com/otelfleet/otelfleet/services/router/internal/balance"
)

// Endpoints returns the micro endpoints of otlp-router: route (where a trace goes now,
// and why) and status (backends and counters).
func (s *Service) Endpoints() []platform.Endpoint {
	return []platform.Endpoint{
		{
			Op:          events.RouterOpRoute,
			Description: "where a trace goes now: sampling rate and verdict, backend, fail-over order, and why (body: {trace_id, service, region})",
			Handler: microapi.Handler(func(_ context.Context, req micro.Request) (any, error) {
				var q events.RouteQuery
				if err := microapi.DecodeRequest(req, &q); err != nil {
					return nil, err
				}
				return s.Route(q)
			}),
		},
		{
			Op:          events.RouterOpStatus,
			Description: "this router's backends (share, sent, failed, rerouted, dropped, queue) and span counters",
			Handler: microapi.Handler(func(context.Context, micro.Request) (any, error) {
				return s.Status(), nil
			}),
		},
	}
}

// parseTraceID reads 32 hex digits (an optional 0x and dashes allowed).
func parseTraceID(s string) ([16]byte, error) {
	var id [16]byte
	h := strings.ReplaceAll(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x"), "-", "")
	if len(h) != 32 {
		return id, fmt.Errorf("trace_id %q: want 32 hex digits, got %d", s, len(h))
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, fmt.Errorf("trace_id %q: %v", s, err)
	}
	return id, nil
}

// Route answers where a trace of q.Service, sent from q.Region (default this router's),
// goes now. A bad trace ID is a 400.
func (s *Service) Route(q events.RouteQuery) (events.RouteAnswer, error) {
	id, err := parseTraceID(q.TraceID)
	if err != nil {
		return events.RouteAnswer{}, microapi.Errorf(microapi.CodeBadRequest, "%v", err)
	}
	region := q.Region
	if region == "" {
		region = s.d.Region
	}
	pol := s.newPolicy(region)
	t := s.tables.Load()
	pl := pol.newPlan(q.Service)
	a := events.RouteAnswer{
		V: events.RouterVersion, Router: s.d.Instance, TraceID: hex.EncodeToString(id[:]), Service: q.Service,
		Rate: pl.rate, Threshold: tracesample.ThresholdTValue(pl.rate), Strategy: string(t.strategy),
	}
	_, why := pol.rate(q.Service)
	a.Why = append(a.Why, "rate: "+why)
	a.Kept = pl.sampler.Decide(id, nil, nil).Keep
	if a.Kept {
		a.Why = append(a.Why, fmt.Sprintf("kept: its 56-bit randomness is at or above the threshold of rate %v", pl.rate))
	} else {
		a.Why = append(a.Why, fmt.Sprintf("sampled out at rate %v (spans that carry a higher ot=th still decide by it)", pl.rate))
	}
	if pl.rule >= 0 {
		r := pol.rules[pl.rule]
		a.Why = append(a.Why, fmt.Sprintf("routing rule %d: service %q matches %q → region %s", pl.rule, q.Service, r.Service, r.TargetRegion))
	} else {
		a.Why = append(a.Why, "no routing rule matches")
	}
	if len(pol.pref) > 0 {
		a.Why = append(a.Why, fmt.Sprintf("region %s prefers %s", region, strings.Join(pol.pref, ", ")))
	}
	key := balance.TraceKey(id)
	var order []int
	excluded := map[int]bool{}
	for {
		d := t.pick(pl, key, func(i int) bool { return excluded[i] })
		if d < 0 {
			break
		}
		excluded[d] = true
		order = append(order, d)
	}
	if len(order) == 0 {
		a.Why = append(a.Why, "no backend: the registry lists no healthy collector with an address")
		return a, nil
	}
	a.Backend, a.Addr = t.keys[order[0]], t.addrs[order[0]]
	for _, rt := range t.regions {
		for _, d := range rt.dests {
			if d == order[0] {
				a.Region = rt.name
			}
		}
	}
	a.Why = append(a.Why, fmt.Sprintf("regions tried in order %s, then any other with backends; chosen in %s by %s", strings.Join(pl.regions, ", "), a.Region, t.strategy))
	for _, d := range order[1:] {
		a.Fallbacks = append(a.Fallbacks, t.keys[d])
	}
	return a, nil
}

// Status returns this router's backends and counters.
func (s *Service) Status() events.RouterStatus {
	t := s.tables.Load()
	g, h := s.Addrs()
	st := events.RouterStatus{
		V: events.RouterVersion, Router: s.d.Instance, Region: s.d.Region, Strategy: string(t.strategy),
		GRPCAddr: g, HTTPAddr: h,
		Received: s.totals.received.Load(), Kept: s.totals.kept.Load(), Sampled: s.totals.sampled.Load(), RateLimited: s.totals.rateLimited.Load(),
		MemoryBytes: s.mem.used(), MemoryLimit: s.mem.limit,
	}
	shares := map[string]float64{}
	regions := map[string]string{}
	for _, rt := range t.regions {
		sh := rt.shares()
		for i, d := range rt.dests {
			shares[t.keys[d]] = sh[i]
			regions[t.keys[d]] = rt.name
		}
	}
	for _, b := range s.exp.Stats() {
		st.Backends = append(st.Backends, events.RouterBackend{
			Key: b.Key, Addr: b.Addr, Region: regions[b.Key], Share: shares[b.Key],
			Sent: b.Sent, Failed: b.Failed, Retried: b.Retried, Rerouted: b.Rerouted, Dropped: b.Dropped,
			QueueBytes: b.QueueBytes, InFlight: b.InFlight, Leaving: b.Leaving,
		})
	}
	return st
}
