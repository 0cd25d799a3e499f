package topologysvc

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/otelfleet/otelfleet/pkg/events"
)

func validReportJSON(t testing.TB, region, id string) []byte {
	t.Helper()
	r := report(region, id, 100)
	r.At = time.Now().UTC()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// withField returns valid report JSON for eu/c1 with field set to the raw JSON value.
func withField(t testing.TB, field, raw string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(validReportJSON(t, "eu", "c1"), &m); err != nil {
		t.Fatal(err)
	}
	if raw == "" {
		delete(m, field)
	} else {
		m[field] = json.RawMessage(raw)
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// malformedLoads are load messages that must be rejected, with their reason; the e2e
// test publishes them too.
func malformedLoads(t testing.TB) []struct {
	name, subject string
	header        nats.Header
	data          []byte
	reason        string
} {
	ok := "otlp.load.eu.c1"
	// withRaw replaces the JSON text of a field verbatim (for literals json.Marshal
	// refuses to produce).
	withRaw := func(field, raw string) []byte {
		data := string(withField(t, field, "12345"))
		return []byte(strings.Replace(data, `"`+field+`":12345`, `"`+field+`":`+raw, 1))
	}
	return []struct {
		name, subject string
		header        nats.Header
		data          []byte
		reason        string
	}{
		{"garbage", ok, nil, []byte("\x00\x01garbage{"), RejectJSON},
		{"empty", ok, nil, nil, RejectJSON},
		{"JSON array", ok, nil, []byte(`[1,2,3]`), RejectJSON},
		{"wrong type", ok, nil, withField(t, "qps", `"lots"`), RejectJSON},
		{"NaN literal", ok, nil, withRaw("qps", "NaN"), RejectJSON},
		{"number out of float range", ok, nil, withRaw("qps", "1e400"), RejectJSON},
		{"missing v", ok, nil, withField(t, "v", ""), RejectVersion},
		{"future v", ok, nil, withField(t, "v", "99"), RejectVersion},
		{"v zero", ok, nil, withField(t, "v", "0"), RejectVersion},
		{"huge qps", ok, nil, withField(t, "qps", "1e15"), RejectInvalid},
		{"negative qps", ok, nil, withField(t, "qps", "-5"), RejectInvalid},
		{"cpu above 1", ok, nil, withField(t, "cpu", "7"), RejectInvalid},
		{"negative capacity", ok, nil, withField(t, "capacity", "-1"), RejectInvalid},
		{"error rate above 1", ok, nil, withField(t, "error_rate", "1.5"), RejectInvalid},
		{"missing timestamp", ok, nil, withField(t, "at", ""), RejectInvalid},
		{"bad region token in the payload", ok, nil, withField(t, "region", `"eu west"`), RejectInvalid},
		{"payload region differs from the subject", ok, nil, withField(t, "region", `"us"`), RejectSubject},
		{"payload collector differs from the subject", ok, nil, withField(t, "collector", `"c2"`), RejectSubject},
		{"bad region token in the subject", "otlp.load.eu#1.c1", nil, validReportJSON(t, "eu", "c1"), RejectSubject},
		{"too many subject tokens", "otlp.load.eu.c1.x", nil, validReportJSON(t, "eu", "c1"), RejectSubject},
		{"other root", "other.load.eu.c1", nil, validReportJSON(t, "eu", "c1"), RejectSubject},
		{"wrong ce-type", ok, nats.Header{events.HeaderType: []string{"io.otelfleet.config.changed.v1"}}, validReportJSON(t, "eu", "c1"), RejectInvalid},
	}
}

func TestDecodeLoad(t *testing.T) {
	r, reason, err := DecodeLoad(events.Default, "otlp.load.eu.c1", nil, validReportJSON(t, "eu", "c1"))
	if err != nil || reason != "" || r.Region != "eu" || r.Collector != "c1" || r.QPS != 100 {
		t.Fatalf("valid report: %+v, %q, %v", r, reason, err)
	}
	for _, tt := range malformedLoads(t) {
		t.Run(tt.name, func(t *testing.T) {
			_, reason, err := DecodeLoad(events.Default, tt.subject, tt.header, tt.data)
			if err == nil {
				t.Fatal("accepted")
			}
			if reason != tt.reason {
				t.Fatalf("reason = %q, want %q (err: %v)", reason, tt.reason, err)
			}
		})
	}
}
