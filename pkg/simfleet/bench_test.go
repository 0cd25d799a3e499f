package simfleet

import (
	"testing"
	"time"
)

// BenchmarkFleetStep measures one round of reports for the default fleet (12
// collectors, 8 services each) and for a large one (1000 collectors).
func BenchmarkFleetStep(b *testing.B) {
	for _, bc := range []struct {
		name                string
		regions, collectors int
	}{{"3x4", 3, 4}, {"10x100", 10, 100}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Regions, cfg.Collectors, cfg.Pattern = bc.regions, bc.collectors, PatternSpike
			f, err := NewFleet(cfg, t0)
			if err != nil {
				b.Fatal(err)
			}
			now := t0
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Second)
				f.Step(now)
			}
		})
	}
}
