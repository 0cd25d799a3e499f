package otlpsink

import (
	"errors"
	"fmt"
	"net"

	"github.com/otelfleet/otelfleet/pkg/knobs"
)

// ErrConfigValidation is wrapped by every error [Config.Validate] and [New] return; the
// message names the flag at fault.
var ErrConfigValidation = errors.New("otlpsink: invalid config")

// Config says where a Sink listens and how much it remembers.
type Config struct {
	// GRPCAddr is the OTLP/gRPC listen address (host:port; port 0 picks a free one).
	GRPCAddr string
	// HTTPAddr is the OTLP/HTTP listen address (/v1/traces, /v1/logs, /v1/metrics);
	// empty disables the HTTP receiver.
	HTTPAddr string
	// MaxRequestBytes bounds one request, compressed and decompressed (gRPC message
	// size too). Larger requests are refused with 413 / RESOURCE_EXHAUSTED.
	MaxRequestBytes int
	// MaxTraces is how many traces the sink remembers for per-trace counts and duplicate
	// detection; the oldest is forgotten first. About 100 bytes per trace plus 8 per span.
	MaxTraces int
	// RecentTraces is how many of the last traces Stats lists with their span counts.
	RecentTraces int
	// MaxServices bounds the per-service counts; further services count as "other".
	MaxServices int
}

// DefaultConfig returns a sink on the loopback ports 14317 (gRPC) and 14318 (HTTP), next
// to a router on 4317/4318, with 16 MiB requests and 100,000 remembered traces.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:        "127.0.0.1:14317",
		HTTPAddr:        "127.0.0.1:14318",
		MaxRequestBytes: 16 << 20,
		MaxTraces:       100_000,
		RecentTraces:    20,
		MaxServices:     1000,
	}
}

// Bind registers the config's flags and env vars on k, with the current values as
// defaults.
func (c *Config) Bind(k *knobs.Set) {
	k.String(&c.GRPCAddr, "grpc-addr", "SINK_GRPC_ADDR", c.GRPCAddr, "OTLP/gRPC listen address (port 0: any free port)")
	k.String(&c.HTTPAddr, "http-addr", "SINK_HTTP_ADDR", c.HTTPAddr, "OTLP/HTTP listen address (/v1/traces, /v1/logs, /v1/metrics); empty: no HTTP receiver")
	k.Int(&c.MaxRequestBytes, "max-request-bytes", "SINK_MAX_REQUEST_BYTES", c.MaxRequestBytes, "largest request accepted, compressed and decompressed")
	k.Int(&c.MaxTraces, "max-traces", "SINK_MAX_TRACES", c.MaxTraces, "traces remembered for per-trace counts and duplicate detection (oldest forgotten first)")
	k.Int(&c.RecentTraces, "recent-traces", "SINK_RECENT_TRACES", c.RecentTraces, "how many of the last traces /v1/sink lists with their span counts")
	k.Int(&c.MaxServices, "max-services", "SINK_MAX_SERVICES", c.MaxServices, "services counted by name; further ones count as \"other\"")
}

// Validate reports every invalid field, each error wrapping ErrConfigValidation.
func (c Config) Validate() error {
	var errs []error
	addr := func(flag, v string, optional bool) {
		if v == "" && optional {
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("%w: --%s %q: want host:port", ErrConfigValidation, flag, v))
		}
	}
	addr("grpc-addr", c.GRPCAddr, false)
	addr("http-addr", c.HTTPAddr, true)
	between := func(flag string, v, lo, hi int) {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%w: --%s %d: want %d..%d", ErrConfigValidation, flag, v, lo, hi))
		}
	}
	between("max-request-bytes", c.MaxRequestBytes, 1<<10, 1<<30)
	between("max-traces", c.MaxTraces, 1, 10_000_000)
	between("recent-traces", c.RecentTraces, 0, 10_000)
	between("max-services", c.MaxServices, 1, 100_000)
	if c.RecentTraces > c.MaxTraces {
		errs = append(errs, fmt.Errorf("%w: --recent-traces %d: more than --max-traces %d", ErrConfigValidation, c.RecentTraces, c.MaxTraces))
	}
	return errors.Join(errs...)
}
