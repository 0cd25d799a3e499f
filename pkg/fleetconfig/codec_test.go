package fleetconfig

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

const examplePath = "../../examples/global-config.yaml"

func readExample(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestExampleFileEqualsDefaults(t *testing.T) {
	f, err := LoadFile(readExample(t))
	if err != nil {
		t.Fatalf("LoadFile(%s): %v", examplePath, err)
	}
	if want := Defaults(); !reflect.DeepEqual(f, want) {
		t.Fatalf("example file decodes to\n%#v\nwant Defaults()\n%#v", f, want)
	}
}

// TestExampleRegionsBlock uncomments the example's regions block and checks
// that it is valid, so the commented example cannot rot.
func TestExampleRegionsBlock(t *testing.T) {
	text := string(readExample(t))
	start := strings.Index(text, "# regions:")
	if start < 0 {
		t.Fatal("example has no commented regions block")
	}
	var b strings.Builder
	b.WriteString(text[:start])
	for line := range strings.Lines(text[start:]) {
		b.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "#"), " "))
	}
	f, err := LoadFile([]byte(b.String()))
	if err != nil {
		t.Fatalf("example with regions: %v\n%s", err, b.String())
	}
	want := DefaultRegion()
	want.RegionalSamplingRate = 0.5
	want.LocalRoutingPreference = []string{"eu-west", "eu-central"}
	if got := f.Regions["eu-west"]; !reflect.DeepEqual(got, want) || len(f.Regions) != 1 {
		t.Fatalf("regions = %#v, want eu-west: %#v", f.Regions, want)
	}
}

func TestParseYAMLRejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // substring of the error
	}{
		{"empty input", "", "empty input"},
		{"only comments", "# nothing\n\n", "empty input"},
		{"empty document", "---\n", "empty document"},
		{"null document", "~\n", "empty document"},
		{"not a mapping", "- a\n- b\n", `line 1: expected a mapping with a "global" key`},
		{"two documents", "global: {}\n---\nglobal: {}\n", "more than one YAML document"},
		{"syntax error", "global:\n\tsampling_rate: 1\n", "line 2: found character that cannot start any token"},
		{"garbage bytes", "\x00\xff\xfe{]:\x01", "cannot decode config"},
		{"unknown top-level field", "global: {}\nglobl: {}\n", "line 2: field globl not found in type fleetconfig.File"},
		{"unknown nested field", "global:\n  sampling_strategies:\n    - type: fixed\n      rat: 0.5\n",
			"line 4: field rat not found in type fleetconfig.Strategy"},
		{"unknown region field", "global: {}\nregions:\n  eu-west:\n    buffer: 10\n", "line 4: field buffer not found in type fleetconfig.Region"},
		{"unknown strategy type", "global:\n  sampling_strategies:\n    - type: random\n",
			`line 3: unknown sampling strategy type "random"; known types: fixed, adaptive, priority_based, cost_based`},
		{"wrong type", "global:\n  sampling_rate: high\n", "line 2: cannot unmarshal !!str `high` into float64"},
		{"wrong type for list", "global:\n  routing_rules: {service: a}\n", "line 2: cannot unmarshal !!map into []fleetconfig.RoutingRule"},
		{"bare-number duration", "global: {}\nregions:\n  eu:\n    batch: {max_wait_time: 200}\n",
			`line 4: bare number 200 is not a duration: write a Go duration with a unit, e.g. "200ms" or "5s"`},
		{"duration without unit in quotes", "global: {}\nregions:\n  eu:\n    batch: {max_wait_time: \"200\"}\n",
			`line 4: "200" is not a duration`},
		{"duration as a list", "global: {}\nregions:\n  eu:\n    retry: {max_backoff: [1s]}\n", "line 4: expected a duration"},
		{"duplicate key", "global:\n  sampling_rate: 0.1\n  sampling_rate: 0.2\n", "line 3"},
		{"several type errors at once", "global:\n  sampling_rate: x\n  rate_limiting: {burst_size: y}\n", "line 2: cannot unmarshal !!str `x` into float64; line 3: cannot unmarshal !!str `y` into int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseYAML([]byte(tt.in))
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("ParseYAML error = %v, want ErrDecode", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			if !reflect.DeepEqual(f, File{}) {
				t.Errorf("File = %#v on error, want zero", f)
			}
			if _, err := LoadFile([]byte(tt.in)); !errors.Is(err, ErrDecode) || errors.Is(err, ErrInvalid) {
				t.Errorf("LoadFile error = %v, want ErrDecode only", err)
			}
		})
	}
}

func TestParseYAMLDoesNotValidate(t *testing.T) {
	f, err := ParseYAML([]byte("global:\n  sampling_rate: 7\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Global.SamplingRate != 7 || !f.Global.Degradation.KeepHighPriority {
		t.Errorf("Global = %+v, want sampling_rate 7 and keep_high_priority defaulted to true", f.Global)
	}
	if _, err := LoadFile([]byte("global:\n  sampling_rate: 7\n")); !errors.Is(err, ErrInvalid) {
		t.Errorf("LoadFile error = %v, want ErrInvalid", err)
	}
}

func TestParseYAMLKeepHighPriority(t *testing.T) {
	f, err := ParseYAML([]byte("global:\n  degradation: {keep_high_priority: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Global.Degradation.KeepHighPriority {
		t.Error("explicit keep_high_priority: false decoded as true")
	}
}

func TestParseYAMLStoredFields(t *testing.T) {
	in := "global:\n  version: 3\n  updated_at: 2025-01-02T03:04:05Z\n  updated_by: alice\n" +
		"regions:\n  eu:\n    version: 4\n    updated_by: bob\n"
	f, err := ParseYAML([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	g := f.Global
	if g.Version != 3 || g.UpdatedBy != "alice" || !g.UpdatedAt.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("stored fields = %d %v %q", g.Version, g.UpdatedAt, g.UpdatedBy)
	}
	if r := f.Regions["eu"]; r.Version != 4 || r.UpdatedBy != "bob" {
		t.Errorf("region stored fields = %d %q", r.Version, r.UpdatedBy)
	}
}

func TestDecodeJSONRejects(t *testing.T) {
	tests := []struct {
		name   string
		region bool
		in     string
		want   string
	}{
		{"empty input", false, "", "empty input"},
		{"whitespace", false, " \n\t", "empty input"},
		{"null", false, "null", "expected a JSON object"},
		{"array", false, "[]", "expected a JSON object"},
		{"garbage bytes", false, "\x00\xff\xfe", "expected a JSON object"},
		{"truncated", false, `{"sampling_rate": 0.1`, "unexpected end of input"},
		{"syntax error", false, `{"sampling_rate": 0.1,}`, "offset 23: invalid character '}'"},
		{"trailing data", false, `{"sampling_rate": 0.1} {}`, "offset 24: unexpected data after the JSON object"},
		{"unknown field", false, `{"sampling_rate": 0.1, "sampling": 1}`, `unknown field "sampling"`},
		{"unknown nested field", false, `{"degradation": {"enabled": true, "treshold": 1}}`, `unknown field "treshold"`},
		{"unknown strategy type", false, `{"sampling_strategies": [{"type": "random"}]}`,
			`unknown sampling strategy type "random"; known types: fixed, adaptive, priority_based, cost_based`},
		{"strategy type not a string", false, `{"sampling_strategies": [{"type": 3}]}`,
			"sampling_strategies.type: cannot use number 3 as fleetconfig.StrategyType"},
		{"wrong type", false, `{"sampling_rate": "high"}`, "offset 24: sampling_rate: cannot use string as float64"},
		{"wrong nested type", false, `{"rate_limiting": {"burst_size": 1.5}}`, "rate_limiting.burst_size: cannot use number 1.5 as int"},
		{"region unknown field", true, `{"buffer": 1}`, `unknown field "buffer"`},
		{"region bare-number duration", true, `{"batch": {"max_wait_time": 200}}`,
			`batch.max_wait_time: cannot use number 200 (write a Go duration with a unit, e.g. "200ms" or "5s") as fleetconfig.Duration`},
		{"region bad duration string", true, `{"retry": {"max_backoff": "5 s"}}`, `retry.max_backoff: cannot use string "5 s"`},
		{"region wrong type", true, `{"buffer_size": "big"}`, "buffer_size: cannot use string as int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			var zero bool
			if tt.region {
				var r Region
				r, err = DecodeRegionJSON([]byte(tt.in))
				zero = reflect.DeepEqual(r, Region{})
			} else {
				var g Global
				g, err = DecodeGlobalJSON([]byte(tt.in))
				zero = reflect.DeepEqual(g, Global{})
			}
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error = %v, want ErrDecode", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			if !zero {
				t.Error("value not zero on error")
			}
		})
	}
}

// fullGlobal sets every field of Global, including the stored-only ones.
func fullGlobal() Global {
	g := Defaults().Global
	g.SamplingStrategies = append(g.SamplingStrategies,
		Strategy{Type: StrategyFixed, Rate: new(0.25)},
		Strategy{Type: StrategyCostBased, BudgetPerHour: new(12.5), CostPerSpan: new(0.0001)})
	g.Metadata = map[string]string{"owner": "sre", "note": "a: b # c"}
	g.Version = 42
	g.UpdatedAt = time.Date(2025, 6, 7, 8, 9, 10, 11, time.UTC)
	g.UpdatedBy = "alice"
	return g
}

func fullRegion() Region {
	r := DefaultRegion()
	r.LocalRoutingPreference = []string{"eu-west", "eu-central"}
	r.Version = 2
	r.UpdatedAt = time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
	r.UpdatedBy = "bob"
	return r
}

func TestGlobalJSONRoundTrip(t *testing.T) {
	for name, g := range map[string]Global{"full": fullGlobal(), "defaults": Defaults().Global, "zero": {}} {
		t.Run(name, func(t *testing.T) {
			data, err := json.Marshal(g)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeGlobalJSON(data)
			if err != nil {
				t.Fatalf("DecodeGlobalJSON(%s): %v", data, err)
			}
			if !reflect.DeepEqual(got, g) {
				t.Fatalf("round trip of %s:\n%#v\nwant\n%#v", data, got, g)
			}
		})
	}
}

func TestRegionJSONRoundTrip(t *testing.T) {
	r := fullRegion()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRegionJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip of %s:\n%#v\nwant\n%#v", data, got, r)
	}
}

func TestJSONFieldNames(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"adaptive strategy omits other types' fields", Defaults().Global.SamplingStrategies[0],
			`{"type":"adaptive","min_rate":0.01,"max_rate":0.5,"target_qps":100000}`},
		{"fixed strategy with zero rate", Strategy{Type: StrategyFixed, Rate: new(0.0)}, `{"type":"fixed","rate":0}`},
		{"catch-all rule", PriorityRule{Priority: "normal", Rate: 0.1}, `{"priority":"normal","rate":0.1}`},
		{"region", DefaultRegion(),
			`{"regional_sampling_rate":1,"buffer_size":10000,"batch":{"max_batch_size":512,"max_wait_time":"200ms"},` +
				`"retry":{"max_retries":3,"initial_backoff":"100ms","max_backoff":"5s"}}`},
		{"zero global", Global{}, `{"sampling_rate":0,"degradation":{"keep_high_priority":false}}`},
		{"defaults", Defaults().Global, `{"sampling_rate":0.1,"sampling_strategies":[` +
			`{"type":"adaptive","min_rate":0.01,"max_rate":0.5,"target_qps":100000},` +
			`{"type":"priority_based","rules":[{"priority":"high","rate":1,"services":["payment","checkout"]},` +
			`{"priority":"normal","rate":0.1},{"priority":"low","rate":0.01,"services":["debug","test"]}]}],` +
			`"degradation":{"enabled":true,"threshold":0.8,"target_rate":0.01,"recovery_threshold":0.6,"keep_high_priority":true},` +
			`"rate_limiting":{"max_qps":1000000,"burst_size":10000,"per_service_limit":10000},` +
			`"routing_rules":[{"service":"critical-*","target_region":"us-east-1","priority":"high"},` +
			`{"service":"batch-*","target_region":"us-west-2","priority":"low"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tt.want {
				t.Fatalf("json.Marshal =\n%s\nwant\n%s", data, tt.want)
			}
		})
	}
}

func TestToYAMLRoundTrip(t *testing.T) {
	f := File{Global: fullGlobal(), Regions: map[string]Region{"eu-west": fullRegion(), "us-east-1": DefaultRegion()}}
	data, err := f.ToYAML()
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadFile(data)
	if err != nil {
		t.Fatalf("LoadFile(ToYAML()): %v\n%s", err, data)
	}
	if !reflect.DeepEqual(got, f) {
		t.Fatalf("YAML round trip:\n%s\ngot  %#v\nwant %#v", data, got, f)
	}
}

func TestToYAMLOutput(t *testing.T) {
	g, err := Defaults().Global.ToYAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sampling_rate: 0.1\n", "  - type: adaptive\n    min_rate: 0.01\n", "keep_high_priority: true\n"} {
		if !strings.Contains(string(g), want) {
			t.Errorf("Global.ToYAML() lacks %q:\n%s", want, g)
		}
	}
	for _, absent := range []string{"version", "updated_at", "updated_by", "metadata", "cost_per_span", "rate:"} {
		if strings.Contains(string(g), absent+":") || strings.Contains(string(g), "\n    "+absent) {
			t.Errorf("Global.ToYAML() shows empty %q:\n%s", absent, g)
		}
	}
	r, err := DefaultRegion().ToYAML()
	if err != nil {
		t.Fatal(err)
	}
	want := "regional_sampling_rate: 1\nbuffer_size: 10000\nbatch:\n  max_batch_size: 512\n  max_wait_time: 200ms\n" +
		"retry:\n  max_retries: 3\n  initial_backoff: 100ms\n  max_backoff: 5s\n"
	if string(r) != want {
		t.Errorf("Region.ToYAML() =\n%s\nwant\n%s", r, want)
	}
}

func TestDuration(t *testing.T) {
	d := Duration(1500 * time.Millisecond)
	if d.String() != "1.5s" {
		t.Errorf("String() = %q", d)
	}
	data, err := json.Marshal(d)
	if err != nil || string(data) != `"1.5s"` {
		t.Errorf("json.Marshal = %s, %v", data, err)
	}
	var got Duration
	if err := json.Unmarshal([]byte(`"1m30s"`), &got); err != nil || got != Duration(90*time.Second) {
		t.Errorf("json.Unmarshal = %v, %v", got, err)
	}
	if err := json.Unmarshal([]byte(`null`), &got); err != nil || got != Duration(90*time.Second) {
		t.Errorf("json.Unmarshal(null) changed the value to %v, %v", got, err)
	}
	for _, in := range []string{`5`, `true`, `"5"`, `{}`} {
		if err := json.Unmarshal([]byte(in), &got); err == nil {
			t.Errorf("json.Unmarshal(%s) accepted", in)
		}
	}
}
