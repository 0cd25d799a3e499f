package export

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// gRPC methods of the OTLP collector services.
const (
	methodTraces  = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
	methodLogs    = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
	methodMetrics = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
)

func grpcMethod(sig otlpwire.Signal) string {
	switch sig {
	case otlpwire.Logs:
		return methodLogs
	case otlpwire.Metrics:
		return methodMetrics
	}
	return methodTraces
}

// rawCodec sends *[]byte as they are and reads responses into *[]byte: requests are
// encoded already, and responses are read at the wire level.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

var _ encoding.CodecV2 = rawCodec{}

// grpcClient is one backend's gRPC connection.
type grpcClient struct {
	conn *grpc.ClientConn
	opts []grpc.CallOption
}

func newGRPCClient(addr string, cfg Config) (*grpcClient, error) {
	creds := insecure.NewCredentials()
	if tc := cfg.tlsConfig(); tc != nil {
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", addr, err)
	}
	opts := []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}
	if cfg.Compression != CompressionNone {
		opts = append(opts, grpc.UseCompressor(cfg.Compression))
	}
	return &grpcClient{conn: conn, opts: opts}, nil
}

func (c *grpcClient) export(ctx context.Context, sig otlpwire.Signal, payload []byte) outcome {
	var resp []byte
	err := c.conn.Invoke(ctx, grpcMethod(sig), &payload, &resp, c.opts...)
	if err == nil {
		return tookResponse(resp)
	}
	st := status.Convert(err)
	o := outcome{err: err, message: st.Message()}
	o.throttle = retryInfo(st)
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable, codes.DataLoss:
		o.retryable = true
	case codes.ResourceExhausted:
		// Retryable only when the server says when (OTLP spec).
		o.retryable = o.throttle > 0
	}
	return o
}

// retryInfo returns the delay a status's RetryInfo detail asks for (0 if none).
func retryInfo(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			if v := ri.GetRetryDelay().AsDuration(); v > 0 {
				return v
			}
		}
	}
	return 0
}

func (c *grpcClient) close() error { return c.conn.Close() }
