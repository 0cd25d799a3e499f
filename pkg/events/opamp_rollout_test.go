package events_test

import (
	"testing"

	"github.com/otelfleet/otelfleet/pkg/events"
)

func FuzzDecodeRolloutState(f *testing.F) {
	f.Add([]byte(`{"v":1,"group":"g","phase":"running","target":{"version":1,"hash":"ab"},"waves":[["a"]],"wave":0}`))
	f.Add([]byte(`{"v":1,"group":"g","phase":"running","target":{"hash":"ab"},"waves":[],"wave":3}`))
	f.Add([]byte(`{"v":9,"group":"g"}`))
	f.Add([]byte(`{"v":1,"group":"a.b","phase":"completed","target":{"hash":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var st events.RolloutState
		if err := events.Decode(b, &st); err != nil {
			return
		}
		if st.Phase == events.RolloutRunning && (st.Wave < 0 || st.Wave >= len(st.Waves)) {
			t.Fatalf("accepted a running state with wave %d of %d", st.Wave, len(st.Waves))
		}
		if _, err := events.RolloutKey(st.Group); err != nil {
			t.Fatalf("accepted group %q", st.Group)
		}
	})
}
