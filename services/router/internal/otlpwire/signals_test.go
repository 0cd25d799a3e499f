package otlpwire

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

func testLogs() plog.Logs {
	ld := plog.NewLogs()
	for r := 0; r < 4; r++ {
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("service.name", fmt.Sprintf("svc-%d", r))
		for sc := 0; sc < 2; sc++ {
			sl := rl.ScopeLogs().AppendEmpty()
			sl.Scope().SetName(fmt.Sprintf("scope-%d-%d", r, sc))
			for i := 0; i < 9; i++ {
				lr := sl.LogRecords().AppendEmpty()
				lr.Body().SetStr(fmt.Sprintf("r%d s%d l%d", r, sc, i))
				if i%3 != 0 {
					lr.SetTraceID(pcommon.TraceID{byte(i), byte(r), byte(sc), 9: 1})
				}
			}
		}
	}
	return ld
}

func TestSplitLogs(t *testing.T) {
	ld := testLogs()
	req, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	if err != nil {
		t.Fatal(err)
	}
	route := func(it *Item) Verdict {
		if !it.HasTraceID {
			return Verdict{Dest: len(it.Service) % 3} // by service
		}
		return Verdict{Dest: int(it.TraceID[0] % 3)}
	}
	var s Splitter
	var withID, without int
	res, err := s.Split(Logs, req, 3, func(it *Item) Verdict {
		if it.HasTraceID {
			withID++
		} else {
			without++
		}
		if it.TraceState != nil || it.Count != 1 {
			t.Errorf("log item %+v", it)
		}
		return route(it)
	})
	if err != nil {
		t.Fatal(err)
	}
	if withID != 48 || without != 24 || res.Total != 72 {
		t.Fatalf("with trace ID %d, without %d, total %d", withID, without, res.Total)
	}
	seen := map[string]bool{}
	for _, p := range res.Parts {
		out, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if out.LogRecordCount() != p.Items {
			t.Fatalf("part %d: %d records, Items %d", p.Dest, out.LogRecordCount(), p.Items)
		}
		for r := 0; r < out.ResourceLogs().Len(); r++ {
			rl := out.ResourceLogs().At(r)
			svc, _ := rl.Resource().Attributes().Get("service.name")
			for sc := 0; sc < rl.ScopeLogs().Len(); sc++ {
				sl := rl.ScopeLogs().At(sc)
				for i := 0; i < sl.LogRecords().Len(); i++ {
					body := sl.LogRecords().At(i).Body().Str()
					var ri, si, li int
					if _, err := fmt.Sscanf(body, "r%d s%d l%d", &ri, &si, &li); err != nil {
						t.Fatal(err)
					}
					if svc.Str() != fmt.Sprintf("svc-%d", ri) || sl.Scope().Name() != fmt.Sprintf("scope-%d-%d", ri, si) {
						t.Fatalf("record %q under %s / %s", body, svc.Str(), sl.Scope().Name())
					}
					if seen[body] {
						t.Fatalf("record %q twice", body)
					}
					seen[body] = true
				}
			}
		}
	}
	if len(seen) != 72 {
		t.Fatalf("%d records forwarded, want 72", len(seen))
	}
}

// testMetrics builds 5 resources, each with one metric of each data type; resource r
// has r+1 data points per metric.
func testMetrics() (pmetric.Metrics, []int) {
	md := pmetric.NewMetrics()
	var points []int
	for r := 0; r < 5; r++ {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", fmt.Sprintf("svc-%d", r))
		sm := rm.ScopeMetrics().AppendEmpty()
		sm.Scope().SetName("meter")
		n := r + 1
		m := sm.Metrics().AppendEmpty()
		m.SetName("g")
		g := m.SetEmptyGauge()
		for i := 0; i < n; i++ {
			g.DataPoints().AppendEmpty().SetIntValue(int64(i))
		}
		m = sm.Metrics().AppendEmpty()
		m.SetName("s")
		sum := m.SetEmptySum()
		for i := 0; i < n; i++ {
			sum.DataPoints().AppendEmpty().SetDoubleValue(float64(i))
		}
		m = sm.Metrics().AppendEmpty()
		m.SetName("h")
		h := m.SetEmptyHistogram()
		for i := 0; i < n; i++ {
			h.DataPoints().AppendEmpty().SetCount(uint64(i))
		}
		m = sm.Metrics().AppendEmpty()
		m.SetName("e")
		e := m.SetEmptyExponentialHistogram()
		for i := 0; i < n; i++ {
			e.DataPoints().AppendEmpty().SetCount(uint64(i))
		}
		m = sm.Metrics().AppendEmpty()
		m.SetName("q")
		q := m.SetEmptySummary()
		for i := 0; i < n; i++ {
			q.DataPoints().AppendEmpty().SetCount(uint64(i))
		}
		points = append(points, 5*n)
	}
	return md, points
}

func TestSplitMetrics(t *testing.T) {
	md, points := testMetrics()
	req, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	var s Splitter
	res, err := s.Split(Metrics, req, 2, func(it *Item) Verdict {
		if it.HasTraceID || it.Count != points[it.Resource] || string(it.Service) != fmt.Sprintf("svc-%d", it.Resource) {
			t.Errorf("metrics item %+v, want %d points", it, points[it.Resource])
		}
		if it.Resource == 4 {
			return Verdict{Dest: DestRejected}
		}
		return Verdict{Dest: it.Resource % 2}
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != md.DataPointCount() || res.Rejected != points[4] {
		t.Fatalf("total %d rejected %d, want %d and %d", res.Total, res.Rejected, md.DataPointCount(), points[4])
	}
	for _, p := range res.Parts {
		out, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if out.DataPointCount() != p.Items {
			t.Fatalf("part %d: %d points, Items %d", p.Dest, out.DataPointCount(), p.Items)
		}
		for r := 0; r < out.ResourceMetrics().Len(); r++ {
			rm := out.ResourceMetrics().At(r)
			svc, _ := rm.Resource().Attributes().Get("service.name")
			var ri int
			fmt.Sscanf(svc.Str(), "svc-%d", &ri)
			if ri%2 != p.Dest || ri == 4 {
				t.Fatalf("resource %s in part %d", svc.Str(), p.Dest)
			}
			if rm.ScopeMetrics().At(0).Metrics().Len() != 5 {
				t.Fatalf("resource %s lost metrics", svc.Str())
			}
		}
	}
}

func TestJSONToProto(t *testing.T) {
	td := testTraces(2, 3, 5)
	js, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := JSONToProto(Traces, js)
	if err != nil {
		t.Fatal(err)
	}
	back, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(pb)
	if err != nil {
		t.Fatal(err)
	}
	if back.SpanCount() != td.SpanCount() {
		t.Fatalf("%d spans, want %d", back.SpanCount(), td.SpanCount())
	}
	ld := testLogs()
	js, _ = (&plog.JSONMarshaler{}).MarshalLogs(ld)
	if pb, err = JSONToProto(Logs, js); err != nil {
		t.Fatal(err)
	}
	if l, _ := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(pb); l.LogRecordCount() != ld.LogRecordCount() {
		t.Fatal("logs lost in conversion")
	}
	md, _ := testMetrics()
	js, _ = (&pmetric.JSONMarshaler{}).MarshalMetrics(md)
	if pb, err = JSONToProto(Metrics, js); err != nil {
		t.Fatal(err)
	}
	if m, _ := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(pb); m.DataPointCount() != md.DataPointCount() {
		t.Fatal("metrics lost in conversion")
	}

	for _, bad := range []string{`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}`, `{`, `[1,2]`} {
		_, err := JSONToProto(Traces, []byte(bad))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "traces JSON") {
			t.Fatalf("%s: err %v", bad, err)
		}
	}
}

func TestResponse(t *testing.T) {
	if b := Response(Traces, 0, "", false); len(b) != 0 {
		t.Fatalf("empty traces response is %x", b)
	}
	for _, js := range []bool{false, true} {
		tr := ptraceotlp.NewExportResponse()
		lr := plogotlp.NewExportResponse()
		mr := pmetricotlp.NewExportResponse()
		unmarshal := func(b []byte, m interface {
			UnmarshalProto([]byte) error
			UnmarshalJSON([]byte) error
		}) {
			t.Helper()
			var err error
			if js {
				err = m.UnmarshalJSON(b)
			} else {
				err = m.UnmarshalProto(b)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		unmarshal(Response(Traces, 7, "rate limited", js), &tr)
		unmarshal(Response(Logs, 8, "rate limited", js), &lr)
		unmarshal(Response(Metrics, 9, "rate limited", js), &mr)
		if tr.PartialSuccess().RejectedSpans() != 7 || tr.PartialSuccess().ErrorMessage() != "rate limited" ||
			lr.PartialSuccess().RejectedLogRecords() != 8 || mr.PartialSuccess().RejectedDataPoints() != 9 {
			t.Fatalf("json=%v: partial success not read back", js)
		}
	}
	if string(Response(Logs, 0, "", true)) != "{}" {
		t.Fatalf("empty JSON response %q", Response(Logs, 0, "", true))
	}
}
