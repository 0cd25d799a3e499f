package topologysvc

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// TestBuildOrderFollowsJoinsAndLeaves: after any mix of collectors joining (new, or a
// reporter that registers), leaving (deleted, or not retained) and re-joining, few or
// many between two builds, every build lists exactly the registered collectors, sorted
// by region and id.
func TestBuildOrderFollowsJoinsAndLeaves(t *testing.T) {
	cfg := DefaultConfig()
	s := NewState(cfg)
	rng := rand.New(rand.NewPCG(7, 9))
	want := map[collectorKey]bool{}
	key := func() collectorKey {
		return collectorKey{fmt.Sprintf("r%d", rng.IntN(4)), fmt.Sprintf("c%03d", rng.IntN(300))}
	}
	now := time.Now()
	for round := range 200 {
		changes := 1 + rng.IntN(3)
		if round%20 == 0 {
			changes = 150 // many at once: the full re-sort
		}
		for range changes {
			k := key()
			switch op := rng.IntN(10); {
			case op < 5:
				s.PutRegistration(reg(k.region, k.id, 100, events.HealthHealthy))
				want[k] = true
			case op < 7:
				s.DeleteRegistration(k.region, k.id)
				delete(want, k)
			case op < 9:
				// A report first (unregistered), the registration later in the round.
				if !want[k] {
					s.PutLoad(report(k.region, k.id, 1), now, now)
					s.PutRegistration(reg(k.region, k.id, 100, events.HealthHealthy))
					want[k] = true
				}
			default:
				keep := map[collectorKey]struct{}{}
				for w := range want {
					if rng.IntN(10) > 0 {
						keep[w] = struct{}{}
					} else {
						delete(want, w)
					}
				}
				s.RetainRegistrations(keep)
			}
		}
		v, _ := s.Build(now)
		var got []collectorKey
		for _, r := range v.regions {
			for _, c := range r.Collectors {
				got = append(got, collectorKey{c.Region, c.ID})
			}
		}
		exp := make([]collectorKey, 0, len(want))
		for k := range want {
			exp = append(exp, k)
		}
		slices.SortFunc(exp, func(a, b collectorKey) int {
			return compareRecords(&record{key: a}, &record{key: b})
		})
		if !slices.Equal(got, exp) {
			t.Fatalf("round %d: built %d collectors %v…, want %d %v…", round, len(got), got[:min(5, len(got))], len(exp), exp[:min(5, len(exp))])
		}
	}
}
