package otlpwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"
)

// testTraces builds a request of res resources, each with 2 scopes of perScope spans;
// every third span carries a trace state.
func testTraces(res, perScope int, seed uint64) ptrace.Traces {
	rng := rand.New(rand.NewPCG(seed, 1))
	td := ptrace.NewTraces()
	for r := 0; r < res; r++ {
		rs := td.ResourceSpans().AppendEmpty()
		rs.SetSchemaUrl(fmt.Sprintf("https://schema/%d", r))
		attrs := rs.Resource().Attributes()
		attrs.PutStr("host.name", fmt.Sprintf("host-%d", r))
		attrs.PutStr("service.name", fmt.Sprintf("svc-%d", r%3))
		attrs.PutInt("pid", int64(1000+r))
		for sc := 0; sc < 2; sc++ {
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(fmt.Sprintf("scope-%d-%d", r, sc))
			ss.Scope().SetVersion("1.0")
			for i := 0; i < perScope; i++ {
				sp := ss.Spans().AppendEmpty()
				var tid [16]byte
				binary.BigEndian.PutUint64(tid[:8], rng.Uint64())
				binary.BigEndian.PutUint64(tid[8:], rng.Uint64())
				sp.SetTraceID(tid)
				var sid [8]byte
				binary.BigEndian.PutUint64(sid[:], rng.Uint64()|1)
				sp.SetSpanID(sid)
				sp.SetName(fmt.Sprintf("op-%d", i%7))
				sp.SetKind(ptrace.SpanKindServer)
				sp.SetStartTimestamp(pcommon.Timestamp(1700000000000000000 + i))
				sp.SetEndTimestamp(pcommon.Timestamp(1700000000000100000 + i))
				sp.Attributes().PutStr("http.method", "GET")
				sp.Attributes().PutInt("http.status_code", 200)
				sp.Attributes().PutStr("http.url", fmt.Sprintf("/api/v1/items/%d", i))
				if i%3 == 0 {
					sp.TraceState().FromRaw(fmt.Sprintf("vendor=v%d", i))
				}
			}
		}
	}
	return td
}

func marshalTraces(t testing.TB, td ptrace.Traces) []byte {
	t.Helper()
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// spanWhere is a span's place in the original request.
type spanWhere struct {
	res, scope int
	ts         string
	name       string
}

// testRoute is a deterministic route function over 4 destinations that also drops,
// rejects and rewrites trace states.
func testRoute(it *Item) Verdict {
	switch it.TraceID[1] % 8 {
	case 0:
		return Verdict{Dest: DestSampled}
	case 1:
		return Verdict{Dest: DestRejected}
	case 2:
		return Verdict{Dest: int(it.TraceID[0] % 4), TraceState: []byte("ot=th:8,x=" + fmt.Sprint(it.TraceID[2]))}
	case 3:
		return Verdict{Dest: int(it.TraceID[0] % 4), TraceState: []byte{}} // erase
	}
	return Verdict{Dest: int(it.TraceID[0] % 4)}
}

func TestSplitTraces(t *testing.T) {
	td := testTraces(10, 26, 7)
	req := marshalTraces(t, td)

	want := map[pcommon.SpanID]spanWhere{}
	wantDest := map[pcommon.SpanID]int{}
	var total, sampled, rejected int
	for r := 0; r < td.ResourceSpans().Len(); r++ {
		rs := td.ResourceSpans().At(r)
		for sc := 0; sc < rs.ScopeSpans().Len(); sc++ {
			spans := rs.ScopeSpans().At(sc).Spans()
			for i := 0; i < spans.Len(); i++ {
				sp := spans.At(i)
				total++
				v := testRoute(&Item{TraceID: sp.TraceID()})
				switch v.Dest {
				case DestSampled:
					sampled++
					continue
				case DestRejected:
					rejected++
					continue
				}
				ts := sp.TraceState().AsRaw()
				if v.TraceState != nil {
					ts = string(v.TraceState)
				}
				want[sp.SpanID()] = spanWhere{res: r, scope: sc, ts: ts, name: sp.Name()}
				wantDest[sp.SpanID()] = v.Dest
			}
		}
	}

	var s Splitter
	for round := 0; round < 3; round++ { // the Splitter's buffers are reused
		var seen []Item
		res, err := s.Split(Traces, req, 4, func(it *Item) Verdict {
			seen = append(seen, *it)
			return testRoute(it)
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != total || res.Sampled != sampled || res.Rejected != rejected {
			t.Fatalf("counts: got %d/%d/%d, want %d/%d/%d", res.Total, res.Sampled, res.Rejected, total, sampled, rejected)
		}
		checkItems(t, td, seen)

		got := map[pcommon.SpanID]bool{}
		lastDest := -1
		for _, p := range res.Parts {
			if p.Dest <= lastDest {
				t.Fatalf("parts not in destination order: %d after %d", p.Dest, lastDest)
			}
			lastDest = p.Dest
			out, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(p.Payload)
			if err != nil {
				t.Fatalf("part %d does not decode: %v", p.Dest, err)
			}
			if out.SpanCount() != p.Items {
				t.Fatalf("part %d: Items %d, decoded %d spans", p.Dest, p.Items, out.SpanCount())
			}
			for r := 0; r < out.ResourceSpans().Len(); r++ {
				rs := out.ResourceSpans().At(r)
				for sc := 0; sc < rs.ScopeSpans().Len(); sc++ {
					ss := rs.ScopeSpans().At(sc)
					if ss.Spans().Len() == 0 {
						t.Fatalf("part %d: an empty scope was written", p.Dest)
					}
					for i := 0; i < ss.Spans().Len(); i++ {
						sp := ss.Spans().At(i)
						w, ok := want[sp.SpanID()]
						if !ok {
							t.Fatalf("part %d: span %v should not be there", p.Dest, sp.SpanID())
						}
						if got[sp.SpanID()] {
							t.Fatalf("span %v written twice", sp.SpanID())
						}
						got[sp.SpanID()] = true
						if wantDest[sp.SpanID()] != p.Dest {
							t.Fatalf("span %v in part %d, want %d", sp.SpanID(), p.Dest, wantDest[sp.SpanID()])
						}
						ors := td.ResourceSpans().At(w.res)
						if !rs.Resource().Attributes().Equal(ors.Resource().Attributes()) || rs.SchemaUrl() != ors.SchemaUrl() {
							t.Fatalf("span %v: resource not intact", sp.SpanID())
						}
						oss := ors.ScopeSpans().At(w.scope)
						if ss.Scope().Name() != oss.Scope().Name() || ss.Scope().Version() != oss.Scope().Version() {
							t.Fatalf("span %v: scope %q, want %q", sp.SpanID(), ss.Scope().Name(), oss.Scope().Name())
						}
						if sp.TraceState().AsRaw() != w.ts {
							t.Fatalf("span %v: trace state %q, want %q", sp.SpanID(), sp.TraceState().AsRaw(), w.ts)
						}
						if sp.Name() != w.name || sp.Attributes().Len() != 3 {
							t.Fatalf("span %v: body changed", sp.SpanID())
						}
					}
				}
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%d spans forwarded, want %d", len(got), len(want))
		}
		for i := range res.Parts {
			res.Parts[i].Release()
		}
	}
}

// checkItems checks the items route saw against the request.
func checkItems(t *testing.T, td ptrace.Traces, seen []Item) {
	t.Helper()
	k := 0
	for r := 0; r < td.ResourceSpans().Len(); r++ {
		rs := td.ResourceSpans().At(r)
		svc, _ := rs.Resource().Attributes().Get("service.name")
		for sc := 0; sc < rs.ScopeSpans().Len(); sc++ {
			spans := rs.ScopeSpans().At(sc).Spans()
			for i := 0; i < spans.Len(); i++ {
				sp := spans.At(i)
				it := seen[k]
				k++
				if it.Resource != r || string(it.Service) != svc.Str() || it.TraceID != [16]byte(sp.TraceID()) ||
					!it.HasTraceID || string(it.TraceState) != sp.TraceState().AsRaw() || it.Count != 1 {
					t.Fatalf("item %d: %+v does not match span %v of resource %d", k-1, it, sp.SpanID(), r)
				}
			}
		}
	}
	if k != len(seen) {
		t.Fatalf("route called %d times, want %d", len(seen), k)
	}
}

func TestSplitConcatenatedParts(t *testing.T) {
	req := marshalTraces(t, testTraces(4, 10, 3))
	var s Splitter
	res, err := s.Split(Traces, req, 4, func(it *Item) Verdict { return Verdict{Dest: int(it.TraceID[0] % 4)} })
	if err != nil {
		t.Fatal(err)
	}
	var batch []byte
	for _, p := range res.Parts {
		batch = append(batch, p.Payload...)
	}
	out, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(batch)
	if err != nil {
		t.Fatal(err)
	}
	if out.SpanCount() != res.Total {
		t.Fatalf("batch holds %d spans, want %d", out.SpanCount(), res.Total)
	}
}

func TestSplitKeepsUnknownFields(t *testing.T) {
	var kv, res, scope, span, ss, rs, req []byte
	kv = protowire.AppendTag(kv, 1, protowire.BytesType)
	kv = protowire.AppendString(kv, "service.name")
	kv = protowire.AppendTag(kv, 2, protowire.BytesType)
	kv = protowire.AppendBytes(kv, protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "checkout"))
	res = protowire.AppendTag(res, 1, protowire.BytesType)
	res = protowire.AppendBytes(res, kv)
	res = protowire.AppendTag(res, 77, protowire.VarintType) // unknown in Resource
	res = protowire.AppendVarint(res, 5)
	scope = protowire.AppendTag(scope, 1, protowire.BytesType)
	scope = protowire.AppendString(scope, "lib")
	span = protowire.AppendTag(span, 1, protowire.BytesType)
	span = protowire.AppendBytes(span, []byte("0123456789abcdef"))
	span = protowire.AppendTag(span, 3, protowire.BytesType)
	span = protowire.AppendString(span, "a=1")
	span = protowire.AppendTag(span, 5, protowire.BytesType)
	span = protowire.AppendString(span, "name")
	ss = protowire.AppendTag(ss, 1, protowire.BytesType)
	ss = protowire.AppendBytes(ss, scope)
	ss = protowire.AppendTag(ss, 99, protowire.BytesType) // unknown in ScopeSpans
	ss = protowire.AppendString(ss, "keep me")
	ss = protowire.AppendTag(ss, 2, protowire.BytesType)
	ss = protowire.AppendBytes(ss, span)
	rs = protowire.AppendTag(rs, 1, protowire.BytesType)
	rs = protowire.AppendBytes(rs, res)
	rs = protowire.AppendTag(rs, 88, protowire.Fixed32Type) // unknown in ResourceSpans
	rs = protowire.AppendFixed32(rs, 42)
	rs = protowire.AppendTag(rs, 2, protowire.BytesType)
	rs = protowire.AppendBytes(rs, ss)
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendBytes(req, rs)

	var s Splitter
	out, err := s.Split(Traces, req, 1, func(it *Item) Verdict {
		if string(it.Service) != "checkout" || string(it.TraceState) != "a=1" {
			t.Errorf("item %+v", it)
		}
		return Verdict{Dest: 0}
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Parts[0].Payload) != string(req) {
		t.Fatalf("unchanged single-destination split differs from its input:\n%x\n%x", out.Parts[0].Payload, req)
	}
	out, err = s.Split(Traces, req, 1, func(*Item) Verdict { return Verdict{Dest: 0, TraceState: []byte("ot=th:c")} })
	if err != nil {
		t.Fatal(err)
	}
	p := out.Parts[0].Payload
	for _, frag := range [][]byte{res, scope, []byte("keep me"), {0xc5, 0x05, 42, 0, 0, 0}} {
		if !strings.Contains(string(p), string(frag)) {
			t.Fatalf("output lost %x", frag)
		}
	}
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).TraceState().AsRaw(); got != "ot=th:c" {
		t.Fatalf("trace state %q", got)
	}
}

func TestSplitMalformed(t *testing.T) {
	good := marshalTraces(t, testTraces(2, 3, 1))
	badID := ptrace.NewTraces()
	badID.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("x")
	shortID := marshalTraces(t, badID)
	// Splice a 3-byte trace_id into the only span.
	shortID = replaceSpan(t, shortID, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{1, 2, 3}))

	for name, tc := range map[string]struct {
		req  []byte
		want string
	}{
		"truncated":       {good[:len(good)-3], "request (after resource_spans[0]): offset"},
		"bad tag":         {[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "request"},
		"short trace id":  {shortID, "resource_spans[0].scope_spans[0].spans[0]: trace_id is 3 bytes, want 16"},
		"wrong wire type": {[]byte{0x08, 0x01}, "request: resource_spans[0]: resource_spans has wire type 0"},
	} {
		t.Run(name, func(t *testing.T) {
			var s Splitter
			res, err := s.Split(Traces, tc.req, 2, func(*Item) Verdict { return Verdict{Dest: 0} })
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %q does not say %q", err, tc.want)
			}
			if len(res.Parts) != 0 {
				t.Fatal("parts returned with an error")
			}
		})
	}
}

// replaceSpan rewrites the first span of a one-span request to the given content.
func replaceSpan(t *testing.T, req, span []byte) []byte {
	t.Helper()
	ss := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), span)
	rs := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), ss)
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), rs)
}

func TestSplitBadDestination(t *testing.T) {
	req := marshalTraces(t, testTraces(1, 1, 1))
	var s Splitter
	_, err := s.Split(Traces, req, 2, func(*Item) Verdict { return Verdict{Dest: 2} })
	if err == nil || errors.Is(err, ErrMalformed) {
		t.Fatalf("err %v, want a destination error", err)
	}
}

func TestSplitErrorBeforeFirstResource(t *testing.T) {
	var s Splitter
	_, err := s.Split(Traces, []byte{0x0a, 0x05, 0x01}, 1, func(*Item) Verdict { return Verdict{} })
	if err == nil || !strings.Contains(err.Error(), "request (before resource_spans[0]): offset 0") {
		t.Fatalf("err = %v, want it to name the place before resource_spans[0]", err)
	}
}
