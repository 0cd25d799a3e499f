package otlpsink

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/klauspost/compress/zstd"
	"io"
	"mime"
	"net/http"
	"strconv"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

const (
	transportHTTP = "http"
	ctProtobuf    = "application/x-protobuf"
	ctJSON        = "application/json"
)

// errTooLarge is returned by readBody when a body, compressed or not, is over the limit.
var errTooLarge = errors.New("request body too large")

// otlpMessage is what the HTTP receiver needs of a pdata export request or response.
type otlpMessage interface {
	UnmarshalProto([]byte) error
	UnmarshalJSON([]byte) error
}

type otlpResponse interface {
	MarshalProto() ([]byte, error)
	MarshalJSON() ([]byte, error)
}

// otlpHTTP serves POST /v1/traces, /v1/logs and /v1/metrics.
func (s *Sink) otlpHTTP() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/traces", func(w http.ResponseWriter, r *http.Request) {
		req := ptraceotlp.NewExportRequest()
		s.serveExport(w, r, signalTraces, req, func(size int) otlpResponse {
			s.consumeTraces(req.Traces(), size, transportHTTP)
			return ptraceotlp.NewExportResponse()
		})
	})
	mux.HandleFunc("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		req := plogotlp.NewExportRequest()
		s.serveExport(w, r, signalLogs, req, func(size int) otlpResponse {
			s.consumeLogs(req.Logs(), size, transportHTTP)
			return plogotlp.NewExportResponse()
		})
	})
	mux.HandleFunc("/v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		req := pmetricotlp.NewExportRequest()
		s.serveExport(w, r, signalMetrics, req, func(size int) otlpResponse {
			s.consumeMetrics(req.Metrics(), size, transportHTTP)
			return pmetricotlp.NewExportResponse()
		})
	})
	return mux
}

// serveExport decodes one export request into req, hands it to consume (with its
// decoded size) and writes the response in the request's encoding. Every refusal says
// what was wrong, as a google.rpc.Status in the request's encoding.
func (s *Sink) serveExport(w http.ResponseWriter, r *http.Request, signal string, req otlpMessage, consume func(size int) otlpResponse) {
	got, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	ct := got
	if ct != ctJSON {
		ct = ctProtobuf // the body of an error to a request we cannot read
	}
	fail := func(code int, c codes.Code, format string, args ...any) {
		s.refuse(signal, transportHTTP)
		writeStatus(w, ct, code, status.New(c, fmt.Sprintf(format, args...)))
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(http.StatusMethodNotAllowed, codes.Unimplemented, "%s %s: only POST is served", r.Method, r.URL.Path)
		return
	}
	if got != ctJSON && got != ctProtobuf {
		fail(http.StatusUnsupportedMediaType, codes.InvalidArgument, "Content-Type %q: want %s or %s", r.Header.Get("Content-Type"), ctProtobuf, ctJSON)
		return
	}
	body, err := readBody(r, s.cfg.MaxRequestBytes)
	switch {
	case errors.Is(err, errTooLarge):
		fail(http.StatusRequestEntityTooLarge, codes.ResourceExhausted, "%s: %v (limit %d bytes)", r.URL.Path, err, s.cfg.MaxRequestBytes)
		return
	case errors.Is(err, errUnsupportedEncoding):
		fail(http.StatusUnsupportedMediaType, codes.InvalidArgument, "%v", err)
		return
	case err != nil:
		fail(http.StatusBadRequest, codes.InvalidArgument, "%s: reading the body: %v", r.URL.Path, err)
		return
	}
	if ct == ctJSON {
		err = req.UnmarshalJSON(body)
	} else {
		err = req.UnmarshalProto(body)
	}
	if err != nil {
		fail(http.StatusBadRequest, codes.InvalidArgument, "%s: %s body: %v", r.URL.Path, ct, err)
		return
	}
	resp := consume(len(body))
	var out []byte
	if ct == ctJSON {
		out, err = resp.MarshalJSON()
	} else {
		out, err = resp.MarshalProto()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	w.Write(out) //nolint:errcheck // the client went away
}

// errUnsupportedEncoding is returned by readBody for a Content-Encoding it cannot read.
var errUnsupportedEncoding = errors.New("unsupported Content-Encoding")

// readBody reads the request body, decompressing gzip or zstd, refusing more than limit
// bytes before or after decompression with errTooLarge.
func readBody(r *http.Request, limit int) ([]byte, error) {
	in := io.Reader(http.MaxBytesReader(nil, r.Body, int64(limit)))
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(in)
		if err != nil {
			return nil, tooLarge(err)
		}
		defer zr.Close()
		in = zr
	case zstdName:
		zr, err := newZstdReader(in)
		if err != nil {
			return nil, tooLarge(err)
		}
		in = zr
	default:
		return nil, fmt.Errorf("%w %q: want gzip, zstd or none", errUnsupportedEncoding, enc)
	}
	body, err := io.ReadAll(io.LimitReader(in, int64(limit)+1))
	if err != nil {
		return nil, tooLarge(err)
	}
	if len(body) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes decompressed", errTooLarge, limit)
	}
	return body, nil
}

// tooLarge maps the MaxBytesReader's error, and a zstd frame asking for more window or
// memory than the decoders allow, to errTooLarge.
func tooLarge(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("%w: more than %d bytes", errTooLarge, mbe.Limit)
	case errors.Is(err, zstd.ErrWindowSizeExceeded), errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return fmt.Errorf("%w: the zstd frame needs a window or memory over the limit (%d-byte window): %w", errTooLarge, maxZstdWindow, err)
	}
	return err
}

// writeStatus writes st as the body of an error response, encoded as ct.
func writeStatus(w http.ResponseWriter, ct string, code int, st *status.Status) {
	var out []byte
	var err error
	if ct == ctJSON {
		out, err = protojson.Marshal(st.Proto())
	} else {
		out, err = proto.Marshal(st.Proto())
	}
	if err != nil {
		http.Error(w, st.Message(), code)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	w.Write(out) //nolint:errcheck // the client went away
}

// consumeLogs counts a decoded logs request of size bytes.
func (s *Sink) consumeLogs(ld plog.Logs, size int, transport string) {
	s.consumeItems(signalLogs, func(st *Stats) *int64 { return &st.LogRecords }, ld.LogRecordCount(), size, transport)
}

// consumeMetrics counts a decoded metrics request of size bytes.
func (s *Sink) consumeMetrics(md pmetric.Metrics, size int, transport string) {
	s.consumeItems(signalMetrics, func(st *Stats) *int64 { return &st.MetricPoints }, md.DataPointCount(), size, transport)
}

// consumeItems counts n log records or metric points of one request.
func (s *Sink) consumeItems(signal string, field func(*Stats) *int64, n, size int, transport string) {
	s.counts.addItems(field, int64(n))
	s.m.bytes.WithLabelValues(signal, transport).Add(float64(size))
	s.m.items.WithLabelValues(signal).Add(float64(n))
	s.m.requests.WithLabelValues(signal, transport, "accepted").Inc()
}

// Handler serves the sink's counts as JSON (GET /v1/sink; ?recent=N lists the last N
// traces, at most Config.MaxTraces).
func (s *Sink) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.cfg.RecentTraces
		if v := r.URL.Query().Get("recent"); v != "" {
			k, err := strconv.Atoi(v)
			if err != nil || k < 0 {
				http.Error(w, fmt.Sprintf("recent=%q: want a count >= 0", v), http.StatusBadRequest)
				return
			}
			n = min(k, s.cfg.MaxTraces)
		}
		w.Header().Set("Content-Type", ctJSON)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(s.counts.snapshot(n)) //nolint:errcheck // the client went away
	})
}
