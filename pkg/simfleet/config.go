package simfleet

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/knobs"
)

// ErrConfigValidation is wrapped by every error Config.Validate (and so NewFleet and
// New) returns; the message names the offending field.
var ErrConfigValidation = errors.New("simfleet: invalid config")

// Pattern is the shape of the simulated traffic over time.
type Pattern string

// Traffic patterns.
const (
	// PatternSteady is a constant level with a few percent of noise.
	PatternSteady Pattern = "steady"
	// PatternDiurnal is a sinusoid between 0.4× and 1.6× with period Config.Period,
	// shifted per region like time zones.
	PatternDiurnal Pattern = "diurnal"
	// PatternSpike is steady traffic with occasional 5–10× bursts of 5–20 s hitting one
	// region, about one per region every Config.SpikeEvery.
	PatternSpike Pattern = "spike"
	// PatternStep is steady traffic that steps up 10× Config.StepAfter after the start
	// and stays there.
	PatternStep Pattern = "step"
)

// Patterns lists the valid patterns.
var Patterns = []Pattern{PatternSteady, PatternDiurnal, PatternSpike, PatternStep}

// DefaultServices are the simulated services, busiest first: their weights fall off
// like Zipf's law (1/rank^1.1).
var DefaultServices = []string{"checkout", "payment", "cart", "search", "frontend", "recommendation", "debug", "batch-report"}

// namedRegions name the first regions; beyond them regions are region-<k>.
var namedRegions = []string{"us-east-1", "eu-west-1", "ap-south-1", "us-west-2", "eu-central-1", "ap-northeast-1"}

// RegionNames returns n region names: us-east-1, eu-west-1, ap-south-1, us-west-2,
// eu-central-1, ap-northeast-1, then region-7, region-8, ...
func RegionNames(n int) []string {
	out := make([]string, n)
	for k := range n {
		if k < len(namedRegions) {
			out[k] = namedRegions[k]
		} else {
			out[k] = "region-" + strconv.Itoa(k+1)
		}
	}
	return out
}

// CollectorID is the id of the n-th (1-based) simulated collector of a region:
// <prefix>-<region>-<n>, e.g. sim-us-east-1-3.
func CollectorID(prefix, region string, n int) string {
	return prefix + "-" + region + "-" + strconv.Itoa(n)
}

// Limits of Config.
const (
	MaxRegions    = 100
	MaxCollectors = 1000 // per region
	MaxTotal      = 5000 // regions × collectors
)

// Config describes a simulated fleet.
type Config struct {
	// Regions is the number of regions (1..MaxRegions; default 3).
	Regions int
	// Collectors is the number of collectors per region (1..MaxCollectors; default 4).
	Collectors int
	// Pattern shapes the traffic over time (default steady).
	Pattern Pattern
	// Services are the simulated services, busiest first (default DefaultServices).
	Services []string
	// Interval is the time between load reports (default 1 s).
	Interval time.Duration
	// BaseQPS is the mean offered load of one collector, in spans per second, at
	// pattern level 1 (default 1000). Collector capacities are 1.8–3.2 × BaseQPS, so
	// steady traffic runs them at roughly 30–55 % utilisation.
	BaseQPS float64
	// Seed seeds the random process (default 1): the same seed, config and report
	// times give the same reports.
	Seed int
	// Period is the diurnal pattern's period (default 10 min, short enough to watch).
	Period time.Duration
	// StepAfter is when the step pattern steps up, after the start (default 1 min).
	StepAfter time.Duration
	// SpikeEvery is the mean time between spikes of one region (default 2 min).
	SpikeEvery time.Duration
	// OutageEvery is the mean time between outages of one collector, during which it
	// reports unhealthy, takes little traffic and refuses most of it (default 20 min;
	// 0 disables outages). OutageMin and OutageMax bound an outage's length (defaults
	// 20 s and 60 s).
	OutageEvery, OutageMin, OutageMax time.Duration
	// IDPrefix starts every collector id (default "sim").
	IDPrefix string
}

// DefaultConfig returns 3 regions × 4 collectors of steady traffic at 1000 spans/s each.
func DefaultConfig() Config {
	return Config{
		Regions:     3,
		Collectors:  4,
		Pattern:     PatternSteady,
		Services:    DefaultServices,
		Interval:    time.Second,
		BaseQPS:     1000,
		Seed:        1,
		Period:      10 * time.Minute,
		StepAfter:   time.Minute,
		SpikeEvery:  2 * time.Minute,
		OutageEvery: 20 * time.Minute,
		OutageMin:   20 * time.Second,
		OutageMax:   60 * time.Second,
		IDPrefix:    "sim",
	}
}

// Bind registers the simulator's knobs (flags and environment variables).
func (c *Config) Bind(k *knobs.Set) {
	k.Int(&c.Regions, "regions", "SIM_REGIONS", c.Regions, "number of simulated regions (us-east-1, eu-west-1, ap-south-1, ... then region-<k>)")
	k.Int(&c.Collectors, "collectors", "SIM_COLLECTORS", c.Collectors, "simulated collectors per region")
	k.String((*string)(&c.Pattern), "pattern", "SIM_PATTERN", string(c.Pattern), "traffic pattern: steady, diurnal, spike or step")
	services := strings.Join(c.Services, ",")
	if v := os.Getenv("SIM_SERVICES"); v != "" {
		services = v
		c.Services = splitList(v)
	}
	k.FlagSet().Func("services", fmt.Sprintf("comma-separated simulated services, busiest first (env SIM_SERVICES, default %q)", services), func(s string) error {
		c.Services = splitList(s)
		return nil
	})
	k.Duration(&c.Interval, "interval", "SIM_INTERVAL", c.Interval, "time between load reports")
	k.Float(&c.BaseQPS, "base-qps", "SIM_BASE_QPS", c.BaseQPS, "mean offered spans/s per collector at pattern level 1")
	k.Int(&c.Seed, "seed", "SIM_SEED", c.Seed, "random seed: the same seed gives the same fleet")
	k.Duration(&c.Period, "period", "SIM_PERIOD", c.Period, "period of the diurnal pattern")
	k.Duration(&c.StepAfter, "step-after", "SIM_STEP_AFTER", c.StepAfter, "when the step pattern steps up 10x, after the start")
	k.Duration(&c.SpikeEvery, "spike-every", "SIM_SPIKE_EVERY", c.SpikeEvery, "mean time between spikes of one region (spike pattern)")
	k.Duration(&c.OutageEvery, "outage-every", "SIM_OUTAGE_EVERY", c.OutageEvery, "mean time between outages of one collector (0: never)")
	k.String(&c.IDPrefix, "id-prefix", "SIM_ID_PREFIX", c.IDPrefix, "prefix of the collector ids: <prefix>-<region>-<n>")
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Validate reports every invalid field, each error wrapping ErrConfigValidation and
// naming the flag.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfigValidation}, args...)...))
	}
	if c.Regions < 1 || c.Regions > MaxRegions {
		bad("--regions %d: want 1..%d", c.Regions, MaxRegions)
	}
	if c.Collectors < 1 || c.Collectors > MaxCollectors {
		bad("--collectors %d: want 1..%d", c.Collectors, MaxCollectors)
	}
	if c.Regions*c.Collectors > MaxTotal {
		bad("--regions × --collectors = %d: at most %d collectors", c.Regions*c.Collectors, MaxTotal)
	}
	switch c.Pattern {
	case PatternSteady, PatternDiurnal, PatternSpike, PatternStep:
	default:
		bad("--pattern %q: want steady, diurnal, spike or step", c.Pattern)
	}
	if len(c.Services) == 0 || len(c.Services) > events.MaxReportedServices {
		bad("--services: want 1..%d names", events.MaxReportedServices)
	}
	seen := map[string]bool{}
	for _, s := range c.Services {
		if len(s) > 256 {
			bad("--services: %.20q... is longer than 256 bytes", s)
		}
		if seen[s] {
			bad("--services: %q is listed twice", s)
		}
		seen[s] = true
	}
	if c.Interval < 10*time.Millisecond || c.Interval > time.Hour {
		bad("--interval %v: want 10ms..1h", c.Interval)
	}
	if !(c.BaseQPS > 0 && c.BaseQPS <= events.MaxReportedQPS/100) {
		bad("--base-qps %v: want a number in (0, %g]", c.BaseQPS, events.MaxReportedQPS/100)
	}
	if c.Period < time.Second {
		bad("--period %v: want at least 1s", c.Period)
	}
	if c.StepAfter < 0 {
		bad("--step-after %v: must not be negative", c.StepAfter)
	}
	if c.SpikeEvery < time.Second {
		bad("--spike-every %v: want at least 1s", c.SpikeEvery)
	}
	if c.OutageEvery < 0 || c.OutageMin <= 0 || c.OutageMax < c.OutageMin {
		bad("--outage-every %v, outage length %v..%v: want outage-every ≥ 0 and 0 < min ≤ max", c.OutageEvery, c.OutageMin, c.OutageMax)
	}
	if err := events.CheckToken("--id-prefix", c.IDPrefix); err != nil {
		bad("%v", err)
	}
	return errors.Join(errs...)
}
