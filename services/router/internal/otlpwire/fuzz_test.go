package otlpwire

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// fuzzItem is what the fuzz targets compare of an item.
type fuzzItem struct {
	service, traceState string
	traceID             [16]byte
	hasID               bool
	count               int
}

// resplit splits req over 3 destinations (sampling some items out and rewriting some
// trace states), then splits the concatenation of the parts again, and fails unless
// the second split sees exactly the items the first forwarded.
func resplit(t *testing.T, sig Signal, req []byte) error {
	var s Splitter
	var kept []fuzzItem
	res, err := s.Split(sig, req, 3, func(it *Item) Verdict {
		if it.Count < 0 {
			t.Fatalf("negative count %d", it.Count)
		}
		if it.TraceID[0]%5 == 4 {
			return Verdict{Dest: DestSampled}
		}
		v := Verdict{Dest: int(it.TraceID[0] % 3)}
		fi := fuzzItem{string(it.Service), string(it.TraceState), it.TraceID, it.HasTraceID, it.Count}
		if sig == Traces && it.TraceID[1]%2 == 1 {
			v.TraceState = []byte(fmt.Sprintf("ot=th:%x", it.TraceID[2]))
			fi.traceState = string(v.TraceState)
		}
		kept = append(kept, fi)
		return v
	})
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error not wrapping ErrMalformed: %v", err)
		}
		return err
	}
	var batch []byte
	sum := 0
	for _, p := range res.Parts {
		batch = append(batch, p.Payload...)
		sum += p.Items
	}
	if sum+res.Sampled != res.Total {
		t.Fatalf("parts hold %d items + %d sampled, total %d", sum, res.Sampled, res.Total)
	}
	var again []fuzzItem
	var s2 Splitter
	if _, err := s2.Split(sig, batch, 1, func(it *Item) Verdict {
		again = append(again, fuzzItem{string(it.Service), string(it.TraceState), it.TraceID, it.HasTraceID, it.Count})
		return Verdict{Dest: 0}
	}); err != nil {
		t.Fatalf("re-split of accepted %s input failed: %v", sig, err)
	}
	cmp := func(a, b fuzzItem) int {
		return cmpStrings(fmt.Sprint(a), fmt.Sprint(b))
	}
	slices.SortFunc(kept, cmp)
	slices.SortFunc(again, cmp)
	if !slices.Equal(kept, again) {
		t.Fatalf("re-split items differ:\n%v\n%v", kept, again)
	}
	return nil
}

func cmpStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func FuzzSplit(f *testing.F) {
	f.Add(uint8(Traces), marshalTraces(f, testTraces(2, 3, 1)))
	lb, _ := (&plog.ProtoMarshaler{}).MarshalLogs(testLogs())
	f.Add(uint8(Logs), lb)
	md, _ := testMetrics()
	mb, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	f.Add(uint8(Metrics), mb)
	f.Add(uint8(Traces), []byte{0x0a, 0x02, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, sig uint8, req []byte) {
		resplit(t, Signal(sig%3+1), req)
	})
}

func FuzzJSONToProto(f *testing.F) {
	tj, _ := (&ptrace.JSONMarshaler{}).MarshalTraces(testTraces(1, 2, 1))
	f.Add(uint8(Traces), tj)
	lj, _ := (&plog.JSONMarshaler{}).MarshalLogs(testLogs())
	f.Add(uint8(Logs), lj)
	md, _ := testMetrics()
	mj, _ := (&pmetric.JSONMarshaler{}).MarshalMetrics(md)
	f.Add(uint8(Metrics), mj)
	f.Add(uint8(Traces), []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","traceState":"ot=th:8"}]}]}]}`))
	f.Fuzz(func(t *testing.T, sig uint8, body []byte) {
		s := Signal(sig%3 + 1)
		pb, err := JSONToProto(s, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		if err := resplit(t, s, pb); err != nil {
			t.Fatalf("proto made from accepted JSON does not split: %v", err)
		}
	})
}
