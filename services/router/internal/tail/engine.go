package tail

import (
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/tracesample"
)

// Bounds of a Summary's dynamic-key values.
const (
	// maxKeyValues is the most distinct values kept per key field of one trace.
	maxKeyValues = 8
	// maxKeyValueLen is the longest value kept; longer ones are cut.
	maxKeyValueLen = 128
)

// Engine decides traces by the policies of one global.tail_sampling. Observe and
// Decide are safe for concurrent use (on different Summaries).
type Engine struct {
	cfg       fleetconfig.TailSampling
	policies  []policy
	keyFields []string

	mu         sync.Mutex
	cap        float64 // kept traces per second allowed this router; 0: no cap
	windowEnd  time.Time
	windowMass float64 // unscaled keep probability decided in the current second
	demand     float64 // smoothed unscaled kept traces per second
	scale      float64 // what every probability is multiplied by (≤ 1)
}

type policy struct {
	name   string
	cond   condition
	keep   float64
	dyn    *dynamic
	keyIdx []int // indexes of the dynamic key's fields in Engine.keyFields
}

// New compiles a validated config. The caller validates (fleetconfig.Global.Validate):
// New trusts its input.
func New(cfg fleetconfig.TailSampling) *Engine {
	e := &Engine{cfg: cfg, scale: 1}
	for _, p := range cfg.Policies {
		cp := policy{name: p.Name, cond: compileCondition(p.When)}
		switch {
		case p.Dynamic != nil:
			cp.dyn = newDynamic(p.Dynamic)
			for _, f := range p.Dynamic.Key {
				i := slices.Index(e.keyFields, f)
				if i < 0 {
					i = len(e.keyFields)
					e.keyFields = append(e.keyFields, f)
				}
				cp.keyIdx = append(cp.keyIdx, i)
			}
		case p.Keep != nil:
			cp.keep = *p.Keep
		}
		e.policies = append(e.policies, cp)
	}
	return e
}

// Config returns the configuration the engine was built from.
func (e *Engine) Config() fleetconfig.TailSampling { return e.cfg }

// Policies returns the policy names in order.
func (e *Engine) Policies() []string {
	names := make([]string, len(e.policies))
	for i, p := range e.policies {
		names[i] = p.name
	}
	return names
}

// Summary is what the engine knows of one trace: what its spans met, how many there
// are, and the values of the dynamic policies' key fields. Its zero value is an empty
// trace. A Summary is not safe for concurrent use.
type Summary struct {
	// Spans is the number of spans observed.
	Spans int
	// matched has bit i set once a span met policy i's span conditions.
	matched uint64
	// vals holds, per key field, the distinct values seen, sorted.
	vals [][]string
}

// Observe folds one span into s.
func (e *Engine) Observe(s *Summary, sp Span) {
	s.Spans++
	for i := range e.policies {
		bit := uint64(1) << i
		if s.matched&bit == 0 && e.policies[i].cond.spanMatches(sp) {
			s.matched |= bit
		}
	}
	if len(e.keyFields) == 0 {
		return
	}
	if s.vals == nil {
		s.vals = make([][]string, len(e.keyFields))
	}
	for i, f := range e.keyFields {
		v, ok := sp.Attr(f)
		if !ok {
			continue
		}
		if len(v) > maxKeyValueLen {
			v = v[:maxKeyValueLen]
		}
		vs := s.vals[i]
		j, found := slices.BinarySearch(vs, v)
		if found || len(vs) >= maxKeyValues {
			continue
		}
		s.vals[i] = slices.Insert(vs, j, strings.Clone(v))
	}
}

// Decision is the outcome of Decide.
type Decision struct {
	// Policy is the index of the policy that matched, -1 when none did.
	Policy int
	// Name is that policy's name ("" when none matched).
	Name string
	// Probability is the tail keep probability of the trace, in [0, 1]: the
	// policy's keep or dynamic rate times the throughput scale. 0 when none matched.
	Probability float64
}

// Decide returns the first policy whose conditions s meets and the trace's tail keep
// probability. now times the dynamic adjustments and the throughput window.
func (e *Engine) Decide(s *Summary, now time.Time) Decision {
	for i := range e.policies {
		p := &e.policies[i]
		if s.matched&(uint64(1)<<i) == 0 || s.Spans < p.cond.minSpans {
			continue
		}
		prob := p.keep
		if p.dyn != nil {
			prob = 1 / p.dyn.rate(s.key(p.keyIdx), now)
		}
		return Decision{Policy: i, Name: p.name, Probability: prob * e.account(prob, now)}
	}
	return Decision{Policy: -1}
}

// key joins the trace's values of the given fields.
func (s *Summary) key(idx []int) string {
	var b strings.Builder
	for n, i := range idx {
		if n > 0 {
			b.WriteByte(0)
		}
		if i < len(s.vals) {
			for m, v := range s.vals[i] {
				if m > 0 {
					b.WriteByte(',')
				}
				b.WriteString(v)
			}
		}
	}
	return b.String()
}

// SetCap sets the traces per second this router may keep (its share of
// throughput.traces_per_second); 0 or less removes the cap.
func (e *Engine) SetCap(tracesPerSecond float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cap = math.Max(tracesPerSecond, 0)
	e.rescale()
}

// Scale returns the factor the throughput cap applies to every probability now.
func (e *Engine) Scale() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.scale
}

// Demand returns the smoothed kept traces per second the policies ask for before the
// cap (what the router reports as its tail demand).
func (e *Engine) Demand() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.demand
}

// account adds one decision's unscaled probability to the current one-second window
// and returns the scale in force. At each window's end the demand is smoothed (weight
// 0.5) and the scale becomes cap / demand (at most 1).
func (e *Engine) account(prob float64, now time.Time) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.windowEnd.IsZero() {
		e.windowEnd = now.Add(time.Second)
	}
	if !now.Before(e.windowEnd) {
		secs := 1 + math.Floor(now.Sub(e.windowEnd).Seconds())
		e.demand = 0.5*e.windowMass/secs + 0.5*e.demand
		e.windowMass = 0
		e.windowEnd = now.Add(time.Second)
		e.rescale()
	}
	e.windowMass += prob
	return e.scale
}

func (e *Engine) rescale() {
	e.scale = 1
	if e.cap > 0 && e.demand > e.cap {
		e.scale = e.cap / e.demand
	}
}

// DynamicRates returns the current per-key rates of the dynamic policy at index i (nil
// for other policies), keys as "value1\x00value2".
func (e *Engine) DynamicRates(i int) map[string]float64 {
	if i < 0 || i >= len(e.policies) || e.policies[i].dyn == nil {
		return nil
	}
	return e.policies[i].dyn.snapshot()
}

// Keep reports whether a trace is kept at tail probability tailP after head sampling
// kept it at headP, with consistent sampling on the trace ID's randomness: kept when
// the randomness is at or above the threshold of headP·tailP. Head sampling kept the
// trace iff the randomness is at or above headP's threshold, which the combined
// threshold is never below, so the tail keeps a subset, with probability tailP given
// head's keep; the kept spans carry the combined threshold (ot=th). It returns that
// combined probability too.
func Keep(traceID [16]byte, headP, tailP float64) (keep bool, combined float64) {
	combined = math.Min(math.Max(headP, 0), 1) * math.Min(math.Max(tailP, 0), 1)
	return combined > 0 && tracesample.Keep(traceID, combined), combined
}
