package fleetconfig

import "time"

// Defaults returns the configuration of the reference example
// global-config.yaml (examples/global-config.yaml): sampling rate 0.1, an
// adaptive strategy between 0.01 and 0.5 toward 100000 spans/s, priority rules
// (high 1.0 for payment and checkout, normal 0.1 for everything else, low 0.01
// for debug and test), degradation at 80% load down to 0.01 until load falls
// under 60% (high priority kept), rate limits of 1000000 spans/s, bursts of
// 10000 and 10000 spans/s per service, and two routing rules. It has no
// regions. Each call returns a fresh value that the caller may modify.
func Defaults() File {
	return File{Global: Global{
		SamplingRate: 0.1,
		SamplingStrategies: []Strategy{
			{
				Type:      StrategyAdaptive,
				MinRate:   new(0.01),
				MaxRate:   new(0.5),
				TargetQPS: new(100000.0),
			},
			{
				Type: StrategyPriorityBased,
				Rules: []PriorityRule{
					{Priority: PriorityHigh, Rate: 1.0, Services: []string{"payment", "checkout"}},
					{Priority: PriorityNormal, Rate: 0.1},
					{Priority: PriorityLow, Rate: 0.01, Services: []string{"debug", "test"}},
				},
			},
		},
		Degradation: Degradation{
			Enabled:           true,
			Threshold:         0.8,
			TargetRate:        0.01,
			RecoveryThreshold: 0.6,
			KeepHighPriority:  true,
		},
		RateLimiting: RateLimiting{MaxQPS: 1000000, BurstSize: 10000, PerServiceLimit: 10000},
		RoutingRules: []RoutingRule{
			{Service: "critical-*", TargetRegion: "us-east-1", Priority: PriorityHigh},
			{Service: "batch-*", TargetRegion: "us-west-2", Priority: PriorityLow},
		},
	}}
}

// DefaultRegion returns a region configuration that works on a laptop:
// regional sampling rate 1 (no reduction beyond the global decision), a
// 10000-span buffer, batches of up to 512 spans or 200ms, and up to 3 retries
// backing off from 100ms to 5s.
func DefaultRegion() Region {
	return Region{
		RegionalSamplingRate: 1.0,
		BufferSize:           10000,
		Batch:                BatchConfig{MaxBatchSize: 512, MaxWaitTime: Duration(200 * time.Millisecond)},
		Retry: RetryPolicy{
			MaxRetries:     3,
			InitialBackoff: Duration(100 * time.Millisecond),
			MaxBackoff:     Duration(5 * time.Second),
		},
	}
}
