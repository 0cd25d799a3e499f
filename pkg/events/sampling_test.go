package events_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/tracesample"
)

func sampleDecision() events.Decision {
	return events.Decision{
		V: events.DecisionVersion, Version: 7, Leader: "sampler-a", Token: 42,
		At: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), IntervalMS: 10000, ConfigVersion: 3,
		Strategy: "priority_based+adaptive", GlobalRate: 0.2, DefaultRate: 0.1,
		Services: map[string]events.ServiceDecision{
			"checkout": {Rate: 1, QPS: 120, Priority: "high"},
			"search":   {Rate: 0.05, QPS: 8000, Priority: "normal"},
		},
		Rules: []events.RuleDecision{
			{Priority: "high", Services: []string{"payment", "checkout"}, Rate: 1},
			{Priority: "normal", Rate: 0.1},
			{Priority: "low", Services: []string{"debug*"}, Rate: 0.01},
		},
		Regions: map[string]float64{"eu-west-1": 0.5},
		Inputs:  events.DecisionInputs{Collectors: 2, FleetQPS: 8120, KeptQPS: 520, AdaptiveScale: 0.5},
		Params: events.SamplingParams{SamplingRate: 0.1, Strategies: []fleetconfig.Strategy{
			{Type: fleetconfig.StrategyFixed, Rate: new(0.1)},
		}},
	}
}

func TestDecisionRoundTrip(t *testing.T) {
	d := sampleDecision()
	data, err := events.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.DecodeDecision(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip changed the decision:\n got %+v\nwant %+v", got, d)
	}
}

func TestDecisionRateFor(t *testing.T) {
	d := sampleDecision()
	tests := []struct {
		name, service string
		want          float64
	}{
		{name: "seen service", service: "search", want: 0.05},
		{name: "seen high", service: "checkout", want: 1},
		{name: "unseen matching a rule", service: "payment", want: 1},
		{name: "unseen matching a glob", service: "debug-ui", want: 0.01},
		{name: "unseen falls to the catch-all", service: "cart", want: 0.1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := d.RateFor(tt.service); got != tt.want {
				t.Fatalf("RateFor(%q) = %v, want %v", tt.service, got, tt.want)
			}
		})
	}
	t.Run("no rules: default", func(t *testing.T) {
		d := sampleDecision()
		d.Rules = nil
		if got := d.RateFor("cart"); got != d.DefaultRate {
			t.Fatalf("RateFor = %v, want the default %v", got, d.DefaultRate)
		}
	})
	t.Run("regions", func(t *testing.T) {
		if got := d.RegionRate("eu-west-1"); got != 0.5 {
			t.Fatalf("RegionRate(eu-west-1) = %v", got)
		}
		if got := d.RegionRate("elsewhere"); got != 1 {
			t.Fatalf("RegionRate(elsewhere) = %v, want 1", got)
		}
	})
}

func TestDecisionValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(d *events.Decision)
	}{
		{name: "zero version", mutate: func(d *events.Decision) { d.Version = 0 }},
		{name: "zero token", mutate: func(d *events.Decision) { d.Token = 0 }},
		{name: "no leader", mutate: func(d *events.Decision) { d.Leader = "" }},
		{name: "no time", mutate: func(d *events.Decision) { d.At = time.Time{} }},
		{name: "rate above 1", mutate: func(d *events.Decision) { d.Services["x"] = events.ServiceDecision{Rate: 1.5} }},
		{name: "NaN default", mutate: func(d *events.Decision) { d.DefaultRate = math.NaN() }},
		{name: "negative qps", mutate: func(d *events.Decision) { d.Services["x"] = events.ServiceDecision{Rate: 0.1, QPS: -1} }},
		{name: "bad region", mutate: func(d *events.Decision) { d.Regions["a.b"] = 0.5 }},
		{name: "rule rate", mutate: func(d *events.Decision) { d.Rules[0].Rate = -0.1 }},
		{name: "infinite input", mutate: func(d *events.Decision) { d.Inputs.FleetQPS = math.Inf(1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := sampleDecision()
			tt.mutate(&d)
			if err := d.Validate(); err == nil {
				t.Fatal("Validate accepted an invalid decision")
			}
		})
	}
	if err := sampleDecision().Validate(); err != nil {
		t.Fatalf("Validate refused a valid decision: %v", err)
	}
}

func TestSamplingEvent(t *testing.T) {
	e := events.SamplingEvent{V: 1, Event: events.EventSamplingDegraded, Version: 3, Token: 9, Leader: "a"}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if e.Kind() != "sampling.degraded" || e.EventID() != "sampling.degraded/9/3" {
		t.Fatalf("Kind %q, EventID %q", e.Kind(), e.EventID())
	}
	e.Event = events.EventConfigChanged
	if e.Validate() == nil {
		t.Fatal("a config event accepted as a sampling event")
	}
}

// FuzzDecodeDecision checks that DecodeDecision never panics, that every error wraps
// ErrMalformed, and that whatever it accepts is valid and survives a round trip.
func FuzzDecodeDecision(f *testing.F) {
	good, _ := events.Encode(sampleDecision())
	f.Add(good)
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":2,"version":1}`))
	f.Add([]byte(`{"v":1,"version":1,"token":1,"leader":"x","at":"2025-01-01T00:00:00Z","services":{"a":{"rate":2}}}`))
	f.Add([]byte(`{"v":1,"version":1,"token":1,"leader":"x","at":"2025-01-01T00:00:00Z","regions":{"":1}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := events.DecodeDecision(data)
		if err != nil {
			if !errors.Is(err, events.ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("decoded an invalid decision: %v", err)
		}
		again, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := events.DecodeDecision(again); err != nil {
			t.Fatalf("re-decode of an accepted decision failed: %v\n%s", err, again)
		}
		for name := range d.Services {
			_ = d.RateFor(name)
		}
		_ = d.RateFor("some-service")
	})
}

// ExampleDecision_RateFor applies a sampling decision to one span the way a router
// does: the service's rate times its region's multiplier, decided consistently on the
// trace id with pkg/tracesample, so every router reaches the same verdict.
func ExampleDecision_RateFor() {
	d := sampleDecision()
	traceID := [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	for _, c := range []struct{ service, region string }{
		{"checkout", "us-east-1"}, {"search", "eu-west-1"}, {"cart", "eu-west-1"},
	} {
		rate := d.RateFor(c.service) * d.RegionRate(c.region)
		s := tracesample.NewSampler(rate)
		fmt.Printf("%s in %s: rate %g, kept %v, tracestate ot=th:%s\n", c.service, c.region, rate, s.Keep(traceID), s.TValue())
	}
	// Output:
	// checkout in us-east-1: rate 1, kept true, tracestate ot=th:0
	// search in eu-west-1: rate 0.025, kept false, tracestate ot=th:f9999999999999
	// cart in eu-west-1: rate 0.05, kept false, tracestate ot=th:f3333333333333
}
