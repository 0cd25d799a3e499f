package routersvc

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// The OTLP/HTTP content types.
const (
	contentProto = "application/x-protobuf"
	contentJSON  = "application/json"
)

// httpHandler serves OTLP/HTTP: POST /v1/traces, /v1/logs and /v1/metrics with protobuf
// or JSON bodies, gzip, zstd or identity encoded.
func (s *Service) httpHandler() http.Handler {
	mux := http.NewServeMux()
	for _, sig := range []otlpwire.Signal{otlpwire.Traces, otlpwire.Logs, otlpwire.Metrics} {
		mux.Handle("/v1/"+sig.String(), s.httpExport(sig))
	}
	return mux
}

func (s *Service) httpExport(sig otlpwire.Signal) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		ct, _, ctErr := mime.ParseMediaType(req.Header.Get("Content-Type"))
		isJSON := ctErr == nil && ct == contentJSON
		if !s.auth.authorized(req.Header.Get("Authorization")) {
			s.refuseHTTP(w, sig, isJSON, refuse(refuseUnauthenticated, "missing or wrong bearer token (Authorization: Bearer <token>)"))
			return
		}
		if req.Method != http.MethodPost {
			s.refuseHTTP(w, sig, isJSON, refuse(refuseMethod, "method %s not allowed; OTLP/HTTP takes POST", req.Method))
			return
		}
		if ctErr != nil || (ct != contentProto && ct != contentJSON) {
			s.refuseHTTP(w, sig, false, refuse(refuseMediaType, "Content-Type %s: want %s or %s", strconv.Quote(req.Header.Get("Content-Type")), contentProto, contentJSON))
			return
		}
		res, r := s.exportHTTP(req, sig, isJSON)
		if r != nil {
			s.refuseHTTP(w, sig, isJSON, r)
			return
		}
		if isJSON {
			w.Header().Set("Content-Type", contentJSON)
		} else {
			w.Header().Set("Content-Type", contentProto)
		}
		s.m.requests.WithLabelValues(sig.String(), res.outcome()).Inc()
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(otlpwire.Response(sig, int64(res.Rejected), res.message(sig), isJSON))
	}
}

// exportHTTP reads, decodes and routes one OTLP/HTTP request within the size and memory
// limits.
func (s *Service) exportHTTP(req *http.Request, sig otlpwire.Signal, isJSON bool) (exportResult, *refusal) {
	if !s.mem.admit() {
		return exportResult{}, busy(retryBusy, "router memory limit (%d bytes) reached; retry later", s.mem.limit)
	}
	if req.ContentLength > int64(s.cfg.MaxRequestBytes) {
		return exportResult{}, refuse(refuseTooLarge, "request body is %d bytes, more than the %d allowed", req.ContentLength, s.cfg.MaxRequestBytes)
	}
	// Every byte read or decompressed is charged as it arrives: a request that does not
	// fit is refused with a retry delay, whatever its size claims.
	c := &charged{r: req.Body, m: s.mem}
	defer c.release()
	enc := req.Header.Get("Content-Encoding")
	raw := getBody()
	defer putBody(raw)
	err := readLimited(raw, c, s.cfg.MaxRequestBytes)
	if r := readRefusal(err, s.cfg.MaxRequestBytes, "is"); r != nil {
		return exportResult{}, r
	}
	if err != nil {
		return exportResult{}, refuse(refuseMalformed, "reading the request body: %v", err)
	}
	pb := raw.Bytes()
	if (enc != "" && enc != "identity") || isJSON {
		plain := getBody()
		defer putBody(plain)
		dc := &charged{m: s.mem}
		defer dc.release()
		var r *refusal
		wrap := func(rd io.Reader) io.Reader { dc.r = rd; return dc }
		if pb, r = decodeBody(plain, sig, enc, isJSON, raw.Bytes(), s.cfg.MaxDecompressedBytes, wrap); r != nil {
			return exportResult{}, r
		}
	}
	return s.export(req.Context(), sig, pb)
}

// refuseHTTP answers a refusal with its status code (Retry-After when busy, the auth
// challenge when unauthenticated, Allow for a wrong method) and a google.rpc.Status body
// in the request's encoding, and counts it.
func (s *Service) refuseHTTP(w http.ResponseWriter, sig otlpwire.Signal, isJSON bool, r *refusal) {
	code := http.StatusBadRequest
	switch r.kind {
	case refuseTooLarge:
		code = http.StatusRequestEntityTooLarge
	case refuseBusy:
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", retrySeconds(r.retryAfter))
	case refuseMediaType:
		code = http.StatusUnsupportedMediaType
	case refuseMethod:
		code = http.StatusMethodNotAllowed
		w.Header().Set("Allow", http.MethodPost)
	case refuseUnauthenticated:
		code = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Bearer realm="otlp"`)
	}
	s.m.requests.WithLabelValues(sig.String(), r.outcome()).Inc()
	grpcCode := rpcCodeFor(code)
	if isJSON {
		w.Header().Set("Content-Type", contentJSON)
		w.WriteHeader(code)
		m, _ := json.Marshal(r.msg)
		_, _ = w.Write([]byte(`{"code":` + strconv.Itoa(grpcCode) + `,"message":` + string(m) + `}`))
		return
	}
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(grpcCode))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, r.msg)
	w.Header().Set("Content-Type", contentProto)
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// rpcCodeFor is the google.rpc.Code of an HTTP error status.
func rpcCodeFor(httpCode int) int {
	switch httpCode {
	case http.StatusRequestEntityTooLarge:
		return 8 // RESOURCE_EXHAUSTED
	case http.StatusServiceUnavailable:
		return 14 // UNAVAILABLE
	case http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType:
		return 12 // UNIMPLEMENTED
	}
	return 3 // INVALID_ARGUMENT
}
