package otlpsink

import (
	"encoding/hex"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// OtherService is the name under which spans of services beyond Config.MaxServices are
// counted, and UnknownService the name of spans whose resource has no service.name.
const (
	OtherService   = "other"
	UnknownService = "unknown_service"
)

// Stats is what a Sink has received since it started.
type Stats struct {
	// Spans counts every span received, duplicates included.
	Spans int64 `json:"spans"`
	// Traces counts distinct trace IDs (a trace forgotten under Config.MaxTraces and seen
	// again counts twice).
	Traces int64 `json:"traces"`
	// Duplicates counts spans whose trace and span ID were already received.
	Duplicates int64 `json:"duplicates"`
	// Unchecked counts spans not checked for duplicates because their trace already had
	// MaxSpanIDsPerTrace span IDs remembered (a flood of span IDs under one trace ID costs
	// bounded memory).
	Unchecked int64 `json:"unchecked,omitempty"`
	// LogRecords and MetricPoints count the other signals.
	LogRecords   int64 `json:"log_records"`
	MetricPoints int64 `json:"metric_points"`
	// Requests counts accepted export requests, Refused the ones answered with an error.
	Requests int64 `json:"requests"`
	Refused  int64 `json:"refused"`
	// Services are the spans per service.name.
	Services map[string]int64 `json:"services"`
	// Recent are the last traces received (newest first) with their span counts so far.
	Recent []TraceCount `json:"recent"`
}

// TraceCount is the span count of one trace.
type TraceCount struct {
	TraceID string `json:"trace_id"`
	Spans   int64  `json:"spans"`
}

type spanKey struct {
	trace pcommon.TraceID
	span  pcommon.SpanID
}

type traceEntry struct {
	spans int64
	ids   []pcommon.SpanID
}

// counts is the sink's table of traces and counters, guarded by mu.
type counts struct {
	mu          sync.Mutex
	maxTraces   int
	maxServices int
	traces      map[pcommon.TraceID]*traceEntry
	seen        map[spanKey]struct{}
	order       []pcommon.TraceID // ring of traces in order of first sight
	head        int               // next slot of order to fill (and the oldest when full)
	stats       Stats
}

func newCounts(maxTraces, maxServices int) *counts {
	return &counts{
		maxTraces: maxTraces, maxServices: maxServices,
		traces: map[pcommon.TraceID]*traceEntry{},
		seen:   map[spanKey]struct{}{},
		order:  make([]pcommon.TraceID, 0, min(maxTraces, 1024)),
		stats:  Stats{Services: map[string]int64{}},
	}
}

// traceTally is what one request of spans added, for metrics and the load monitor.
type traceTally struct {
	spans, traces, duplicates int64
	services                  map[string]int64
}

// addTraces counts every span of td.
func (c *counts) addTraces(td ptrace.Traces) traceTally {
	t := traceTally{services: map[string]int64{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		service := c.serviceName(rs.Resource())
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				sp := spans.At(k)
				c.addSpan(&t, sp.TraceID(), sp.SpanID())
				t.services[service]++
			}
		}
	}
	for s, n := range t.services {
		c.stats.Services[s] += n
	}
	c.stats.Spans += t.spans
	c.stats.Traces += t.traces
	c.stats.Duplicates += t.duplicates
	c.stats.Requests++
	return t
}

// MaxSpanIDsPerTrace bounds the span IDs remembered per trace for duplicate detection.
const MaxSpanIDsPerTrace = 10000

func (c *counts) addSpan(t *traceTally, tid pcommon.TraceID, sid pcommon.SpanID) {
	t.spans++
	e := c.traces[tid]
	if e == nil {
		c.forgetOldest()
		e = &traceEntry{}
		c.traces[tid] = e
		c.remember(tid)
		t.traces++
	}
	e.spans++
	if len(e.ids) >= MaxSpanIDsPerTrace {
		c.stats.Unchecked++
		return
	}
	k := spanKey{tid, sid}
	if _, dup := c.seen[k]; dup {
		t.duplicates++
		return
	}
	c.seen[k] = struct{}{}
	e.ids = append(e.ids, sid)
}

// forgetOldest drops the oldest trace when the table is full.
func (c *counts) forgetOldest() {
	if len(c.order) < c.maxTraces {
		return
	}
	old := c.order[c.head]
	if e := c.traces[old]; e != nil {
		for _, sid := range e.ids {
			delete(c.seen, spanKey{old, sid})
		}
		delete(c.traces, old)
	}
}

// remember puts tid in the ring (forgetOldest made room when it was full).
func (c *counts) remember(tid pcommon.TraceID) {
	if len(c.order) < c.maxTraces {
		c.order = append(c.order, tid)
		c.head = len(c.order) % c.maxTraces
		return
	}
	c.order[c.head] = tid
	c.head = (c.head + 1) % c.maxTraces
}

// serviceName returns the resource's service.name, or OtherService once maxServices
// names are counted.
func (c *counts) serviceName(r pcommon.Resource) string {
	name := UnknownService
	if v, ok := r.Attributes().Get("service.name"); ok && v.Str() != "" {
		name = v.Str()
	}
	if _, known := c.stats.Services[name]; !known && len(c.stats.Services) >= c.maxServices {
		return OtherService
	}
	return name
}

// addItems counts n log records or metric points of one request into *field, a field
// of c.stats.
func (c *counts) addItems(field func(*Stats) *int64, n int64) {
	c.mu.Lock()
	*field(&c.stats) += n
	c.stats.Requests++
	c.mu.Unlock()
}

func (c *counts) refused() {
	c.mu.Lock()
	c.stats.Refused++
	c.mu.Unlock()
}

// snapshot copies the counters with the span counts of the last n traces.
func (c *counts) snapshot(n int) Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Services = make(map[string]int64, len(c.stats.Services))
	for k, v := range c.stats.Services {
		s.Services[k] = v
	}
	n = min(n, len(c.order))
	s.Recent = make([]TraceCount, 0, n)
	for i := 1; i <= n; i++ {
		// head is the slot after the newest (len(order) while the ring fills up).
		tid := c.order[(c.head-i+len(c.order))%len(c.order)]
		s.Recent = append(s.Recent, TraceCount{TraceID: hex.EncodeToString(tid[:]), Spans: c.traces[tid].spans})
	}
	return s
}

// traceSpans returns the spans received for trace tid (0 when unknown or forgotten).
func (c *counts) traceSpans(tid pcommon.TraceID) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.traces[tid]; e != nil {
		return e.spans
	}
	return 0
}

// perTrace returns every remembered trace's span count.
func (c *counts) perTrace() map[pcommon.TraceID]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[pcommon.TraceID]int64, len(c.traces))
	for tid, e := range c.traces {
		out[tid] = e.spans
	}
	return out
}
