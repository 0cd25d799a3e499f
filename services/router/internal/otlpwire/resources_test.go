package otlpwire

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// tracesWith encodes one request with a resource per entry of attrs: nil means no
// "otelfleet.component" attribute, else its value.
func tracesWith(t testing.TB, attrs ...*string) []byte {
	td := ptrace.NewTraces()
	for _, a := range attrs {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "svc")
		if a != nil {
			rs.Resource().Attributes().PutStr("otelfleet.component", *a)
		}
		rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("s")
	}
	return marshalTraces(t, td)
}

func TestEveryResourceHas(t *testing.T) {
	own, router := "config", "router"
	both := append(tracesWith(t, &own), tracesWith(t, &router)...)
	mixed := append(tracesWith(t, &own), tracesWith(t, nil)...)
	for name, tc := range map[string]struct {
		req  []byte
		want bool
	}{
		"one own resource":          {tracesWith(t, &own), true},
		"own resources in one req":  {tracesWith(t, &own, &router), true},
		"concatenated own requests": {both, true},
		"one resource without":      {tracesWith(t, &own, nil), false},
		"concatenated, one without": {mixed, false},
		"no attribute":              {tracesWith(t, nil), false},
		"empty request":             {nil, false},
		"malformed":                 {[]byte{0x0a, 0x05, 0x01}, false},
		"attribute not a string":    {nonString(t), false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := EveryResourceHas(Traces, tc.req, "otelfleet.component"); got != tc.want {
				t.Fatalf("EveryResourceHas = %v, want %v", got, tc.want)
			}
		})
	}
}

func nonString(t testing.TB) []byte {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutBool("otelfleet.component", true)
	rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("s")
	return marshalTraces(t, td)
}

func FuzzEveryResourceHas(f *testing.F) {
	own := "x"
	f.Add(tracesWith(f, &own))
	f.Add(tracesWith(f, &own, nil))
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, req []byte) {
		got := EveryResourceHas(Traces, req, "otelfleet.component")
		if got && len(req) == 0 {
			t.Fatal("true for an empty request")
		}
		// A request whose every resource has it still has it twice over.
		if got && !EveryResourceHas(Traces, append(append([]byte{}, req...), req...), "otelfleet.component") {
			t.Fatal("concatenation changed the answer")
		}
	})
}
