package events

import (
	"testing"
)

// FuzzDecodeAnyPayload runs Decode for every payload type of the contract on the same
// bytes: no input may panic, and any accepted value must pass its own validation and
// survive a round trip.
func FuzzDecodeAnyPayload(f *testing.F) {
	f.Add([]byte(`{"v":1,"holder":"a","acquired_at":"2026-01-01T00:00:00Z","renewed_at":"2026-01-01T00:00:01Z"}`))
	f.Add([]byte(`{"v":1,"service":"config","instance":"i","global_version":3}`))
	f.Add([]byte(`{"v":1,"role":"sampler","holder":"a","token":7}`))
	f.Add([]byte(`{"v":1,"leader":"a","token":1,"seq":2,"collectors":0,"regions":[]}`))
	f.Add([]byte(`{"v":1,"event":"registry.expired","key":"collector.eu.c1"}`))
	f.Add([]byte(`{"v":1,"event":"sampling.decision","version":1}`))
	f.Add([]byte(`{"v":1,"router":"r1","region":"eu","received":10,"kept":4,"backends":[{"key":"collector.eu.c1","share":1,"sent":4}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, p := range []func() Payload{
			func() Payload { return &Lease{} },
			func() Payload { return &ConfigReport{} },
			func() Payload { return &LeaderChange{} },
			func() Payload { return &TopologySnapshot{} },
			func() Payload { return &RegistryEvent{} },
			func() Payload { return &SamplingEvent{} },
			func() Payload { return &RouterStatus{} },
		} {
			v := p()
			if err := Decode(data, v); err != nil {
				continue
			}
			again, err := Encode(v)
			if err != nil {
				t.Fatalf("%s: decoded value does not re-encode: %v", v.Kind(), err)
			}
			back := p()
			if err := Decode(again, back); err != nil {
				t.Fatalf("%s: re-encoded value does not decode: %v", v.Kind(), err)
			}
		}
	})
}
