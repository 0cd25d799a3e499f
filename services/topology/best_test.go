package topologysvc

import (
	"errors"
	"strings"
	"testing"

	"github.com/otelfleet/otelfleet/pkg/events"
)

func TestScore(t *testing.T) {
	c := col("a", events.HealthHealthy, 25, 100, 4, 0) // utilisation 0.25, spare 75
	tests := []struct {
		name     string
		w        Weights
		maxSpare float64
		want     float64
	}{
		{"load only", Weights{Load: 1}, 75, 0.75},
		{"latency only", Weights{Latency: 1}, 75, 1.0 / 5},
		{"capacity only, biggest spare", Weights{Capacity: 1}, 75, 1},
		{"capacity only, half the biggest spare", Weights{Capacity: 1}, 150, 0.5},
		{"capacity term is 0 without spare anywhere", Weights{Capacity: 1}, 0, 0},
		{"weights are normalised", Weights{Load: 2, Latency: 2}, 75, (0.75 + 0.2) / 2},
		{"defaults", DefaultWeights(), 150, 0.5*0.75 + 0.3*0.2 + 0.2*0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Score(tt.w, &c, tt.maxSpare); !near(got, tt.want) {
				t.Fatalf("Score = %v, want %v", got, tt.want)
			}
		})
	}
}

// regions groups collectors (whose Region is set) into sorted regions.
func regions(cs ...Collector) []Region {
	var out []Region
	for _, c := range cs {
		if len(out) == 0 || out[len(out)-1].Region != c.Region {
			out = append(out, Region{Region: c.Region})
		}
		r := &out[len(out)-1]
		r.Collectors = append(r.Collectors, c)
	}
	return out
}

func in(region string, c Collector) Collector {
	c.Region = region
	return c
}

func TestBest(t *testing.T) {
	h, d, u := events.HealthHealthy, events.HealthDegraded, events.HealthUnhealthy
	loadOnly := Weights{Load: 1}
	tests := []struct {
		name         string
		regions      []Region
		region       string
		w            Weights
		wantID       string
		wantRegion   string
		wantFallback bool
		wantReason   string // substring
		wantErr      string // substring; errors wrap ErrNoCollector
	}{
		{
			name:    "lowest utilisation wins",
			regions: regions(in("r", col("a", h, 80, 100, 1, 0)), in("r", col("b", h, 20, 100, 1, 0)), in("r", col("c", h, 50, 100, 1, 0))),
			region:  "r", w: loadOnly, wantID: "b", wantRegion: "r",
		},
		{
			name:    "tie broken by id",
			regions: regions(in("r", col("c", h, 10, 100, 1, 0)), in("r", col("a", h, 10, 100, 1, 0)), in("r", col("b", h, 10, 100, 1, 0))),
			region:  "r", w: DefaultWeights(), wantID: "a", wantRegion: "r",
		},
		{
			name:    "tie across regions broken by id, then region",
			regions: regions(in("x", col("same", h, 10, 100, 1, 0)), in("y", col("same", h, 10, 100, 1, 0)), in("z", col("zz", h, 10, 100, 1, 0))),
			w:       DefaultWeights(), wantID: "same", wantRegion: "x",
		},
		{
			name:    "unhealthy and degraded are never chosen",
			regions: regions(in("r", col("a", u, 0, 100, 0, 0)), in("r", col("b", d, 0, 100, 0, 0)), in("r", col("c", h, 90, 100, 50, 0))),
			region:  "r", w: loadOnly, wantID: "c", wantRegion: "r",
		},
		{
			name:    "full collectors are never chosen",
			regions: regions(in("r", col("a", h, 100, 100, 0, 0)), in("r", col("b", h, 150, 100, 0, 0)), in("r", col("c", h, 99, 100, 0, 0))),
			region:  "r", w: loadOnly, wantID: "c", wantRegion: "r",
		},
		{
			name:    "stale collectors are never chosen",
			regions: regions(in("r", stale(col("a", h, 0, 100, 0, 0))), in("r", col("b", h, 60, 100, 0, 0))),
			region:  "r", w: loadOnly, wantID: "b", wantRegion: "r",
		},
		{
			name:    "unknown capacity is never chosen",
			regions: regions(in("r", col("a", h, 0, 0, 0, 0)), in("r", col("b", h, 60, 100, 0, 0))),
			region:  "r", w: loadOnly, wantID: "b", wantRegion: "r",
		},
		{
			name:    "latency weight prefers the fast collector",
			regions: regions(in("r", col("a", h, 10, 100, 80, 0)), in("r", col("b", h, 50, 100, 2, 0))),
			region:  "r", w: Weights{Load: 0.2, Latency: 0.8}, wantID: "b", wantRegion: "r",
		},
		{
			name:    "capacity weight prefers the most absolute headroom",
			regions: regions(in("r", col("small", h, 1, 10, 1, 0)), in("r", col("big", h, 5000, 10000, 1, 0))),
			region:  "r", w: Weights{Capacity: 1}, wantID: "big", wantRegion: "r",
		},
		{
			name:    "no region: best of all regions, no fallback",
			regions: regions(in("a", col("a1", h, 50, 100, 1, 0)), in("b", col("b1", h, 10, 100, 1, 0))),
			w:       loadOnly, wantID: "b1", wantRegion: "b",
		},
		{
			name:    "empty region falls back to the others",
			regions: regions(in("a", col("a1", h, 50, 100, 1, 0)), in("b", col("b1", h, 10, 100, 1, 0))),
			region:  "nowhere", w: loadOnly, wantID: "b1", wantRegion: "b", wantFallback: true,
			wantReason: `region "nowhere" has no registered collectors`,
		},
		{
			name: "region with no eligible collector falls back and says why",
			regions: regions(in("a", col("a1", u, 0, 100, 1, 0)), in("a", col("a2", h, 100, 100, 1, 0)), in("a", stale(col("a3", h, 0, 100, 1, 0))),
				in("b", col("b1", h, 90, 100, 1, 0))),
			region: "a", w: loadOnly, wantID: "b1", wantRegion: "b", wantFallback: true,
			wantReason: `region "a" has no eligible collector (3 registered: 1 full, 1 stale, 1 unhealthy)`,
		},
		{
			name:    "nothing eligible anywhere",
			regions: regions(in("a", col("a1", u, 0, 100, 1, 0)), in("b", col("b1", h, 200, 100, 1, 0))),
			region:  "a", w: loadOnly,
			wantErr: `region "a" has no eligible collector (1 registered: 1 unhealthy), nor has any other region (1 registered: 1 full)`,
		},
		{
			name:    "empty topology",
			w:       loadOnly,
			wantErr: "no eligible collector in any region (no registered collectors)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := Best(tt.regions, tt.region, tt.w)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrNoCollector) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Best error = %v, want ErrNoCollector containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Best: %v", err)
			}
			if ch.Collector.ID != tt.wantID || ch.Collector.Region != tt.wantRegion {
				t.Fatalf("Best chose %s/%s (score %v), want %s/%s", ch.Collector.Region, ch.Collector.ID, ch.Score, tt.wantRegion, tt.wantID)
			}
			if ch.Fallback != tt.wantFallback {
				t.Fatalf("Fallback = %v, want %v (reason %q)", ch.Fallback, tt.wantFallback, ch.Reason)
			}
			if !strings.Contains(ch.Reason, tt.wantReason) {
				t.Fatalf("Reason = %q, want it to contain %q", ch.Reason, tt.wantReason)
			}
			if ch.Candidates == 0 || ch.Score < 0 || ch.Score > 1 {
				t.Fatalf("Candidates = %d, Score = %v", ch.Candidates, ch.Score)
			}
		})
	}
}

func TestWeightsValidate(t *testing.T) {
	tests := []struct {
		name string
		w    Weights
		ok   bool
	}{
		{"defaults", DefaultWeights(), true},
		{"one weight", Weights{Latency: 3}, true},
		{"all zero", Weights{}, false},
		{"negative", Weights{Load: -1, Latency: 1}, false},
		{"NaN", Weights{Load: nan()}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateWeights(tt.w)
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrConfigValidation) {
				t.Fatalf("error %v does not wrap ErrConfigValidation", err)
			}
		})
	}
}
