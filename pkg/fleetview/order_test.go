package fleetview

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// TestSnapshotOrderUnderChurn: collectors joining, leaving and coming back between
// snapshots (a few at a time, merged into the order, or many, re-sorted) always leave the
// snapshot sorted by region and id and holding exactly the registered collectors.
func TestSnapshotOrderUnderChurn(t *testing.T) {
	v := New(Config{})
	r := rand.New(rand.NewPCG(11, 12))
	present := map[Key]bool{}
	key := func() Key { return Key{fmt.Sprintf("r%d", r.IntN(3)), fmt.Sprintf("c%04d", r.IntN(3000))} }
	for round := range 300 {
		changes := 1 + r.IntN(4)
		if round%50 == 0 {
			changes = 800 // a burst: more than an eighth of the fleet
		}
		for range changes {
			k := key()
			if present[k] && r.IntN(2) == 0 {
				key, err := events.CollectorKey(k.Region, k.ID)
				if err != nil {
					t.Fatal(err)
				}
				if !v.Delete(key) {
					t.Fatalf("delete of %v found nothing", k)
				}
				delete(present, k)
				continue
			}
			v.PutRegistration(&events.Registration{V: 1, InstanceKind: events.KindCollector, Region: k.Region, ID: k.ID})
			present[k] = true
		}
		s := v.Snapshot()
		var got []Key
		for _, c := range s.Collectors {
			got = append(got, c.Key)
		}
		var want []Key
		for k := range present {
			want = append(want, k)
		}
		slices.SortFunc(want, compareKeys)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: snapshot holds %d collectors, want %d (sorted: %v)", round, len(got), len(want), slices.IsSortedFunc(got, compareKeys))
		}
	}
}
