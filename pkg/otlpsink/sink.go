package otlpsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // gzip-compressed gRPC requests

	"github.com/otelfleet/otelfleet/pkg/loadmon"
)

// ErrStarted is returned by Start when the sink already runs or has been stopped.
var ErrStarted = errors.New("otlpsink: already started")

// Sink is an OTLP receiver that counts what it gets. Create it with New, Start it, and
// Stop it; Stats, Handler and Monitor are safe for concurrent use at any time.
type Sink struct {
	cfg     Config
	log     *slog.Logger
	counts  *counts
	monitor *loadmon.Monitor
	m       *metrics

	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	grpcAddr net.Addr
	httpAddr net.Addr

	startOnce sync.Once
	started   bool
	wg        sync.WaitGroup
}

// New returns a sink for cfg. Metrics (otelfleet_sink_*) are registered on reg when it
// is not nil; give sinks sharing a registry distinct labels with
// prometheus.WrapRegistererWith. log may be nil.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mcfg := loadmon.DefaultConfig()
	mon, err := loadmon.New(mcfg)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Sink{cfg: cfg, log: log, counts: newCounts(cfg.MaxTraces, cfg.MaxServices), monitor: mon, m: m}, nil
}

// Start listens on the configured addresses and serves until Stop. It fails when an
// address cannot be bound, leaving nothing running.
func (s *Sink) Start() error {
	err := ErrStarted
	s.startOnce.Do(func() { err = s.start() })
	return err
}

func (s *Sink) start() error {
	gl, err := net.Listen("tcp", s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("otlpsink: --grpc-addr %s: %w", s.cfg.GRPCAddr, err)
	}
	var hl net.Listener
	if s.cfg.HTTPAddr != "" {
		if hl, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
			gl.Close()
			return fmt.Errorf("otlpsink: --http-addr %s: %w", s.cfg.HTTPAddr, err)
		}
		s.httpAddr = hl.Addr()
	}
	s.grpcAddr = gl.Addr()
	s.grpcSrv = grpc.NewServer(grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes))
	ptraceotlp.RegisterGRPCServer(s.grpcSrv, tracesServer{s: s})
	plogotlp.RegisterGRPCServer(s.grpcSrv, logsServer{s: s})
	pmetricotlp.RegisterGRPCServer(s.grpcSrv, metricsServer{s: s})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.grpcSrv.Serve(gl); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("otlp/grpc receiver stopped", "err", err)
		}
	}()
	if hl != nil {
		s.httpSrv = &http.Server{Handler: s.otlpHTTP(), ReadHeaderTimeout: 10 * time.Second}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.httpSrv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("otlp/http receiver stopped", "err", err)
			}
		}()
	}
	s.started = true
	s.log.Info("otlp sink listening", "grpc", s.grpcAddr.String(), "http", s.HTTPAddr())
	return nil
}

// Stop stops the receivers, letting requests in progress finish until ctx ends, then
// closing what is left. It is idempotent; a sink that never started stops at once.
func (s *Sink) Stop(ctx context.Context) error {
	s.startOnce.Do(func() {}) // a later Start fails
	if !s.started {
		return nil
	}
	done := make(chan struct{})
	go func() {
		s.grpcSrv.GracefulStop()
		close(done)
	}()
	var errs []error
	if s.httpSrv != nil {
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, s.httpSrv.Close())
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		s.grpcSrv.Stop()
		<-done
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// GRPCAddr is the bound OTLP/gRPC address ("" before Start).
func (s *Sink) GRPCAddr() string { return addrString(s.grpcAddr) }

// HTTPAddr is the bound OTLP/HTTP address ("" before Start or without HTTP).
func (s *Sink) HTTPAddr() string { return addrString(s.httpAddr) }

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Monitor is the load monitor the receivers feed (spans, bytes, per-service spans,
// spans in progress as queue depth, refused requests as errors). A Member ticks it.
func (s *Sink) Monitor() *loadmon.Monitor { return s.monitor }

// Stats returns the counts so far with the last Config.RecentTraces traces.
func (s *Sink) Stats() Stats { return s.counts.snapshot(s.cfg.RecentTraces) }

// TraceSpans returns the spans received for a trace (0 when unknown or forgotten).
func (s *Sink) TraceSpans(id pcommon.TraceID) int64 { return s.counts.traceSpans(id) }

// PerTrace returns the span count of every remembered trace.
func (s *Sink) PerTrace() map[pcommon.TraceID]int64 { return s.counts.perTrace() }

// consumeTraces counts a decoded request of size bytes.
func (s *Sink) consumeTraces(td ptrace.Traces, size int, transport string) {
	n := td.SpanCount()
	s.monitor.AddQueueDepth(int64(n))
	t := s.counts.addTraces(td)
	s.monitor.RecordSpans(n, size)
	for svc, k := range t.services {
		s.monitor.RecordService(svc, int(k))
	}
	s.monitor.AddQueueDepth(-int64(n))
	s.m.accepted(signalTraces, transport, size, t)
}

// refuse counts a refused request.
func (s *Sink) refuse(signal, transport string) {
	s.counts.refused()
	s.monitor.RecordError(1)
	s.m.requests.WithLabelValues(signal, transport, "refused").Inc()
}
