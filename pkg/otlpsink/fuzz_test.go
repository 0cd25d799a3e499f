package otlpsink

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// FuzzHTTPTraces feeds arbitrary bodies, content types and encodings to the OTLP/HTTP
// traces path: every answer is 200 with the spans counted, or a 4xx that counts nothing.
func FuzzHTTPTraces(f *testing.F) {
	pb, _ := ptraceotlp.NewExportRequestFromTraces(traces("svc", 0, 2, 1)).MarshalProto()
	js, _ := ptraceotlp.NewExportRequestFromTraces(traces("svc", 0, 1)).MarshalJSON()
	f.Add(pb, false, "")
	f.Add(js, true, "")
	f.Add(gzipped(f, pb), false, "gzip")
	f.Add(zstded(f, js), true, "zstd")
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0x0f}, false, "")
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}`), true, "")
	cfg := DefaultConfig()
	cfg.MaxRequestBytes = 64 << 10
	s, err := New(cfg, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	h := s.otlpHTTP()
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool, enc string) {
		ct := ctProtobuf
		if isJSON {
			ct = ctJSON
		}
		before := s.Stats().Spans
		req := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Content-Encoding", enc)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		after := s.Stats().Spans
		switch rec.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			if after != before {
				t.Fatalf("refused with %d but counted %d spans", rec.Code, after-before)
			}
			if rec.Body.Len() == 0 {
				t.Fatalf("refused with %d without saying why", rec.Code)
			}
		default:
			t.Fatalf("status %d for %d bytes (%s, %q)", rec.Code, len(body), ct, enc)
		}
	})
}
