package samplersvc

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/services/sampler/internal/strategy"
)

// ErrConfigValidation is wrapped by every error Config.Validate returns; the message
// names the flag.
var ErrConfigValidation = errors.New("sampler: invalid config")

// MinInterval is the shortest decision interval accepted.
const MinInterval = time.Second

// Config configures the sampler service.
type Config struct {
	// Interval is how often the leader computes and stores a decision (flag
	// --sampling-interval, env SAMPLING_INTERVAL; default 10s, at least 1s). Shorter
	// follows traffic faster; each decision costs one KV write and one event.
	Interval time.Duration
	// Addr is the listen address of the Jaeger remote-sampling HTTP API (flag
	// --sampling-addr, env SAMPLING_ADDR; default ":5778", Jaeger agent's port).
	Addr string
	// ReportTTL is how long a collector's latest load report counts (flag --report-ttl,
	// env SAMPLING_REPORT_TTL; default 15s): a collector silent for longer is no longer
	// live and its traffic leaves the fleet's sums. Keep it a few report intervals (1s)
	// long; longer keeps a dead collector's traffic in the sums for longer.
	ReportTTL time.Duration
	// Alpha is the EWMA weight of the newest traffic observation, in (0, 1] (flag
	// --ewma-alpha, env SAMPLING_EWMA_ALPHA; default 0.5). Higher follows traffic faster,
	// lower smooths more.
	Alpha float64
	// JumpRatio replaces the smoothed traffic of a service by the latest observation when
	// it changes by this factor or more either way (flag --jump-ratio, env
	// SAMPLING_JUMP_RATIO; default 2).
	JumpRatio float64
	// ServiceFloorQPS is the kept spans per second, fleet-wide, that adaptive sampling
	// and the cost cap leave every seen service at least (flag --service-floor, env
	// SAMPLING_SERVICE_FLOOR; default 1; 0 disables), so that small services are not
	// starved by big ones.
	ServiceFloorQPS float64
	// LowerBoundTPS is served to SDKs as operationSampling.defaultLowerBoundTracesPerSecond
	// while an adaptive strategy is configured (flag --lower-bound-tps, env
	// SAMPLING_LOWER_BOUND_TPS; default 1/60, Jaeger's): every SDK keeps at least this many
	// traces per second of each operation. 0 serves plain probabilistic sampling.
	LowerBoundTPS float64
}

// DefaultConfig returns the defaults: 10s interval, ":5778", reports live for 15s,
// EWMA alpha 0.5, jumps at 2×, a floor of 1 span/s per service, SDK lower bound 1/60.
func DefaultConfig() Config {
	t := strategy.DefaultTuning()
	return Config{
		Interval: 10 * time.Second, Addr: ":5778", ReportTTL: 15 * time.Second,
		Alpha: t.Alpha, JumpRatio: t.JumpRatio, ServiceFloorQPS: t.ServiceFloorQPS,
		LowerBoundTPS: 1.0 / 60,
	}
}

// Bind registers the service's knobs.
func (c *Config) Bind(k *knobs.Set) {
	k.Duration(&c.Interval, "sampling-interval", "SAMPLING_INTERVAL", c.Interval, "how often the sampler leader computes a decision (at least 1s)")
	k.String(&c.Addr, "sampling-addr", "SAMPLING_ADDR", c.Addr, "listen address of the Jaeger remote-sampling HTTP API (GET /sampling?service=NAME)")
	c.BindTuning(k)
}

// BindTuning registers the knobs other than the interval and the address (for
// `otelfleet dev`, which names those two itself).
func (c *Config) BindTuning(k *knobs.Set) {
	k.Duration(&c.ReportTTL, "report-ttl", "SAMPLING_REPORT_TTL", c.ReportTTL, "how long a collector's latest load report counts toward fleet traffic")
	k.Float(&c.Alpha, "ewma-alpha", "SAMPLING_EWMA_ALPHA", c.Alpha, "EWMA weight of the newest traffic observation, in (0,1]")
	k.Float(&c.JumpRatio, "jump-ratio", "SAMPLING_JUMP_RATIO", c.JumpRatio, "traffic change (either way) that replaces the smoothed value by the latest")
	k.Float(&c.ServiceFloorQPS, "service-floor", "SAMPLING_SERVICE_FLOOR", c.ServiceFloorQPS, "kept spans/s every seen service keeps at least under adaptive and cost_based (0: none)")
	k.Float(&c.LowerBoundTPS, "lower-bound-tps", "SAMPLING_LOWER_BOUND_TPS", c.LowerBoundTPS, "traces/s per operation every SDK keeps at least under adaptive (Jaeger's defaultLowerBoundTracesPerSecond; 0: none)")
}

// Tuning returns the strategy tuning of c.
func (c Config) Tuning() strategy.Tuning {
	return strategy.Tuning{Alpha: c.Alpha, JumpRatio: c.JumpRatio, ServiceFloorQPS: c.ServiceFloorQPS}
}

// Validate reports every invalid field, naming its flag.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfigValidation}, args...)...))
	}
	if c.Interval < MinInterval || c.Interval > time.Hour {
		bad("--sampling-interval %v: must be in [1s, 1h]", c.Interval)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("--sampling-addr %q: want host:port or :port (%v)", c.Addr, err)
	}
	if c.ReportTTL < time.Second || c.ReportTTL > time.Hour {
		bad("--report-ttl %v: must be in [1s, 1h]", c.ReportTTL)
	}
	if !(c.Alpha > 0 && c.Alpha <= 1) {
		bad("--ewma-alpha %v: must be in (0, 1]", c.Alpha)
	}
	if !(c.JumpRatio > 1) || c.JumpRatio > 1e6 {
		bad("--jump-ratio %v: must be in (1, 1e6]", c.JumpRatio)
	}
	if !(c.ServiceFloorQPS >= 0) || c.ServiceFloorQPS > 1e9 {
		bad("--service-floor %v: must be in [0, 1e9] spans/s", c.ServiceFloorQPS)
	}
	if !(c.LowerBoundTPS >= 0) || c.LowerBoundTPS > 1e6 {
		bad("--lower-bound-tps %v: must be in [0, 1e6] traces/s", c.LowerBoundTPS)
	}
	return errors.Join(errs...)
}
