package otlpsink

import (
	"context"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

const transportGRPC = "grpc"

var (
	tracesSizer  ptrace.ProtoMarshaler
	logsSizer    plog.ProtoMarshaler
	metricsSizer pmetric.ProtoMarshaler
)

type tracesServer struct {
	*ptraceotlp.UnimplementedGRPCServer
	s *Sink
}

// Export implements ptraceotlp.GRPCServer.
func (t tracesServer) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	td := req.Traces()
	t.s.consumeTraces(td, tracesSizer.TracesSize(td), transportGRPC)
	return ptraceotlp.NewExportResponse(), nil
}

type logsServer struct {
	*plogotlp.UnimplementedGRPCServer
	s *Sink
}

// Export implements plogotlp.GRPCServer.
func (l logsServer) Export(_ context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	ld := req.Logs()
	l.s.consumeLogs(ld, logsSizer.LogsSize(ld), transportGRPC)
	return plogotlp.NewExportResponse(), nil
}

type metricsServer struct {
	*pmetricotlp.UnimplementedGRPCServer
	s *Sink
}

// Export implements pmetricotlp.GRPCServer.
func (m metricsServer) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	md := req.Metrics()
	m.s.consumeMetrics(md, metricsSizer.MetricsSize(md), transportGRPC)
	return pmetricotlp.NewExportResponse(), nil
}
