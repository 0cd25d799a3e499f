package fleetconfig

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// sameConfig reports whether a and b are equal configuration values, stored
// fields included, treating nil and empty collections as equal.
func sameConfig(a, b any) bool { return equivalent(reflect.ValueOf(a), reflect.ValueOf(b)) }

func FuzzDecodeGlobalJSON(f *testing.F) {
	for _, g := range []Global{Defaults().Global, fullGlobal(), {}} {
		data, err := json.Marshal(g)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{"", "null", "{}", `{"sampling_rate": 2}`, `{"sampling_strategies":[{"type":"x"}]}`,
		`{"metadata":{"":""}}`, `{"updated_at":"2025-01-02T03:04:05+02:00"}`, "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := DecodeGlobalJSON(data)
		if err != nil || g.Validate() != nil {
			return
		}
		enc, err := json.Marshal(g)
		if err != nil {
			t.Fatalf("json.Marshal of a valid Global: %v", err)
		}
		g2, err := DecodeGlobalJSON(enc)
		if err != nil {
			t.Fatalf("DecodeGlobalJSON(%s) of re-encoded value: %v", enc, err)
		}
		if !sameConfig(g, g2) {
			t.Fatalf("re-decoded value differs:\n%#v\n%#v", g, g2)
		}
		if err := g2.Validate(); err != nil {
			t.Fatalf("re-decoded value invalid: %v", err)
		}
		enc2, err := json.Marshal(g2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s (%v)", enc, enc2, err)
		}
	})
}

func FuzzDecodeRegionJSON(f *testing.F) {
	data, err := json.Marshal(fullRegion())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"batch":{"max_wait_time":200}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRegionJSON(data)
		if err != nil || r.Validate("r") != nil {
			return
		}
		enc, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("json.Marshal of a valid Region: %v", err)
		}
		r2, err := DecodeRegionJSON(enc)
		if err != nil || !sameConfig(r, r2) {
			t.Fatalf("round trip of %s: %#v, %v", enc, r2, err)
		}
	})
}

func FuzzParseYAML(f *testing.F) {
	full, err := File{Global: fullGlobal(), Regions: map[string]Region{"eu-west": fullRegion()}}.ToYAML()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	defaults, err := Defaults().ToYAML()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(defaults)
	for _, s := range []string{"", "~", "global: {}", "global:\n  sampling_rate: .nan\n", "a: &a [*a]",
		"global: {metadata: {k: \"\\u2028\"}}", "global:\n\tx: 1", "- - -"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseYAML(data)
		if err != nil || file.Validate() != nil {
			return
		}
		enc, err := file.ToYAML()
		if err != nil {
			t.Fatalf("ToYAML of a valid File: %v", err)
		}
		file2, err := LoadFile(enc)
		if err != nil {
			t.Fatalf("LoadFile of re-encoded value: %v\n%s", err, enc)
		}
		if !sameConfig(file, file2) {
			t.Fatalf("re-decoded value differs:\n%s\n%#v\n%#v", enc, file, file2)
		}
	})
}
