package routersvc

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/services/router/internal/backends"
	"github.com/otelfleet/otelfleet/services/router/internal/balance"
	"github.com/otelfleet/otelfleet/services/router/internal/export"
)

// ErrConfig is wrapped by every error Config.Validate returns; the message names the flag.
var ErrConfig = errors.New("router: invalid config")

// Byte sizes used by the defaults.
const (
	kib = 1 << 10
	mib = 1 << 20
)

// Config configures the router service.
type Config struct {
	// GRPCAddr is the OTLP/gRPC listen address (flag --otlp-grpc-addr, env
	// OTLP_GRPC_ADDR; default ":4317").
	GRPCAddr string
	// HTTPAddr is the OTLP/HTTP listen address (flag --otlp-http-addr, env
	// OTLP_HTTP_ADDR; default ":4318").
	HTTPAddr string
	// AdvertiseAddr is the host the router registers its OTLP endpoints under (flag
	// --advertise-addr, env ROUTER_ADVERTISE_ADDR; default: the listen addresses as
	// bound, with an unspecified host replaced by the machine's hostname).
	AdvertiseAddr string
	// MaxRequestBytes bounds one request body as received, compressed (flag
	// --max-request-bytes, env ROUTER_MAX_REQUEST_BYTES; default 8 MiB). Larger bodies get
	// 413 / RESOURCE_EXHAUSTED.
	MaxRequestBytes int
	// MaxDecompressedBytes bounds one request body after decompression (flag
	// --max-decompressed-bytes, env ROUTER_MAX_DECOMPRESSED_BYTES; default 32 MiB); it is
	// enforced while reading, so a decompression bomb costs at most this much.
	MaxDecompressedBytes int
	// MemoryLimit bounds the bytes the router holds for requests in flight and backend
	// queues (flag --memory-limit, env ROUTER_MEMORY_LIMIT; default 256 MiB). Above it,
	// requests are refused with gRPC UNAVAILABLE + RetryInfo / HTTP 503 + Retry-After.
	MemoryLimit int
	// Strategy is the backend balancing strategy (flag --balance-strategy, env
	// ROUTER_BALANCE_STRATEGY; default bounded_load).
	Strategy string
	// LoadFactor is c of bounded_load: no backend above c × its fair share (flag
	// --load-factor, env ROUTER_LOAD_FACTOR; default 1.05). Smaller spreads more evenly
	// and moves more traces on membership changes.
	LoadFactor float64
	// RebalanceInterval is how often the load-aware strategies rebuild their tables from
	// the latest readings (flag --rebalance-interval, env ROUTER_REBALANCE_INTERVAL;
	// default 10s). Membership changes rebuild at once regardless.
	RebalanceInterval time.Duration
	// UnhealthyReports is how many consecutive load reports of a backend must say
	// unhealthy before its reports take it out of the tables (flag
	// --backend-unhealthy-reports, env ROUTER_BACKEND_UNHEALTHY_REPORTS; default 3): one
	// busy second must not move traces. 1 acts on every report.
	UnhealthyReports int
	// ExportProtocol is how backends are fed: grpc or http (flag --export-protocol, env
	// ROUTER_EXPORT_PROTOCOL; default grpc).
	ExportProtocol string
	// ExportCompression compresses exports: gzip, zstd or none (flag
	// --export-compression, env ROUTER_EXPORT_COMPRESSION; default gzip).
	ExportCompression string
	// ExportTimeout bounds one export call (flag --export-timeout, env
	// ROUTER_EXPORT_TIMEOUT; default 5s).
	ExportTimeout time.Duration
	// QueueBytes bounds each backend's queue (flag --queue-bytes, env
	// ROUTER_QUEUE_BYTES; default 64 MiB). A full queue makes its traces fail over to the
	// next backend, then pushes back on clients.
	QueueBytes int
	// ReportInterval is how often the router publishes its load report (flag
	// --router-report-interval, env ROUTER_REPORT_INTERVAL; default 1s).
	ReportInterval time.Duration
	// TLSCertFile and TLSKeyFile make both receivers serve TLS with this certificate
	// (flags --otlp-tls-cert, --otlp-tls-key, env OTLP_TLS_CERT, OTLP_TLS_KEY; default
	// none: plaintext). Both or neither. Rotated files are picked up by new connections.
	TLSCertFile, TLSKeyFile string
	// TLSClientCAFile makes the receivers require client certificates signed by this CA
	// (mutual TLS; flag --otlp-tls-client-ca, env OTLP_TLS_CLIENT_CA). Needs TLSCertFile.
	TLSClientCAFile string
	// BearerToken, if set, is required on every OTLP request as "Authorization: Bearer
	// <token>" (gRPC metadata authorization); others get 401 / UNAUTHENTICATED (flag
	// --otlp-bearer-token, env OTLP_BEARER_TOKEN). BearerTokenFile reads it from a file
	// instead (flag --otlp-bearer-token-file, env OTLP_BEARER_TOKEN_FILE). At most one.
	BearerToken, BearerTokenFile string
	// Ack says when a client is answered (flag --ack, env ROUTER_ACK; default
	// delivered): "delivered" once every part of its request was accepted by a backend
	// (a router crash then loses nothing acknowledged), "queued" as soon as the parts
	// are queued for backends (lower latency; a crash loses what was queued).
	Ack string
	// AckTimeout bounds how long a request waits for delivery in delivered mode (flag
	// --ack-timeout, env ROUTER_ACK_TIMEOUT; default 10s; a gRPC deadline that ends first
	// ends the wait first). Past it the client gets UNAVAILABLE / 503 with a retry delay.
	AckTimeout time.Duration
	// AckLinger is how long a batch holding a part a client waits for (delivered mode) may
	// wait for more parts before it is sent (flag --ack-linger, env ROUTER_ACK_LINGER;
	// default 5ms): longer shares exports among concurrent clients, shorter answers a single
	// sequential client sooner.
	AckLinger time.Duration
}

// Ack modes of Config.Ack.
const (
	AckDelivered = "delivered"
	AckQueued    = "queued"
)

// DefaultConfig returns the defaults: :4317 and :4318, 8 MiB requests, 32 MiB
// decompressed, 256 MiB held, bounded_load at 1.05 rebalanced every 10s, gRPC exports
// with gzip and a 5s timeout, 64 MiB per backend queue, a load report every second,
// clients answered once delivered (waiting at most 10s).
func DefaultConfig() Config {
	return Config{
		GRPCAddr: ":" + strconv.Itoa(events.RouterGRPCPort), HTTPAddr: ":" + strconv.Itoa(events.RouterHTTPPort),
		MaxRequestBytes: 8 * mib, MaxDecompressedBytes: 32 * mib, MemoryLimit: 256 * mib,
		Strategy: string(balance.BoundedLoad), LoadFactor: 1.05, RebalanceInterval: 10 * time.Second,
		ExportProtocol: "grpc", ExportCompression: "gzip", ExportTimeout: 5 * time.Second,
		QueueBytes: 64 * mib, ReportInterval: time.Second, UnhealthyReports: backends.DefaultUnhealthyReports,
		Ack: AckDelivered, AckTimeout: 10 * time.Second, AckLinger: export.DefaultAckLinger,
	}
}

// Bind registers the service's knobs.
func (c *Config) Bind(k *knobs.Set) {
	k.String(&c.GRPCAddr, "otlp-grpc-addr", "OTLP_GRPC_ADDR", c.GRPCAddr, "OTLP/gRPC listen address of the router")
	k.String(&c.HTTPAddr, "otlp-http-addr", "OTLP_HTTP_ADDR", c.HTTPAddr, "OTLP/HTTP listen address of the router (/v1/traces, /v1/logs, /v1/metrics)")
	k.String(&c.AdvertiseAddr, "advertise-addr", "ROUTER_ADVERTISE_ADDR", c.AdvertiseAddr, "host the router registers its OTLP endpoints under (default: the bound addresses, hostname for an unspecified host)")
	k.Int(&c.MaxRequestBytes, "max-request-bytes", "ROUTER_MAX_REQUEST_BYTES", c.MaxRequestBytes, "largest OTLP request body accepted, as received (compressed), in bytes")
	k.Int(&c.MaxDecompressedBytes, "max-decompressed-bytes", "ROUTER_MAX_DECOMPRESSED_BYTES", c.MaxDecompressedBytes, "largest OTLP request body accepted after decompression, in bytes")
	k.Int(&c.MemoryLimit, "memory-limit", "ROUTER_MEMORY_LIMIT", c.MemoryLimit, "bytes held for requests in flight and backend queues; above it clients get UNAVAILABLE / 503 with a retry delay")
	k.String(&c.Strategy, "balance-strategy", "ROUTER_BALANCE_STRATEGY", c.Strategy, "backend choice: "+balance.Names())
	k.Float(&c.LoadFactor, "load-factor", "ROUTER_LOAD_FACTOR", c.LoadFactor, "bounded_load's c: no backend above c × its fair share (> 1)")
	k.Duration(&c.RebalanceInterval, "rebalance-interval", "ROUTER_REBALANCE_INTERVAL", c.RebalanceInterval, "how often load-aware strategies rebuild their tables from the latest readings")
	k.Int(&c.UnhealthyReports, "backend-unhealthy-reports", "ROUTER_BACKEND_UNHEALTHY_REPORTS", c.UnhealthyReports, "consecutive unhealthy load reports before a backend leaves the tables")
	k.String(&c.ExportProtocol, "export-protocol", "ROUTER_EXPORT_PROTOCOL", c.ExportProtocol, "protocol to the backends: grpc or http")
	k.String(&c.ExportCompression, "export-compression", "ROUTER_EXPORT_COMPRESSION", c.ExportCompression, "compression to the backends: gzip, zstd or none")
	k.Duration(&c.ExportTimeout, "export-timeout", "ROUTER_EXPORT_TIMEOUT", c.ExportTimeout, "timeout of one export call to a backend")
	k.Int(&c.QueueBytes, "queue-bytes", "ROUTER_QUEUE_BYTES", c.QueueBytes, "byte limit of each backend's queue")
	k.Duration(&c.ReportInterval, "router-report-interval", "ROUTER_REPORT_INTERVAL", c.ReportInterval, "how often the router publishes its load report")
	k.String(&c.TLSCertFile, "otlp-tls-cert", "OTLP_TLS_CERT", c.TLSCertFile, "certificate file: the OTLP receivers serve TLS (with --otlp-tls-key)")
	k.String(&c.TLSKeyFile, "otlp-tls-key", "OTLP_TLS_KEY", c.TLSKeyFile, "key file of --otlp-tls-cert")
	k.String(&c.TLSClientCAFile, "otlp-tls-client-ca", "OTLP_TLS_CLIENT_CA", c.TLSClientCAFile, "CA file: the OTLP receivers require client certificates it signed (mutual TLS)")
	k.String(&c.BearerToken, "otlp-bearer-token", "OTLP_BEARER_TOKEN", c.BearerToken, "token every OTLP request must carry as Authorization: Bearer <token> (401 / UNAUTHENTICATED otherwise)")
	k.String(&c.BearerTokenFile, "otlp-bearer-token-file", "OTLP_BEARER_TOKEN_FILE", c.BearerTokenFile, "file holding the --otlp-bearer-token")
	k.String(&c.Ack, "ack", "ROUTER_ACK", c.Ack, "when a client is answered: delivered (once a backend took every part; nothing acknowledged is lost) or queued (once queued; lower latency, a router crash loses its queue)")
	k.Duration(&c.AckLinger, "ack-linger", "ROUTER_ACK_LINGER", c.AckLinger, "in --ack delivered, how long a batch with a waiting client may wait for more before it is sent (longer batches more, shorter answers sooner)")
	k.Duration(&c.AckTimeout, "ack-timeout", "ROUTER_ACK_TIMEOUT", c.AckTimeout, "longest wait for delivery in --ack delivered; past it the client gets UNAVAILABLE / 503 and retries")
}

// Validate reports every invalid field, naming its flag.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	for _, a := range []struct{ flag, v string }{{"--otlp-grpc-addr", c.GRPCAddr}, {"--otlp-http-addr", c.HTTPAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			bad("%s %q: want host:port or :port (%v)", a.flag, a.v, err)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("--otlp-tls-cert and --otlp-tls-key: set both or neither")
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		bad("--otlp-tls-client-ca %q: needs --otlp-tls-cert and --otlp-tls-key", c.TLSClientCAFile)
	}
	if c.BearerToken != "" && c.BearerTokenFile != "" {
		bad("--otlp-bearer-token and --otlp-bearer-token-file: set at most one")
	}
	if strings.ContainsAny(c.BearerToken, " \t\r\n") {
		bad("--otlp-bearer-token: must not contain white space")
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseAddr); err == nil {
			bad("--advertise-addr %q: want a host name or IP without a port (the ports are the listen ports)", c.AdvertiseAddr)
		}
	}
	if c.MaxRequestBytes < kib || c.MaxRequestBytes > 1<<30 {
		bad("--max-request-bytes %d: must be in [1 KiB, 1 GiB]", c.MaxRequestBytes)
	}
	if c.MaxDecompressedBytes < c.MaxRequestBytes || c.MaxDecompressedBytes > 4<<30 {
		bad("--max-decompressed-bytes %d: must be in [--max-request-bytes (%d), 4 GiB]", c.MaxDecompressedBytes, c.MaxRequestBytes)
	}
	if need := c.MaxRequestBytes + 2*c.MaxDecompressedBytes; c.MemoryLimit < max(need, 64*kib) {
		bad("--memory-limit %d: must be at least 64 KiB and --max-request-bytes + 2 × --max-decompressed-bytes (%d), so that the largest request fits (body, decompressed, split)", c.MemoryLimit, need)
	}
	if _, err := balance.ParseStrategy(c.Strategy); err != nil {
		bad("--balance-strategy %q: %v", c.Strategy, err)
	}
	if !(c.LoadFactor > 1) || c.LoadFactor > 100 {
		bad("--load-factor %v: must be in (1, 100]", c.LoadFactor)
	}
	if c.RebalanceInterval < 100*time.Millisecond || c.RebalanceInterval > time.Hour {
		bad("--rebalance-interval %v: must be in [100ms, 1h]", c.RebalanceInterval)
	}
	if c.UnhealthyReports < 1 || c.UnhealthyReports > 1000 {
		bad("--backend-unhealthy-reports %d: must be in [1, 1000]", c.UnhealthyReports)
	}
	if c.ExportProtocol != "grpc" && c.ExportProtocol != "http" {
		bad("--export-protocol %q: want grpc or http", c.ExportProtocol)
	}
	switch c.ExportCompression {
	case "gzip", "zstd", "none":
	default:
		bad("--export-compression %q: want gzip, zstd or none", c.ExportCompression)
	}
	if c.ExportTimeout < 10*time.Millisecond || c.ExportTimeout > 10*time.Minute {
		bad("--export-timeout %v: must be in [10ms, 10m]", c.ExportTimeout)
	}
	if c.QueueBytes < 64*kib {
		bad("--queue-bytes %d: must be at least 64 KiB", c.QueueBytes)
	}
	if c.ReportInterval < 10*time.Millisecond || c.ReportInterval > time.Hour {
		bad("--router-report-interval %v: must be in [10ms, 1h]", c.ReportInterval)
	}
	if c.Ack != AckDelivered && c.Ack != AckQueued {
		bad("--ack %q: want %s or %s", c.Ack, AckDelivered, AckQueued)
	}
	if c.AckLinger <= 0 || c.AckLinger > time.Second {
		bad("--ack-linger %v: must be in (0, 1s]", c.AckLinger)
	}
	if c.AckTimeout < 10*time.Millisecond || c.AckTimeout > 10*time.Minute {
		bad("--ack-timeout %v: must be in [10ms, 10m]", c.AckTimeout)
	}
	return errors.Join(errs...)
}

// balanceConfig returns the table-building config of c.
func (c Config) balanceConfig() balance.Config {
	s, _ := balance.ParseStrategy(c.Strategy)
	return balance.Config{Strategy: s, LoadFactor: c.LoadFactor, Weights: balance.Weights{Load: 1, Latency: 1, Capacity: 1}}
}
