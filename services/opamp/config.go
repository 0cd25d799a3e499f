package opampsvc

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"time"

	"github.com/otelfleet/otelfleet/services/opamp/internal/rollout"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/knobs"
)

// ErrConfig is wrapped by every Config validation error.
var ErrConfig = errors.New("invalid opamp config")

// Config configures the OpAMP service.
type Config struct {
	// Addr is the listen address of /v1/opamp and /v1/metrics (flag --opamp-addr, env
	// OPAMP_ADDR).
	Addr string
	// TLSCert and TLSKey are PEM files (flags --opamp-tls-cert, --opamp-tls-key); both
	// set serve TLS, both empty plain HTTP.
	TLSCert, TLSKey string
	// RegionAttribute names the agent description attribute (identifying first, then
	// non-identifying) that gives an agent's region (flag --opamp-region-attribute); an
	// agent without it is in the process's --region.
	RegionAttribute string
	// SilenceTimeout is how long an agent may send nothing before the replica stops
	// refreshing its keys (flag --opamp-silence-timeout); its keys then expire within the
	// registry TTL. Keep it above the agents' heartbeat (opamp-go's default is 30s) and,
	// for plain HTTP agents, their polling interval.
	SilenceTimeout time.Duration
	// MetricsURL is the own-metrics URL offered to agents (flag --opamp-metrics-url);
	// empty derives it from the Host the agent connected to: http(s)://<host>/v1/metrics.
	MetricsURL string
	// MetricsSecret keys the tokens that authenticate own-metrics posts (flag
	// --opamp-metrics-secret, env OPAMP_METRICS_SECRET). Give every replica the same
	// secret so that any replica accepts any agent's metrics; empty draws a random one
	// per process (one replica).
	MetricsSecret string
	// MaxMessageBytes bounds one AgentToServer message and one own-metrics body (flag
	// --opamp-max-message-bytes).
	MaxMessageBytes int
	// MaxConnections bounds the connections one replica serves at once on /v1/opamp
	// (flag --opamp-max-connections): open WebSockets plus plain HTTP requests being
	// handled. Over it a new connection is answered 503 with Retry-After and counted in
	// otelfleet_opamp_refused_total{reason="too_many_connections"}.
	MaxConnections int
	// Capacity is the spans per second reported as each collector's capacity in its load
	// report (flag --opamp-collector-capacity); 0 is unknown.
	Capacity float64
	// Rollout tunes the rollout controller the leader runs (--rollout-tick,
	// --rollout-sampling-threshold).
	Rollout rollout.Config
}

// DefaultConfig returns the defaults: :4320, cloud.region, 90s silence timeout, 4 MiB
// messages, 10,000 connections.
func DefaultConfig() Config {
	return Config{
		Addr:            fmt.Sprintf(":%d", events.OpAMPPort),
		RegionAttribute: "cloud.region",
		SilenceTimeout:  90 * time.Second,
		MaxMessageBytes: 4 << 20,
		MaxConnections:  10000,
		Rollout:         rollout.DefaultConfig(),
	}
}

// Validate reports every invalid field, naming its flag.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("--opamp-addr %q: want host:port: %v", c.Addr, err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("--opamp-tls-cert and --opamp-tls-key: give both or neither")
	}
	if c.RegionAttribute == "" || len(c.RegionAttribute) > maxAttrKey {
		bad("--opamp-region-attribute %q: want 1..%d bytes", c.RegionAttribute, maxAttrKey)
	}
	if c.SilenceTimeout < 100*time.Millisecond || c.SilenceTimeout > 24*time.Hour {
		bad("--opamp-silence-timeout %v: must be in [100ms, 24h]", c.SilenceTimeout)
	}
	if c.MetricsURL != "" {
		if u, err := url.Parse(c.MetricsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("--opamp-metrics-url %q: want an http(s) URL", c.MetricsURL)
		}
	}
	if c.MaxMessageBytes < 64<<10 || c.MaxMessageBytes > 64<<20 {
		bad("--opamp-max-message-bytes %d: must be in [64 KiB, 64 MiB]", c.MaxMessageBytes)
	}
	if c.MaxConnections < 1 || c.MaxConnections > 1<<20 {
		bad("--opamp-max-connections %d: must be in [1, %d]", c.MaxConnections, 1<<20)
	}
	if c.Capacity < 0 || math.IsNaN(c.Capacity) || c.Capacity > events.MaxReportedQPS {
		bad("--opamp-collector-capacity %v: must be in [0, %g]", c.Capacity, events.MaxReportedQPS)
	}
	if err := c.Rollout.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Bind registers the service's knobs.
func (c *Config) Bind(k *knobs.Set) {
	k.String(&c.Addr, "opamp-addr", "OPAMP_ADDR", c.Addr, "listen address of the OpAMP server (/v1/opamp, WebSocket and plain HTTP) and of own metrics (/v1/metrics)")
	k.String(&c.TLSCert, "opamp-tls-cert", "OPAMP_TLS_CERT", c.TLSCert, "PEM certificate of the OpAMP server (with --opamp-tls-key; empty: plain HTTP)")
	k.String(&c.TLSKey, "opamp-tls-key", "OPAMP_TLS_KEY", c.TLSKey, "PEM private key of the OpAMP server")
	k.String(&c.RegionAttribute, "opamp-region-attribute", "OPAMP_REGION_ATTRIBUTE", c.RegionAttribute, "agent description attribute giving an agent's region (fallback --region)")
	k.Duration(&c.SilenceTimeout, "opamp-silence-timeout", "OPAMP_SILENCE_TIMEOUT", c.SilenceTimeout, "an agent silent this long stops being refreshed, so its registration expires")
	k.String(&c.MetricsURL, "opamp-metrics-url", "OPAMP_METRICS_URL", c.MetricsURL, "own-metrics URL offered to agents (empty: http(s)://<host the agent connected to>/v1/metrics)")
	k.String(&c.MetricsSecret, "opamp-metrics-secret", "OPAMP_METRICS_SECRET", c.MetricsSecret, "key of the own-metrics tokens; the same on every replica (empty: random per process)")
	k.Int(&c.MaxMessageBytes, "opamp-max-message-bytes", "OPAMP_MAX_MESSAGE_BYTES", c.MaxMessageBytes, "largest AgentToServer message and own-metrics body accepted")
	k.Int(&c.MaxConnections, "opamp-max-connections", "OPAMP_MAX_CONNECTIONS", c.MaxConnections, "most connections served at once on /v1/opamp (open WebSockets and plain HTTP requests); more are refused with 503")
	k.Float(&c.Capacity, "opamp-collector-capacity", "OPAMP_COLLECTOR_CAPACITY", c.Capacity, "spans/s reported as each OpAMP collector's capacity (0: unknown)")
	c.Rollout.Bind(k)
}
