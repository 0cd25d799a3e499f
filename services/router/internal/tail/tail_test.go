package tail

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

// span is a Span read from fields, for tests.
type span struct {
	service  string
	status   fleetconfig.SpanStatus
	duration time.Duration
	root     bool
	attrs    map[string]string
}

func (s span) Service() string                { return s.service }
func (s span) Status() fleetconfig.SpanStatus { return s.status }
func (s span) Duration() time.Duration        { return s.duration }
func (s span) Root() bool                     { return s.root }
func (s span) Attr(k string) (string, bool) {
	if k == "service.name" {
		return s.service, s.service != ""
	}
	v, ok := s.attrs[k]
	return v, ok
}

// issueConfig is a policy set with every kind of condition.
func issueConfig(t *testing.T) fleetconfig.TailSampling {
	t.Helper()
	ts, err := fleetconfig.ParseTailSamplingYAML([]byte(`
decision_wait: 5s
max_trace_spans: 10000
policies:
  - {name: errors, when: {status: error}, keep: 1.0}
  - {name: slow, when: {min_duration: 2s, root: true}, keep: 1.0}
  - {name: vip, when: {attributes: {tenant: vip}}, keep: 1.0}
  - {name: checkout, when: {services: ["checkout*"]}, dynamic: {key: [http.route], goal_rate: 20}}
  - {name: big, when: {min_spans: 50}, keep: 1.0}
  - {name: rest, keep: 0.05}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Validate(); err != nil {
		t.Fatal(err)
	}
	return ts
}

func decide(e *Engine, now time.Time, spans ...span) Decision {
	var s Summary
	for _, sp := range spans {
		e.Observe(&s, sp)
	}
	return e.Decide(&s, now)
}

func TestFirstMatchingPolicyDecides(t *testing.T) {
	e := New(issueConfig(t))
	now := time.Unix(1000, 0)
	ok := span{service: "api", status: fleetconfig.StatusOK, duration: time.Millisecond, root: true}
	tests := map[string]struct {
		spans []span
		want  string
		prob  float64
	}{
		"error anywhere":          {[]span{ok, {service: "db", status: fleetconfig.StatusError}}, "errors", 1},
		"slow root":               {[]span{{service: "api", duration: 3 * time.Second, root: true}}, "slow", 1},
		"slow child is not root":  {[]span{ok, {service: "db", duration: 3 * time.Second}}, "rest", 0.05},
		"vip on a span":           {[]span{ok, {service: "db", attrs: map[string]string{"tenant": "vip"}}}, "vip", 1},
		"vip must be one span":    {[]span{{service: "db", attrs: map[string]string{"tenant": "other"}}}, "rest", 0.05},
		"checkout, new key keeps": {[]span{{service: "checkout-api", attrs: map[string]string{"http.route": "/pay"}}}, "checkout", 1},
		"big trace":               {append(make([]span, 0, 60), repeat(ok, 60)...), "big", 1},
		"the rest":                {[]span{ok}, "rest", 0.05},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			d := decide(e, now, tt.spans...)
			if d.Name != tt.want || d.Probability != tt.prob {
				t.Errorf("decision %+v, want policy %s at %v", d, tt.want, tt.prob)
			}
		})
	}
}

func repeat(s span, n int) []span {
	out := make([]span, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestNoPolicyMatchesDrops(t *testing.T) {
	one := 1.0
	e := New(fleetconfig.TailSampling{DecisionWait: fleetconfig.Duration(time.Second), MaxTraceSpans: 10,
		Policies: []fleetconfig.TailPolicy{{Name: "errors", When: &fleetconfig.TailCondition{Status: fleetconfig.StatusError}, Keep: &one}}})
	if d := decide(e, time.Now(), span{status: fleetconfig.StatusOK}); d.Policy != -1 || d.Probability != 0 {
		t.Fatalf("decision %+v, want none", d)
	}
}

func randomID(r *rand.Rand) [16]byte {
	var id [16]byte
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	return id
}

// within3Sigma fails when kept out of n is outside p ± 3σ of a binomial.
func within3Sigma(t *testing.T, what string, kept, n int, p float64) {
	t.Helper()
	sigma := math.Sqrt(float64(n) * p * (1 - p))
	if want := float64(n) * p; math.Abs(float64(kept)-want) > 3*sigma {
		t.Errorf("%s: kept %d of %d, want %.0f ± %.0f (3σ)", what, kept, n, want, 3*sigma)
	}
}

func TestKeepIsConsistentWithHead(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 200000
	const headP, tailP = 0.5, 0.1
	var headKept, tailKept int
	for range n {
		id := randomID(r)
		keptByHead, _ := Keep(id, headP, 1)
		keep, combined := Keep(id, headP, tailP)
		if combined != headP*tailP {
			t.Fatalf("combined %v, want %v", combined, headP*tailP)
		}
		if keep && !keptByHead {
			t.Fatal("the tail kept a trace head sampling dropped")
		}
		if keptByHead {
			headKept++
			if keep {
				tailKept++
			}
		}
	}
	within3Sigma(t, "tail share of head-kept traces", tailKept, headKept, tailP)
}

func TestRestKeptAtItsRate(t *testing.T) {
	e := New(issueConfig(t))
	r := rand.New(rand.NewPCG(3, 4))
	const n = 100000
	kept := 0
	now := time.Unix(1000, 0)
	for range n {
		d := decide(e, now, span{service: "api", status: fleetconfig.StatusOK, root: true})
		if k, _ := Keep(randomID(r), 1, d.Probability); k {
			kept++
		}
	}
	within3Sigma(t, "rest", kept, n, 0.05)
}

func TestDynamicKeepsRareKeysMoreOften(t *testing.T) {
	e := New(fleetconfig.TailSampling{DecisionWait: fleetconfig.Duration(time.Second), MaxTraceSpans: 10,
		Policies: []fleetconfig.TailPolicy{{Name: "dyn", Dynamic: &fleetconfig.DynamicSampling{
			Key: []string{"http.route"}, GoalRate: 20, AdjustmentInterval: fleetconfig.Duration(time.Second)}}}})
	r := rand.New(rand.NewPCG(5, 6))
	now := time.Unix(1000, 0)
	kept := map[string]int{}
	seen := map[string]int{}
	var keptAll, all int
	// 10 intervals: the first warms the averages up; count the last 8.
	for sec := range 10 {
		for i := range 10000 {
			route := "/frequent"
			switch {
			case i%100 == 0:
				route = "/rare"
			case i%10 == 0:
				route = "/medium"
			}
			d := decide(e, now.Add(time.Duration(sec)*time.Second+time.Duration(i)*50*time.Microsecond),
				span{service: "checkout", attrs: map[string]string{"http.route": route}})
			k, _ := Keep(randomID(r), 1, d.Probability)
			if sec >= 2 {
				seen[route]++
				all++
				if k {
					kept[route]++
					keptAll++
				}
			}
		}
	}
	share := func(route string) float64 { return float64(kept[route]) / float64(seen[route]) }
	if !(share("/rare") > share("/medium") && share("/medium") > share("/frequent")) {
		t.Errorf("kept shares rare %.3f, medium %.3f, frequent %.3f: want rare > medium > frequent",
			share("/rare"), share("/medium"), share("/frequent"))
	}
	// On average one in goal_rate.
	if got := float64(all) / float64(keptAll); got < 20*0.85 || got > 20*1.15 {
		t.Errorf("average rate one in %.1f, want about 20 (kept %d of %d)", got, keptAll, all)
	}
	rates := e.DynamicRates(0)
	if len(rates) != 3 || rates["/frequent"] <= rates["/rare"] {
		t.Errorf("rates %v", rates)
	}
}

func TestDynamicKeysAreBounded(t *testing.T) {
	e := New(fleetconfig.TailSampling{DecisionWait: fleetconfig.Duration(time.Second), MaxTraceSpans: 10,
		Policies: []fleetconfig.TailPolicy{{Name: "dyn", Dynamic: &fleetconfig.DynamicSampling{
			Key: []string{"id"}, GoalRate: 5, MaxKeys: 100, AdjustmentInterval: fleetconfig.Duration(time.Second)}}}})
	now := time.Unix(1000, 0)
	for sec := range 5 {
		for i := range 5000 {
			decide(e, now.Add(time.Duration(sec)*time.Second+time.Duration(i)*100*time.Microsecond),
				span{attrs: map[string]string{"id": string(rune('a'+i%26)) + string(rune(i))}})
		}
	}
	d := e.policies[0].dyn
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.counts) > 101 || len(d.ema) > 101 || len(d.rates) > 101 {
		t.Fatalf("tables grew past MaxKeys+1: counts %d, ema %d, rates %d", len(d.counts), len(d.ema), len(d.rates))
	}
}

func TestThroughputCapScalesKeeps(t *testing.T) {
	one := 1.0
	e := New(fleetconfig.TailSampling{DecisionWait: fleetconfig.Duration(time.Second), MaxTraceSpans: 10,
		Policies: []fleetconfig.TailPolicy{{Name: "all", Keep: &one}}})
	e.SetCap(100)
	r := rand.New(rand.NewPCG(7, 8))
	now := time.Unix(1000, 0)
	var kept, n int
	for sec := range 20 {
		for i := range 1000 { // 1,000 traces/s asked for, 100/s allowed
			d := decide(e, now.Add(time.Duration(sec)*time.Second+time.Duration(i)*time.Millisecond), span{})
			if sec >= 5 {
				n++
				if k, _ := Keep(randomID(r), 1, d.Probability); k {
					kept++
				}
			}
		}
	}
	if perSec := float64(kept) / 15; perSec < 85 || perSec > 115 {
		t.Errorf("kept %.0f traces/s under a cap of 100", perSec)
	}
	if d := e.Demand(); d < 900 || d > 1100 {
		t.Errorf("demand %.0f, want about 1000", d)
	}
	e.SetCap(0)
	if s := e.Scale(); s != 1 {
		t.Errorf("scale %v after removing the cap, want 1", s)
	}
}

func TestSummaryValuesAreBounded(t *testing.T) {
	e := New(fleetconfig.TailSampling{DecisionWait: fleetconfig.Duration(time.Second), MaxTraceSpans: 10,
		Policies: []fleetconfig.TailPolicy{{Name: "dyn", Dynamic: &fleetconfig.DynamicSampling{Key: []string{"k"}, GoalRate: 5}}}})
	var s Summary
	long := string(make([]byte, 10000))
	for i := range 100 {
		e.Observe(&s, span{attrs: map[string]string{"k": string(rune('a'+i%26)) + string(rune('A'+i/26)) + long}})
	}
	if len(s.vals[0]) != maxKeyValues {
		t.Fatalf("%d values kept, want %d", len(s.vals[0]), maxKeyValues)
	}
	for _, v := range s.vals[0] {
		if len(v) > maxKeyValueLen {
			t.Fatalf("value of %d bytes kept", len(v))
		}
	}
}

func TestCacheRemembersAtLeastSize(t *testing.T) {
	c := NewCache(1000)
	ids := make([][16]byte, 5000)
	for i := range ids {
		ids[i][0], ids[i][1] = byte(i), byte(i>>8)
		c.Put(ids[i], Verdict{Keep: i%2 == 0, Policy: int16(i % 3)})
		if c.Len() > 2000 {
			t.Fatalf("cache holds %d > 2 × size", c.Len())
		}
	}
	for i := 4000; i < 5000; i++ {
		v, ok := c.Get(ids[i])
		if !ok || v.Keep != (i%2 == 0) || v.Policy != int16(i%3) {
			t.Fatalf("trace %d: %+v, %v", i, v, ok)
		}
	}
	if _, ok := c.Get(ids[0]); ok {
		t.Error("the oldest trace is still remembered past 2 × size")
	}
}

func BenchmarkObserveDecide(b *testing.B) {
	cfg := issueConfig(&testing.T{})
	e := New(cfg)
	sp := span{service: "checkout-api", status: fleetconfig.StatusOK, duration: time.Millisecond,
		attrs: map[string]string{"http.route": "/pay", "tenant": "regular"}}
	now := time.Unix(1000, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var s Summary
		for range 10 {
			e.Observe(&s, sp)
		}
		e.Decide(&s, now.Add(time.Duration(i)*time.Microsecond))
	}
}
