package fleetconfig

import (
	"encoding/json"
	"testing"
)

// BenchmarkDecodeValidateGlobal is what every config watcher pays per new version.
func BenchmarkDecodeValidateGlobal(b *testing.B) {
	data, _ := json.Marshal(Defaults().Global)
	b.ReportAllocs()
	for b.Loop() {
		g, err := DecodeGlobalJSON(data)
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeGlobal(b *testing.B) {
	data, _ := json.Marshal(Defaults().Global)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeGlobalJSON(data); err != nil {
			b.Fatal(err)
		}
	}
}
