package fleetconfig

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// validFile is Defaults with one valid region, "eu-west".
func validFile() File {
	f := Defaults()
	f.Regions = map[string]Region{"eu-west": DefaultRegion()}
	return f
}

// problems returns err's problems as "path: message" lines; it fails the test
// when err is neither nil nor a *ValidationError matching ErrInvalid.
func problems(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	ve, ok := errors.AsType[*ValidationError](err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("errors.Is(%v, ErrInvalid) = false", err)
	}
	lines := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		lines[i] = p.String()
	}
	return lines
}

func TestValidateAcceptsGoodConfigs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*File)
	}{
		{"defaults with a region", func(*File) {}},
		{"defaults without regions", func(f *File) { f.Regions = nil }},
		{"no strategies", func(f *File) { f.Global.SamplingStrategies = nil }},
		{"fixed strategy", func(f *File) {
			f.Global.SamplingStrategies = []Strategy{{Type: StrategyFixed, Rate: new(0.0)}}
		}},
		{"cost_based strategy", func(f *File) {
			f.Global.SamplingStrategies[0] = Strategy{Type: StrategyCostBased, BudgetPerHour: new(10.0), CostPerSpan: new(1e-6)}
		}},
		{"all four strategy types", func(f *File) {
			f.Global.SamplingStrategies = append(f.Global.SamplingStrategies,
				Strategy{Type: StrategyFixed, Rate: new(1.0)},
				Strategy{Type: StrategyCostBased, BudgetPerHour: new(10.0), CostPerSpan: new(0.5)})
		}},
		{"min_rate equals max_rate", func(f *File) { f.Global.SamplingStrategies[0].MinRate = new(0.5) }},
		{"priority rules without catch-all", func(f *File) {
			f.Global.SamplingStrategies[1].Rules = f.Global.SamplingStrategies[1].Rules[:1]
		}},
		{"glob classes", func(f *File) {
			f.Global.SamplingStrategies[1].Rules[0].Services = []string{"pay[a-z]*", "check?ut", `\*literal`}
		}},
		{"degradation block absent", func(f *File) { f.Global.Degradation = Degradation{} }},
		{"degradation disabled with valid values", func(f *File) { f.Global.Degradation.Enabled = false }},
		{"per_service_limit zero", func(f *File) { f.Global.RateLimiting.PerServiceLimit = 0 }},
		{"rate_limiting absent", func(f *File) { f.Global.RateLimiting = RateLimiting{} }},
		{"routing rule without priority", func(f *File) { f.Global.RoutingRules[0].Priority = "" }},
		{"metadata", func(f *File) { f.Global.Metadata = map[string]string{"owner": "sre", "ticket": ""} }},
		{"stored-only fields", func(f *File) {
			f.Global.Version, f.Global.UpdatedAt, f.Global.UpdatedBy = 7, time.Now(), "alice"
		}},
		{"region max_retries zero and local preference", func(f *File) {
			r := f.Regions["eu-west"]
			r.Retry.MaxRetries = 0
			r.LocalRoutingPreference = []string{"eu-west", "eu_central-2"}
			r.RegionalSamplingRate = 0
			f.Regions["eu-west"] = r
		}},
		{"initial_backoff equals max_backoff", func(f *File) {
			r := f.Regions["eu-west"]
			r.Retry.InitialBackoff = r.Retry.MaxBackoff
			f.Regions["eu-west"] = r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := validFile()
			tt.mutate(&f)
			if err := f.Validate(); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
		})
	}
}

// TestValidateRules has one case per rule. Each breaks one rule in an
// otherwise valid file and expects exactly one problem, so it also shows that
// the good fields around it produce none.
func TestValidateRules(t *testing.T) {
	const (
		strat   = "global.sampling_strategies"
		rules   = "global.sampling_strategies[1].rules"
		degr    = "global.degradation"
		limits  = "global.rate_limiting"
		routing = "global.routing_rules"
		region  = "regions.eu-west"
		badName = "is not a valid region name: use only ASCII letters, digits, '-' and '_' (it becomes a NATS subject token and KV key)"
	)
	adaptive := func(f *File) *Strategy { return &f.Global.SamplingStrategies[0] }
	priority := func(f *File) *Strategy { return &f.Global.SamplingStrategies[1] }
	inRegion := func(change func(*Region)) func(*File) {
		return func(f *File) {
			r := f.Regions["eu-west"]
			change(&r)
			f.Regions["eu-west"] = r
		}
	}
	tests := []struct {
		name   string
		mutate func(*File)
		want   string
	}{
		// sampling_rate
		{"sampling_rate above 1", func(f *File) { f.Global.SamplingRate = 1.5 },
			"global.sampling_rate: 1.5 is outside [0, 1]"},
		{"sampling_rate negative", func(f *File) { f.Global.SamplingRate = -0.1 },
			"global.sampling_rate: -0.1 is outside [0, 1]"},
		{"sampling_rate NaN", func(f *File) { f.Global.SamplingRate = math.NaN() },
			"global.sampling_rate: NaN is outside [0, 1]"},
		{"sampling_rate infinite", func(f *File) { f.Global.SamplingRate = math.Inf(1) },
			"global.sampling_rate: +Inf is outside [0, 1]"},

		// strategy types and fields
		{"strategy type unknown", func(f *File) { adaptive(f).Type = "random" },
			strat + `[0].type: unknown sampling strategy type "random"; known types: fixed, adaptive, priority_based, cost_based`},
		{"strategy type empty", func(f *File) { adaptive(f).Type = "" },
			strat + "[0].type: must be set to one of: fixed, adaptive, priority_based, cost_based"},
		{"strategy type listed twice", func(f *File) {
			f.Global.SamplingStrategies = append(f.Global.SamplingStrategies, *adaptive(f))
		}, strat + "[2].type: adaptive is already listed at sampling_strategies[0]"},
		{"field of another type", func(f *File) { adaptive(f).Rate = new(0.5) },
			strat + "[0].rate: not allowed for type adaptive (it belongs to fixed)"},
		{"rules on another type", func(f *File) { adaptive(f).Rules = priority(f).Rules },
			strat + "[0].rules: not allowed for type adaptive (it belongs to priority_based)"},

		// fixed
		{"fixed rate out of range", func(f *File) {
			*adaptive(f) = Strategy{Type: StrategyFixed, Rate: new(2.0)}
		}, strat + "[0].rate: 2 is outside [0, 1]"},
		{"fixed rate missing", func(f *File) { *adaptive(f) = Strategy{Type: StrategyFixed} },
			strat + "[0].rate: required for type fixed"},

		// adaptive
		{"min_rate out of range", func(f *File) { adaptive(f).MinRate = new(-0.5) },
			strat + "[0].min_rate: -0.5 is outside [0, 1]"},
		{"max_rate out of range", func(f *File) { adaptive(f).MaxRate = new(1.5) },
			strat + "[0].max_rate: 1.5 is outside [0, 1]"},
		{"min_rate above max_rate", func(f *File) { adaptive(f).MinRate = new(0.6) },
			strat + "[0].min_rate: 0.6 is greater than max_rate 0.5"},
		{"max_rate missing", func(f *File) { adaptive(f).MaxRate = nil },
			strat + "[0].max_rate: required for type adaptive"},
		{"target_qps zero", func(f *File) { adaptive(f).TargetQPS = new(0.0) },
			strat + "[0].target_qps: must be positive"},
		{"target_qps negative", func(f *File) { adaptive(f).TargetQPS = new(-5.0) },
			strat + "[0].target_qps: must be positive and finite, got -5"},
		{"target_qps infinite", func(f *File) { adaptive(f).TargetQPS = new(math.Inf(1)) },
			strat + "[0].target_qps: must be positive and finite, got +Inf"},

		// priority_based
		{"priority_based without rules", func(f *File) { priority(f).Rules = nil },
			strat + "[1].rules: required for type priority_based"},
		{"rule priority empty", func(f *File) { priority(f).Rules[0].Priority = " " },
			rules + "[0].priority: must not be empty"},
		{"rule rate out of range", func(f *File) { priority(f).Rules[0].Rate = 1.1 },
			rules + "[0].rate: 1.1 is outside [0, 1]"},
		{"rule service glob malformed", func(f *File) { priority(f).Rules[0].Services[1] = "[a" },
			rules + `[0].services[1]: "[a" is not a valid glob: syntax error in pattern`},
		{"rule service glob empty", func(f *File) { priority(f).Rules[2].Services[0] = "" },
			rules + "[2].services[0]: must not be empty"},
		{"two catch-all rules", func(f *File) { priority(f).Rules[2].Services = nil },
			rules + "[2].services: only one rule may omit services (the catch-all); rules[1] already does"},

		// cost_based
		{"budget_per_hour zero", func(f *File) {
			*adaptive(f) = Strategy{Type: StrategyCostBased, BudgetPerHour: new(0.0), CostPerSpan: new(0.001)}
		}, strat + "[0].budget_per_hour: must be positive"},
		{"cost_per_span negative", func(f *File) {
			*adaptive(f) = Strategy{Type: StrategyCostBased, BudgetPerHour: new(5.0), CostPerSpan: new(-1.0)}
		}, strat + "[0].cost_per_span: must be positive and finite, got -1"},
		{"cost_per_span missing", func(f *File) {
			*adaptive(f) = Strategy{Type: StrategyCostBased, BudgetPerHour: new(5.0)}
		}, strat + "[0].cost_per_span: required for type cost_based"},

		// degradation
		{"threshold zero", func(f *File) { f.Global.Degradation.Threshold = 0 },
			degr + ".threshold: 0 is outside (0, 1]"},
		{"threshold above 1", func(f *File) { f.Global.Degradation.Threshold = 1.5 },
			degr + ".threshold: 1.5 is outside (0, 1]"},
		{"recovery_threshold zero", func(f *File) { f.Global.Degradation.RecoveryThreshold = 0 },
			degr + ".recovery_threshold: 0 is outside (0, 1]"},
		{"recovery_threshold not below threshold", func(f *File) { f.Global.Degradation.RecoveryThreshold = 0.8 },
			degr + ".recovery_threshold: 0.8 must be less than threshold 0.8"},
		{"target_rate out of range", func(f *File) { f.Global.Degradation.TargetRate = 2 },
			degr + ".target_rate: 2 is outside [0, 1]"},
		{"disabled block still checked when set", func(f *File) {
			f.Global.Degradation.Enabled = false
			f.Global.Degradation.Threshold = 3
		}, degr + ".threshold: 3 is outside (0, 1]"},

		// rate_limiting
		{"max_qps zero", func(f *File) { f.Global.RateLimiting.MaxQPS = 0 },
			limits + ".max_qps: must be positive"},
		{"burst_size zero", func(f *File) { f.Global.RateLimiting.BurstSize = 0 },
			limits + ".burst_size: must be at least 1, got 0"},
		{"per_service_limit negative", func(f *File) { f.Global.RateLimiting.PerServiceLimit = -1 },
			limits + ".per_service_limit: must be zero or positive and finite, got -1"},

		// routing_rules
		{"routing service empty", func(f *File) { f.Global.RoutingRules[0].Service = "" },
			routing + "[0].service: must not be empty"},
		{"routing service glob malformed", func(f *File) { f.Global.RoutingRules[0].Service = `critical-\` },
			routing + `[0].service: "critical-\\" is not a valid glob: syntax error in pattern`},
		{"target_region empty", func(f *File) { f.Global.RoutingRules[1].TargetRegion = "" },
			routing + "[1].target_region: region name must not be empty"},
		{"target_region with dot", func(f *File) { f.Global.RoutingRules[1].TargetRegion = "us.west" },
			routing + `[1].target_region: "us.west" ` + badName},
		{"target_region with star", func(f *File) { f.Global.RoutingRules[1].TargetRegion = "us-*" },
			routing + `[1].target_region: "us-*" ` + badName},
		{"target_region with gt", func(f *File) { f.Global.RoutingRules[1].TargetRegion = ">" },
			routing + `[1].target_region: ">" ` + badName},
		{"target_region with space", func(f *File) { f.Global.RoutingRules[1].TargetRegion = "us west" },
			routing + `[1].target_region: "us west" ` + badName},

		// metadata
		{"metadata empty key", func(f *File) { f.Global.Metadata = map[string]string{"": "x", "ok": "y"} },
			"global.metadata: keys must not be empty"},

		// regions
		{"region name invalid", func(f *File) { f.Regions["eu.west"] = DefaultRegion() },
			`regions["eu.west"]: "eu.west" ` + badName},
		{"region name empty", func(f *File) { f.Regions[""] = DefaultRegion() },
			`regions[""]: region name must not be empty`},
		{"regional_sampling_rate out of range", inRegion(func(r *Region) { r.RegionalSamplingRate = 1.5 }),
			region + ".regional_sampling_rate: 1.5 is outside [0, 1]"},
		{"local_routing_preference invalid", inRegion(func(r *Region) { r.LocalRoutingPreference = []string{"eu-west", "a b"} }),
			region + `.local_routing_preference[1]: "a b" ` + badName},
		{"buffer_size zero", inRegion(func(r *Region) { r.BufferSize = 0 }),
			region + ".buffer_size: must be at least 1, got 0"},
		{"max_batch_size zero", inRegion(func(r *Region) { r.Batch.MaxBatchSize = 0 }),
			region + ".batch.max_batch_size: must be at least 1, got 0"},
		{"max_wait_time zero", inRegion(func(r *Region) { r.Batch.MaxWaitTime = 0 }),
			"regions.eu-west.batch.max_wait_time: must be positive"},
		{"max_retries negative", inRegion(func(r *Region) { r.Retry.MaxRetries = -1 }),
			region + ".retry.max_retries: must be at least 0, got -1"},
		{"initial_backoff negative", inRegion(func(r *Region) { r.Retry.InitialBackoff = Duration(-time.Second) }),
			region + ".retry.initial_backoff: must be positive, got -1s"},
		{"max_backoff zero", inRegion(func(r *Region) { r.Retry.MaxBackoff = 0 }),
			region + ".retry.max_backoff: must be positive"},
		{"initial_backoff above max_backoff", inRegion(func(r *Region) { r.Retry.InitialBackoff = Duration(10 * time.Second) }),
			region + ".retry.initial_backoff: 10s is greater than max_backoff 5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := validFile()
			tt.mutate(&f)
			got := problems(t, f.Validate())
			if len(got) != 1 || got[0] != tt.want {
				t.Fatalf("problems:\n  %s\nwant exactly:\n  %s", strings.Join(got, "\n  "), tt.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	f := validFile()
	f.Global.SamplingRate = 1.5
	f.Global.SamplingStrategies[0].MinRate = new(0.6)
	f.Global.RateLimiting.BurstSize = 0
	f.Global.RoutingRules[0].TargetRegion = "us.east"
	f.Global.Metadata = map[string]string{"": "x"}
	bad := DefaultRegion()
	bad.Batch.MaxWaitTime = 0
	bad.BufferSize = -1
	f.Regions["ap-south"] = bad // sorted before eu-west
	f.Regions["zz"] = Region{RegionalSamplingRate: math.NaN(), BufferSize: 1,
		Batch: BatchConfig{MaxBatchSize: 1, MaxWaitTime: 1}, Retry: RetryPolicy{InitialBackoff: 1, MaxBackoff: 1}}

	err := f.Validate()
	want := []string{
		"global.sampling_rate: 1.5 is outside [0, 1]",
		"global.sampling_strategies[0].min_rate: 0.6 is greater than max_rate 0.5",
		"global.rate_limiting.burst_size: must be at least 1, got 0",
		`global.routing_rules[0].target_region: "us.east" is not a valid region name: use only ASCII letters, digits, '-' and '_' (it becomes a NATS subject token and KV key)`,
		"global.metadata: keys must not be empty",
		"regions.ap-south.buffer_size: must be at least 1, got -1",
		"regions.ap-south.batch.max_wait_time: must be positive",
		"regions.zz.regional_sampling_rate: NaN is outside [0, 1]",
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Fatalf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if got := err.Error(); got != strings.Join(want, "; ") {
		t.Errorf("Error() = %q", got)
	}
	if got := err.(*ValidationError).Multiline(); got != strings.Join(want, "\n") {
		t.Errorf("Multiline() = %q", got)
	}
}

func TestValidatePerPart(t *testing.T) {
	g := Defaults().Global
	g.SamplingRate = 2
	if got := problems(t, g.Validate()); !slices.Equal(got, []string{"global.sampling_rate: 2 is outside [0, 1]"}) {
		t.Errorf("Global.Validate problems = %q", got)
	}
	r := DefaultRegion()
	if err := r.Validate("us-east-1"); err != nil {
		t.Errorf("DefaultRegion().Validate = %v", err)
	}
	r.BufferSize = 0
	if got := problems(t, r.Validate("us-east-1")); !slices.Equal(got, []string{"regions.us-east-1.buffer_size: must be at least 1, got 0"}) {
		t.Errorf("Region.Validate problems = %q", got)
	}
	if got := problems(t, DefaultRegion().Validate("a>b")); len(got) != 1 || !strings.HasPrefix(got[0], `regions["a>b"]: "a>b" is not a valid region name`) {
		t.Errorf("Region.Validate(bad name) problems = %q", got)
	}
}

func TestPathMatchDetectsBadPatterns(t *testing.T) {
	// The glob rule relies on path.Match(pattern, "") checking the whole
	// pattern even though "" matches nothing.
	for _, p := range []string{"[", "a[", "[a-", `x\`, "ab[^]", "**[z"} {
		var c checker
		c.glob("p", p)
		if len(c.problems) != 1 {
			t.Errorf("glob %q: problems %v, want one", p, c.problems)
		}
	}
}
