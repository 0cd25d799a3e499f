package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/otlpsink"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

const sinkUsage = `sink [--region R] [--id ID] [--capacity-qps N] [--grpc-addr HOST:PORT] [--http-addr HOST:PORT]
      [--admin-addr HOST:PORT] [--report-interval 1s] [--register=false]

Runs a real OTLP backend: an OTLP/gRPC and OTLP/HTTP receiver (/v1/traces, /v1/logs,
/v1/metrics; protobuf or JSON; gzip or zstd) that counts the spans of every trace and
service and the spans it got twice. It registers as collector.<region>.<id> with its
OTLP address (so a router sends to it) and publishes the load it really receives on
<root>.load.<region>.<id>. The admin address serves /metrics, /healthz, /readyz and
/v1/sink (JSON counts; ?recent=N lists the last N traces with their span counts).
SIGINT/SIGTERM deregister it at once; kill -9 leaves the registration to expire.`

// sinkOptions are the flags of `otelfleet sink`.
type sinkOptions struct {
	sink      otlpsink.Config
	region    string
	id        string
	capacity  float64
	adminAddr string
	interval  time.Duration
	register  bool
	hostCPU   bool // --host-cpu-health, ignored (kept so old command lines still run)
	health    platform.HealthHysteresis
	logLevel  string
}

func runSink(ctx context.Context, env *cliEnv, args []string) error {
	o := sinkOptions{sink: otlpsink.DefaultConfig()}
	fs, k := env.flags("sink", sinkUsage)
	o.sink.Bind(k)
	k.String(&o.region, "region", "REGION", "local", "region the sink registers in")
	k.String(&o.id, "id", "COLLECTOR_ID", "sink-"+platform.DefaultInstanceID(), "collector id, unique in its region")
	k.Float(&o.capacity, "capacity-qps", "COLLECTOR_CAPACITY_QPS", 50000, "spans per second the sink claims it can take (0: unknown)")
	k.String(&o.adminAddr, "admin-addr", "ADMIN_ADDR", "127.0.0.1:18888", "admin HTTP address: /metrics, /healthz, /readyz, /v1/sink (port 0: any free port)")
	k.Duration(&o.interval, "report-interval", "SINK_REPORT_INTERVAL", time.Second, "time between load reports")
	k.Bool(&o.register, "register", "SINK_REGISTER", true, "register in the fleet and report load (false: a receiver only, no NATS needed)")
	k.Bool(&o.hostCPU, "host-cpu-health", "SINK_HOST_CPU_HEALTH", true, "ignored: health judges the sink's own process (its CPU share and memory), never the host")
	o.health = platform.DefaultHealthHysteresis()
	o.health.Bind(k)
	k.String(&o.logLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn, error")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("sink: unexpected argument %q", pos[0])
	}
	if err := k.Err(); err != nil {
		return usageError("%v", err)
	}
	if err := o.validate(); err != nil {
		return usageError("sink: %v", err)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(o.logLevel)) // checked by validate
	log := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: level})).With("sink", o.id)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sink, err := otlpsink.New(o.sink, log, reg)
	if err != nil {
		return usageError("sink: %v", err)
	}
	if err := sink.Start(); err != nil {
		return refused(err)
	}
	defer stopWithin(5*time.Second, sink.Stop)

	var member *otlpsink.Member
	ready := func() error { return nil }
	if o.register {
		nc, js, _, err := env.longLived(ctx, "sink-"+o.id)
		if err != nil {
			return err
		}
		defer nc.Close()
		kv, err := env.bucket(ctx, js, events.Namespace.RegistryBucket)
		if err != nil {
			return err
		}
		ns, err := env.namespace()
		if err != nil {
			return err
		}
		member, err = sink.Join(nc, kv, ns, otlpsink.MemberConfig{
			Region: o.region, ID: o.id, CapacityQPS: o.capacity, Interval: o.interval,
			Version: platform.Version, Registerer: reg, Readings: healthReadings, Health: o.health,
		}, log)
		if err != nil {
			return usageError("sink: %v", err)
		}
		defer stopWithin(5*time.Second, member.Stop)
		ready = member.Ready
	}

	admin, err := serveAdmin("sink", o.adminAddr, reg, ready, log, func(mux *http.ServeMux) { mux.Handle("GET /v1/sink", sink.Handler()) })
	if err != nil {
		return refused(err)
	}
	defer stopWithin(5*time.Second, admin.Shutdown)
	line := fmt.Sprintf("otelfleet sink: OTLP gRPC %s · HTTP %s · admin http://%s/v1/sink", sink.GRPCAddr(), dash(sink.HTTPAddr()), admin.addr)
	if member != nil {
		line += fmt.Sprintf(" · registered as %s at %s (Ctrl-C deregisters)", member.Key(), env.nats.URL)
	}
	fmt.Fprintln(env.stderr, line)
	<-ctx.Done()
	st := sink.Stats()
	fmt.Fprintf(env.stderr, "otelfleet sink: stopping after %d spans in %d traces (%d duplicates), %d log records, %d metric points\n",
		st.Spans, st.Traces, st.Duplicates, st.LogRecords, st.MetricPoints)
	return nil
}

// validate checks the options, naming the flag at fault.
func (o sinkOptions) validate() error {
	errs := []error{o.sink.Validate()}
	if err := events.CheckToken("--region", o.region); err != nil {
		errs = append(errs, err)
	}
	if err := events.CheckToken("--id", o.id); err != nil {
		errs = append(errs, err)
	}
	if o.capacity < 0 {
		errs = append(errs, fmt.Errorf("--capacity-qps %v: must be >= 0", o.capacity))
	}
	if _, _, err := net.SplitHostPort(o.adminAddr); err != nil {
		errs = append(errs, fmt.Errorf("--admin-addr %q: want host:port", o.adminAddr))
	}
	if o.interval < loadreport.MinInterval || o.interval > loadreport.MaxInterval {
		errs = append(errs, fmt.Errorf("--report-interval %v: want %v..%v", o.interval, loadreport.MinInterval, loadreport.MaxInterval))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel))
	}
	return errors.Join(errs...)
}

// cmdAdmin is the admin server of a long-running command (sink, proxy).
type cmdAdmin struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

// serveAdmin serves /metrics, /healthz, /readyz (ready while ready returns nil) and what
// handle adds on addr, for command cmd.
func serveAdmin(cmd, addr string, reg *prometheus.Registry, ready func() error, log *slog.Logger, handle func(*http.ServeMux)) (*cmdAdmin, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: --admin-addr %s: %w", cmd, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	handle(mux)
	a := &cmdAdmin{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "err", err)
		}
	}()
	return a, nil
}

// Shutdown stops the server gracefully until ctx ends and waits for it.
func (a *cmdAdmin) Shutdown(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	if err != nil {
		a.srv.Close()
	}
	<-a.done
	return err
}

// stopWithin calls stop with a context that ends after d.
func stopWithin(d time.Duration, stop func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_ = stop(ctx)
}
