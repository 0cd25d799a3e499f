package fleetconfig

import (
	"slices"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Global)
		want   []string
	}{
		{"identical", func(*Global) {}, nil},
		{"stored-only fields ignored", func(g *Global) {
			g.Version, g.UpdatedAt, g.UpdatedBy = 9, time.Now(), "bob"
		}, nil},
		{"empty metadata equals absent", func(g *Global) { g.Metadata = map[string]string{} }, nil},
		{"empty services equal absent", func(g *Global) { g.SamplingStrategies[1].Rules[1].Services = []string{} }, nil},
		{"sampling_rate", func(g *Global) { g.SamplingRate = 0.2 }, []string{"sampling_rate"}},
		{"strategy value behind a pointer", func(g *Global) { g.SamplingStrategies[0].MaxRate = new(0.6) }, []string{"sampling_strategies"}},
		{"strategy field added", func(g *Global) { g.SamplingStrategies[0].Rate = new(0.5) }, []string{"sampling_strategies"}},
		{"strategy order", func(g *Global) { slices.Reverse(g.SamplingStrategies) }, []string{"sampling_strategies"}},
		{"priority rule services", func(g *Global) { g.SamplingStrategies[1].Rules[0].Services[0] = "pay-*" }, []string{"sampling_strategies"}},
		{"degradation", func(g *Global) { g.Degradation.KeepHighPriority = false }, []string{"degradation"}},
		{"rate_limiting", func(g *Global) { g.RateLimiting.BurstSize++ }, []string{"rate_limiting"}},
		{"routing_rules", func(g *Global) { g.RoutingRules = g.RoutingRules[:1] }, []string{"routing_rules"}},
		{"metadata", func(g *Global) { g.Metadata = map[string]string{"a": "b"} }, []string{"metadata"}},
		{"several, in schema order", func(g *Global) {
			g.Metadata = map[string]string{"a": "b"}
			g.SamplingRate = 0
			g.Degradation.Enabled = false
		}, []string{"sampling_rate", "degradation", "metadata"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, new := Defaults().Global, Defaults().Global
			tt.mutate(&new)
			if got := Diff(old, new); !slices.Equal(got, tt.want) {
				t.Errorf("Diff(old, new) = %q, want %q", got, tt.want)
			}
			if got := Diff(new, old); !slices.Equal(got, tt.want) {
				t.Errorf("Diff(new, old) = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDiffRegion(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Region)
		want   []string
	}{
		{"identical", func(*Region) {}, nil},
		{"stored-only fields ignored", func(r *Region) { r.Version, r.UpdatedBy = 3, "x" }, nil},
		{"empty preference equals absent", func(r *Region) { r.LocalRoutingPreference = []string{} }, nil},
		{"regional_sampling_rate", func(r *Region) { r.RegionalSamplingRate = 0.5 }, []string{"regional_sampling_rate"}},
		{"local_routing_preference", func(r *Region) { r.LocalRoutingPreference = []string{"a"} }, []string{"local_routing_preference"}},
		{"buffer_size", func(r *Region) { r.BufferSize = 1 }, []string{"buffer_size"}},
		{"batch", func(r *Region) { r.Batch.MaxWaitTime = Duration(time.Second) }, []string{"batch"}},
		{"retry", func(r *Region) { r.Retry.MaxRetries = 0 }, []string{"retry"}},
		{"all", func(r *Region) { *r = Region{LocalRoutingPreference: []string{"x"}} },
			[]string{"regional_sampling_rate", "local_routing_preference", "buffer_size", "batch", "retry"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, new := DefaultRegion(), DefaultRegion()
			tt.mutate(&new)
			if got := DiffRegion(old, new); !slices.Equal(got, tt.want) {
				t.Errorf("DiffRegion = %q, want %q", got, tt.want)
			}
		})
	}
}
