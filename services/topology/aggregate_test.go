package topologysvc

import (
	"math"
	"testing"

	"github.com/otelfleet/otelfleet/pkg/events"
)

func TestUtilization(t *testing.T) {
	tests := []struct {
		name          string
		qps, capacity float64
		want          float64
	}{
		{"half", 50, 100, 0.5},
		{"idle", 0, 100, 0},
		{"overloaded is not clamped", 150, 100, 1.5},
		{"unknown capacity", 50, 0, 0},
		{"negative capacity", 50, -1, 0},
		{"NaN qps", math.NaN(), 100, 0},
		{"infinite capacity", 10, math.Inf(1), 0},
		{"negative qps", -5, 100, 0},
		{"subnormal capacity overflows to the largest float, not +Inf", 1e9, 5e-324, math.MaxFloat64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Utilization(tt.qps, tt.capacity); !near(got, tt.want) {
				t.Fatalf("Utilization(%v, %v) = %v, want %v", tt.qps, tt.capacity, got, tt.want)
			}
		})
	}
}

func TestWeightedMean(t *testing.T) {
	tests := []struct {
		name            string
		values, weights []float64
		want            float64
	}{
		{"empty", nil, nil, 0},
		{"one", []float64{7}, []float64{3}, 7},
		{"weighted", []float64{10, 20}, []float64{3, 1}, 12.5},
		{"zero weight values ignored when others weigh", []float64{10, 1000}, []float64{1, 0}, 10},
		{"all zero weights fall back to the plain mean", []float64{10, 20}, []float64{0, 0}, 15},
		{"negative weight counts as zero", []float64{10, 20}, []float64{1, -5}, 10},
		{"NaN value skipped", []float64{math.NaN(), 4}, []float64{1, 1}, 4},
		{"infinite weight counts as zero", []float64{10, 20}, []float64{math.Inf(1), 1}, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WeightedMean(tt.values, tt.weights); !near(got, tt.want) {
				t.Fatalf("WeightedMean = %v, want %v", got, tt.want)
			}
		})
	}
}

// col builds a fresh collector for tables.
func col(id string, health events.HealthStatus, qps, capacity, latency, errRate float64) Collector {
	c := Collector{ID: id, Region: "r", Health: health, Status: Status(health), QPS: qps, CapacityQPS: capacity,
		AvgLatencyMS: latency, ErrorRate: errRate, Utilization: Utilization(qps, capacity), BytesPerSec: qps * 100, QueueDepth: int64(qps / 10)}
	return c
}

func stale(c Collector) Collector {
	c.Stale, c.Status = true, StatusStale
	return c
}

func TestAggregate(t *testing.T) {
	h, d, u := events.HealthHealthy, events.HealthDegraded, events.HealthUnhealthy
	tests := []struct {
		name       string
		collectors []Collector
		want       events.RegionStats
	}{
		{
			name: "empty region",
			want: events.RegionStats{Region: "r"},
		},
		{
			name:       "sums and traffic-weighted averages",
			collectors: []Collector{col("a", h, 100, 1000, 10, 0.01), col("b", h, 300, 1000, 30, 0.03)},
			want: events.RegionStats{Region: "r", Collectors: 2, Healthy: 2, QPS: 400, BytesPerSec: 40000, QueueDepth: 40,
				CapacityQPS: 2000, SpareQPS: 1600, Utilization: 0.2, AvgLatencyMS: 25, ErrorRate: 0.025},
		},
		{
			name:       "idle fleet: latency is the plain mean",
			collectors: []Collector{col("a", h, 0, 100, 10, 0), col("b", h, 0, 100, 30, 0)},
			want: events.RegionStats{Region: "r", Collectors: 2, Healthy: 2, CapacityQPS: 200, SpareQPS: 200,
				AvgLatencyMS: 20},
		},
		{
			name: "stale collectors are counted but carry no traffic",
			collectors: []Collector{col("a", h, 100, 1000, 10, 0),
				stale(col("b", h, 900, 1000, 500, 0.5))},
			want: events.RegionStats{Region: "r", Collectors: 2, Healthy: 1, Stale: 1, QPS: 100, BytesPerSec: 10000, QueueDepth: 10,
				CapacityQPS: 1000, SpareQPS: 900, Utilization: 0.1, AvgLatencyMS: 10},
		},
		{
			name: "unknown capacity: traffic counted, utilisation covers known capacity only",
			collectors: []Collector{col("a", h, 100, 0, 10, 0),
				col("b", h, 50, 100, 10, 0)},
			want: events.RegionStats{Region: "r", Collectors: 2, Healthy: 2, QPS: 150, BytesPerSec: 15000, QueueDepth: 15,
				CapacityQPS: 100, SpareQPS: 50, Utilization: 0.5, AvgLatencyMS: 10},
		},
		{
			name: "spare capacity only on healthy collectors, never negative",
			collectors: []Collector{col("a", h, 150, 100, 1, 0), col("b", d, 10, 100, 1, 0),
				col("c", u, 10, 100, 1, 0), col("d", h, 20, 100, 1, 0)},
			want: events.RegionStats{Region: "r", Collectors: 4, Healthy: 2, Degraded: 1, Unhealthy: 1, QPS: 190, BytesPerSec: 19000, QueueDepth: 19,
				CapacityQPS: 400, SpareQPS: 80, Utilization: 0.475, AvgLatencyMS: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Aggregate("r", tt.collectors)
			if !sameStats(got, tt.want) {
				t.Fatalf("Aggregate =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestAggregateGlobalMergesRegions(t *testing.T) {
	h := events.HealthHealthy
	regions := map[string][]Collector{
		"a": {col("a1", h, 100, 1000, 10, 0.1)},
		"b": {col("b1", h, 300, 1000, 30, 0), stale(col("b2", h, 1, 1, 1, 1))},
	}
	rate := 0.25
	g := AggregateGlobal(regions, &rate)
	want := events.GlobalStats{Regions: 2, Collectors: 3, Healthy: 2, Stale: 1, SpansPerSec: 400, BytesPerSec: 40000, QueueDepth: 40,
		CapacityQPS: 2000, SpareQPS: 1600, Utilization: 0.2, AvgLatencyMS: 25, ErrorRate: 0.025, EffectiveSamplingRate: &rate}
	if g.Regions != want.Regions || g.Collectors != want.Collectors || g.Healthy != want.Healthy || g.Stale != want.Stale ||
		!near(g.SpansPerSec, want.SpansPerSec) || !near(g.CapacityQPS, want.CapacityQPS) || !near(g.Utilization, want.Utilization) ||
		!near(g.AvgLatencyMS, want.AvgLatencyMS) || !near(g.ErrorRate, want.ErrorRate) || !near(g.SpareQPS, want.SpareQPS) ||
		g.EffectiveSamplingRate == nil || *g.EffectiveSamplingRate != rate {
		t.Fatalf("AggregateGlobal =\n%+v\nwant\n%+v", g, want)
	}
	if g := AggregateGlobal(nil, nil); g.EffectiveSamplingRate != nil || g.Collectors != 0 {
		t.Fatalf("empty AggregateGlobal = %+v", g)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func sameStats(a, b events.RegionStats) bool {
	return a.Region == b.Region && a.Collectors == b.Collectors && a.Healthy == b.Healthy && a.Degraded == b.Degraded &&
		a.Unhealthy == b.Unhealthy && a.Stale == b.Stale && near(a.QPS, b.QPS) && near(a.BytesPerSec, b.BytesPerSec) &&
		a.QueueDepth == b.QueueDepth && near(a.CapacityQPS, b.CapacityQPS) && near(a.SpareQPS, b.SpareQPS) &&
		near(a.Utilization, b.Utilization) && near(a.AvgLatencyMS, b.AvgLatencyMS) && near(a.ErrorRate, b.ErrorRate)
}
