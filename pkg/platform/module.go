package platform

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
)

// Module provides, from s: *slog.Logger, *prometheus.Registry and prometheus.Registerer,
// events.Namespace, *nats.Conn, jetstream.JetStream, *Contract, *Readiness, *Admin,
// *Tracing (own traces, off unless OTEL_EXPORTER_OTLP_*ENDPOINT is set) and the
// process's trace.TracerProvider. The admin server and the provisioning loop start with
// the app.
func Module(s Settings) fx.Option {
	return fx.Module("platform",
		fx.Supply(s),
		fx.Provide(
			NewLogger,
			NewRegistry,
			func(s Settings) (events.Namespace, error) { return s.Namespace() },
			NewReadiness,
			NewConn,
			NewJetStream,
			NewContract,
			NewAdmin,
			NewTracing,
			ProcessTracerProvider,
		),
		fx.Invoke(func(*Admin, *Contract) {}),
	)
}

// Options returns what an app built on Module also needs: the stop timeout and fx's own
// event log routed to the logger at debug level.
func Options(s Settings) fx.Option {
	return fx.Options(
		fx.StopTimeout(s.StopTimeout),
		fx.WithLogger(func(l *slog.Logger) fxevent.Logger {
			fl := &fxevent.SlogLogger{Logger: l}
			fl.UseLogLevel(slog.LevelDebug)
			return fl
		}),
	)
}

// NewLogger builds the process logger from the log settings, writing to s.LogOutput
// (stderr when nil).
func NewLogger(s Settings) (*slog.Logger, error) {
	if s.LogOutput != nil {
		return NewLoggerTo(s.LogOutput, s)
	}
	return NewLoggerTo(os.Stderr, s)
}

// NewLoggerTo builds a logger writing to w.
func NewLoggerTo(w io.Writer, s Settings) (*slog.Logger, error) {
	level, err := parseLevel(s.LogLevel)
	if err != nil {
		return nil, err
	}
	ho := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		// Durations read "5s", not nanoseconds, in JSON too.
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.StringValue(a.Value.Duration().String())
		}
		return a
	}}
	var h slog.Handler
	if s.LogFormat == "text" {
		h = slog.NewTextHandler(w, ho)
	} else {
		h = slog.NewJSONHandler(w, ho)
	}
	return slog.New(h).With("process", s.Process, "instance", s.Instance), nil
}

// RegistryResult exposes the registry as both its concrete type and a Registerer.
type RegistryResult struct {
	fx.Out
	Registry   *prometheus.Registry
	Registerer prometheus.Registerer
}

// NewRegistry returns a fresh metrics registry with the Go and process collectors.
func NewRegistry() RegistryResult {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return RegistryResult{Registry: reg, Registerer: reg}
}

// ConnParams are NewConn's dependencies.
type ConnParams struct {
	fx.In
	LC        fx.Lifecycle
	Settings  Settings
	Log       *slog.Logger
	Reg       prometheus.Registerer
	Readiness *Readiness
}

// NewConn connects to NATS (see natsconn.Connect: it never gives up), exports
// otelfleet_nats_connected and otelfleet_nats_reconnects_total, adds a "nats" readiness
// check, and drains the connection on stop.
func NewConn(p ConnParams) (*nats.Conn, error) {
	connected := prometheus.NewGauge(prometheus.GaugeOpts{Name: "otelfleet_nats_connected", Help: "1 while the NATS connection is up."})
	opts := p.Settings.NATS
	opts.Name = "otelfleet-" + p.Settings.Process + "-" + p.Settings.Instance
	nc, err := natsconn.Connect(opts, p.Log, func(st nats.Status) {
		if st == nats.CONNECTED {
			connected.Set(1)
		} else {
			connected.Set(0)
		}
	})
	if err != nil {
		return nil, err
	}
	if nc.IsConnected() {
		connected.Set(1)
	}
	reconnects := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "otelfleet_nats_reconnects_total", Help: "NATS reconnections since start."},
		func() float64 { return float64(nc.Stats().Reconnects) })
	p.Reg.MustRegister(connected, reconnects)
	p.Readiness.Add("nats", func() error {
		if !nc.IsConnected() {
			return errNotConnected
		}
		return nil
	})
	p.LC.Append(fx.StopHook(func(ctx context.Context) error {
		if nc.IsConnected() {
			done := make(chan struct{})
			nc.SetClosedHandler(func(*nats.Conn) { close(done) })
			if err := nc.Drain(); err == nil {
				select {
				case <-done:
				case <-ctx.Done():
				}
			}
		}
		nc.Close()
		return nil
	}))
	return nc, nil
}

// NewJetStream returns a JetStream context on nc.
func NewJetStream(nc *nats.Conn) (jetstream.JetStream, error) { return jetstream.New(nc) }
