package routersvc

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // gzip request compression
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// The OTLP collector services the gRPC receiver serves.
var grpcServices = []struct {
	name string
	sig  otlpwire.Signal
}{
	{"opentelemetry.proto.collector.trace.v1.TraceService", otlpwire.Traces},
	{"opentelemetry.proto.collector.logs.v1.LogsService", otlpwire.Logs},
	{"opentelemetry.proto.collector.metrics.v1.MetricsService", otlpwire.Metrics},
}

// rawMsg is a request or response as its encoded bytes: the router never decodes OTLP
// into objects.
type rawMsg struct{ b []byte }

// rawCodec hands the request bytes to the handler as they are and writes the handler's
// response bytes as they are.
type rawCodec struct{}

// Name is "proto": OTLP clients send application/grpc(+proto).
func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMsg)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMsg)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	// data is freed when this returns: copy it into a buffer the handler owns.
	m.b = data.Materialize()
	return nil
}

// zstdCompressor lets gRPC clients send zstd-compressed requests (and answers with zstd
// when asked to).
type zstdCompressor struct {
	encoders sync.Pool
}

func (*zstdCompressor) Name() string { return "zstd" }

func (c *zstdCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	e, _ := c.encoders.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		if e, err = zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest)); err != nil {
			return nil, err
		}
	} else {
		e.Reset(w)
	}
	return &zstdWriter{Encoder: e, pool: &c.encoders}, nil
}

func (*zstdCompressor) Decompress(r io.Reader) (io.Reader, error) {
	v := zstdReaders.Get()
	d, ok := v.(*zstd.Decoder)
	if !ok {
		return nil, fmt.Errorf("zstd decoder: %v", v)
	}
	if err := d.Reset(r); err != nil {
		zstdReaders.Put(d)
		return nil, err
	}
	return &zstdReader{d: d}, nil
}

type zstdWriter struct {
	*zstd.Encoder
	pool *sync.Pool
}

func (w *zstdWriter) Close() error {
	err := w.Encoder.Close()
	w.pool.Put(w.Encoder)
	return err
}

// zstdReader returns its decoder to the pool at the end of the stream.
type zstdReader struct{ d *zstd.Decoder }

func (r *zstdReader) Read(p []byte) (int, error) {
	if r.d == nil {
		return 0, io.EOF
	}
	n, err := r.d.Read(p)
	if err != nil {
		zstdReaders.Put(r.d)
		r.d = nil
	}
	return n, err
}

func init() { encoding.RegisterCompressor(&zstdCompressor{}) }

// grpcServer returns the OTLP/gRPC server of s: requests up to MaxDecompressedBytes
// (after decompression; gRPC checks both sizes against it), refused before they are read
// while the router is full.
func (s *Service) grpcServer() *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(s.cfg.MaxDecompressedBytes),
		grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
			var r *refusal
			switch {
			case !s.auth.authorized(firstOf(info.Header.Get("authorization"))):
				r = refuse(refuseUnauthenticated, "missing or wrong bearer token (metadata authorization: Bearer <token>)")
			case !s.mem.admit():
				r = busy(retryBusy, "router memory limit (%d bytes) reached; retry later", s.mem.limit)
			default:
				return ctx, nil
			}
			s.m.requests.WithLabelValues(methodSignal(info.FullMethodName), r.outcome()).Inc()
			return ctx, grpcStatus(r)
		}),
	}
	if s.auth.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.auth.tls)))
	}
	srv := grpc.NewServer(opts...)
	for _, gs := range grpcServices {
		sig := gs.sig
		srv.RegisterService(&grpc.ServiceDesc{
			ServiceName: gs.name,
			HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{{
				MethodName: "Export",
				Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					var req rawMsg
					if err := dec(&req); err != nil {
						return nil, err
					}
					return s.exportGRPC(ctx, sig, req.b)
				},
			}},
			Metadata: "opentelemetry/proto/collector/" + sig.String() + "/v1/" + sig.String() + "_service.proto",
		}, struct{}{})
	}
	return srv
}

// methodSignal is the signal label of a gRPC method: the OTLP service's signal, or
// "any" for a method that is not an OTLP Export.
func methodSignal(method string) string {
	for _, gs := range grpcServices {
		if len(method) == len(gs.name)+len("//Export") && method[1:1+len(gs.name)] == gs.name && method[1+len(gs.name):] == "/Export" {
			return gs.sig.String()
		}
	}
	return "any"
}

// exportGRPC handles one gRPC Export call.
func (s *Service) exportGRPC(ctx context.Context, sig otlpwire.Signal, req []byte) (any, error) {
	n := int64(len(req))
	if !s.mem.take(n) {
		r := busy(retryBusy, "router memory limit (%d bytes) reached; retry later", s.mem.limit)
		s.m.requests.WithLabelValues(sig.String(), r.outcome()).Inc()
		return nil, grpcStatus(r)
	}
	defer s.mem.give(n)
	res, r := s.export(ctx, sig, req)
	if r != nil {
		s.m.requests.WithLabelValues(sig.String(), r.outcome()).Inc()
		return nil, grpcStatus(r)
	}
	s.m.requests.WithLabelValues(sig.String(), res.outcome()).Inc()
	return &rawMsg{b: otlpwire.Response(sig, int64(res.Rejected), res.message(sig), false)}, nil
}

// grpcStatus maps a refusal to its gRPC status: UNAVAILABLE with RetryInfo when the
// client should retry later.
func grpcStatus(r *refusal) error {
	code := codes.InvalidArgument
	switch r.kind {
	case refuseTooLarge:
		code = codes.ResourceExhausted
	case refuseBusy:
		code = codes.Unavailable
	case refuseMediaType:
		code = codes.InvalidArgument
	case refuseUnauthenticated:
		code = codes.Unauthenticated
	}
	st := status.New(code, r.msg)
	if r.kind == refuseBusy && r.retryAfter > 0 {
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(r.retryAfter)}); err == nil {
			st = d
		}
	}
	return st.Err()
}

// retryAfterOf returns the RetryInfo delay of a gRPC error (for tests and clients).
func retryAfterOf(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// firstOf is the first of a metadata key's values, or "".
func firstOf(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}
