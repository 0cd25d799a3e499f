// Package tail is the router tier's whole-trace (tail) sampling decision: policies
// compiled from global.tail_sampling, a per-trace Summary that spans update as they
// arrive (which policies' span conditions some span met, the span count, the dynamic
// policies' key values), and Decide, which picks the first matching policy and its keep
// probability (a fixed keep, or a dynamic per-key rate, scaled by the router's share of
// the throughput cap). It holds no spans and does no I/O: the router's tail stage keeps
// the spans, times the decision and applies the verdict.
package tail

import (
	"path"
	"strings"
	"time"

	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

// Span is what a policy reads of one span. Implementations read the wire bytes lazily;
// Attr looks at the span's own attributes first, then its resource's, and reports a
// value's string form (ints, doubles and bools formatted as OTLP/JSON would).
type Span interface {
	// Service is the resource's service.name ("" when absent).
	Service() string
	// Status is the span status code.
	Status() fleetconfig.SpanStatus
	// Duration is end − start (0 when end is before start).
	Duration() time.Duration
	// Root reports whether the span has no parent span ID.
	Root() bool
	// Attr returns the value of key on the span or, failing that, its resource.
	Attr(key string) (string, bool)
}

// condition is a compiled fleetconfig.TailCondition.
type condition struct {
	status      fleetconfig.SpanStatus
	minDuration time.Duration
	root        bool
	attrs       []attrMatch
	services    []string
	minSpans    int
	// spanConds reports whether any span condition is set; without one every span
	// meets the span part.
	spanConds bool
}

type attrMatch struct{ key, glob string }

func compileCondition(w *fleetconfig.TailCondition) condition {
	if w == nil {
		return condition{}
	}
	c := condition{
		status:      w.Status,
		minDuration: time.Duration(w.MinDuration),
		root:        w.Root,
		services:    w.Services,
		minSpans:    w.MinSpans,
	}
	for k, v := range w.Attributes {
		c.attrs = append(c.attrs, attrMatch{k, v})
	}
	// Cheap checks first: exact keys before globs with wildcards.
	sortAttrs(c.attrs)
	c.spanConds = c.status != "" || c.minDuration > 0 || c.root || len(c.attrs) > 0 || len(c.services) > 0
	return c
}

func sortAttrs(a []attrMatch) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j].key < a[j-1].key; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// spanMatches reports whether s meets every span condition of c.
func (c *condition) spanMatches(s Span) bool {
	if !c.spanConds {
		return true
	}
	if c.root && !s.Root() {
		return false
	}
	if c.status != "" && s.Status() != c.status {
		return false
	}
	if c.minDuration > 0 && s.Duration() < c.minDuration {
		return false
	}
	if len(c.services) > 0 && !matchAny(c.services, s.Service()) {
		return false
	}
	for _, a := range c.attrs {
		v, ok := s.Attr(a.key)
		if !ok || !globMatch(a.glob, v) {
			return false
		}
	}
	return true
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if globMatch(g, name) {
			return true
		}
	}
	return false
}

// globMatch is fleetconfig.MatchGlob with a fast path for patterns without
// metacharacters (the common case: an exact value).
func globMatch(pattern, s string) bool {
	if !strings.ContainsAny(pattern, `*?[\`) {
		return pattern == s
	}
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}
