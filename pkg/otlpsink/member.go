package otlpsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/registration"
	"github.com/otelfleet/otelfleet/pkg/sysstat"
)

// Registration metadata keys a sink sets.
const (
	// MetaHTTPAddr is the metadata key of the sink's OTLP/HTTP address (host:port).
	MetaHTTPAddr = "otlp_http"
	// MetaSink marks the registration as an otlpsink ("true").
	MetaSink = "sink"
)

// MemberConfig says as which collector a sink joins the fleet.
type MemberConfig struct {
	// Region and ID make the registry key collector.<region>.<id>. Required tokens.
	Region, ID string
	// CapacityQPS is the spans per second the sink claims it can take (0: unknown).
	CapacityQPS float64
	// Interval is the time between load reports (default 1 s).
	Interval time.Duration
	// Version is the registered software version.
	Version string
	// Metadata are extra labels; MetaSink and MetaHTTPAddr are added.
	Metadata map[string]string
	// Registerer, when set, receives the registration and load report metrics.
	Registerer prometheus.Registerer
	// Readings, when set, replaces the real CPU and memory readings (sysstat) behind the
	// registration's health checks; tests give fixed readings so that a saturated test
	// machine does not mark the sink unhealthy. Nil: real readings of this process.
	Readings registration.Sampler
	// Health is the hysteresis of the registration's health (zero: the defaults).
	Health registration.Hysteresis
}

// Member keeps a running sink registered and reporting its load. Create it with
// Sink.Join after the sink has started; Stop deregisters.
type Member struct {
	client *registration.Client
	pub    *loadreport.Publisher

	stopOnce sync.Once
	stopErr  error
}

// Join registers the sink (which must be started) as a collector in kv, the
// otlp_registry bucket, with its advertised OTLP/gRPC address, and publishes its load on
// nc every interval. Neither blocks: registration retries in the background.
func (s *Sink) Join(nc *nats.Conn, kv registration.Store, ns events.Namespace, mc MemberConfig, log *slog.Logger) (*Member, error) {
	if s.GRPCAddr() == "" {
		return nil, fmt.Errorf("%w: join: the sink is not listening (Start it first)", ErrConfigValidation)
	}
	if log == nil {
		log = s.log
	}
	meta := maps.Clone(mc.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	meta[MetaSink] = "true"
	if h := s.HTTPAddr(); h != "" {
		meta[MetaHTTPAddr] = Advertise(h)
	}
	rc := registration.Config{
		Kind: events.KindCollector, ID: mc.ID, Region: mc.Region, Address: Advertise(s.GRPCAddr()),
		CapacityQPS: mc.CapacityQPS, Metadata: meta, Version: mc.Version, Registerer: mc.Registerer, Sampler: mc.Readings,
		Hysteresis: mc.Health,
	}
	if err := rc.Validate(); err != nil {
		return nil, err
	}
	client, err := registration.New(kv, rc, log)
	if err != nil {
		return nil, err
	}
	lc := loadreport.DefaultConfig()
	lc.Region, lc.Collector = mc.Region, mc.ID
	if mc.Interval != 0 {
		lc.Interval = mc.Interval
	}
	lc.Source = "otelfleet/sink/" + mc.Region + "/" + mc.ID
	src := &loadreport.MonitorSource{Monitor: s.monitor, Readings: sysstat.NewSampler(), Capacity: mc.CapacityQPS}
	pub, err := loadreport.NewPublisher(nc, ns, lc, src, log, mc.Registerer)
	if err != nil {
		return nil, err
	}
	if err := client.Start(); err != nil {
		return nil, err
	}
	pub.Start()
	return &Member{client: client, pub: pub}, nil
}

// Key is the registry key, collector.<region>.<id>.
func (m *Member) Key() string { return m.client.Key() }

// Stop stops the load reports and deletes the registration (retrying until ctx ends).
// It is idempotent.
func (m *Member) Stop(ctx context.Context) error {
	m.stopOnce.Do(func() {
		m.pub.Stop()
		if err := m.client.Deregister(ctx); err != nil && !errors.Is(err, registration.ErrClosed) {
			m.stopErr = fmt.Errorf("otlpsink: deregister %s: %w", m.client.Key(), err)
		}
	})
	return m.stopErr
}

// Advertise turns a listen address into one others can dial: an empty or unspecified
// host ("", 0.0.0.0, ::) becomes this host's name.
func Advertise(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return addr
	}
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "localhost"
	}
	return net.JoinHostPort(name, port)
}

// ErrNotRegistered is returned by Member.Ready while the registration is not written
// (NATS unreachable, or the key expired and is being written again).
var ErrNotRegistered = errors.New("otlpsink: not registered")

// Ready returns nil while the sink's registration is in the registry.
func (m *Member) Ready() error {
	if _, ok := m.client.Current(); !ok {
		return fmt.Errorf("%w as %s", ErrNotRegistered, m.client.Key())
	}
	return nil
}
