package routersvc

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// TestSaturatedBackendsAreALastResort: a backend whose process is saturated (registration
// unhealthy at 98 % of its allowed CPUs, after consecutive readings; its host reads fully
// busy throughout and changes nothing) gets no traffic while another can take it; when every
// backend is unhealthy the router sends to them rather than refusing everything (logged
// and counted once), and leaves them as soon as one is healthy again.
func TestSaturatedBackendsAreALastResort(t *testing.T) {
	e := startRouter(t, testConfig())
	e.putGlobal(unlimited())
	e.putDecision(1)
	h1, h2 := &processCPU{}, &processCPU{}
	b1, b2 := e.addBackend("b1", withCPU(h1)), e.addBackend("b2", withCPU(h2))
	const k1, k2 = "collector." + testRegion + ".b1", "collector." + testRegion + ".b2"
	inTables := func(want ...string) func() bool {
		return func() bool {
			t := e.r.tables.Load()
			if len(t.keys) != len(want) {
				return false
			}
			for _, k := range want {
				if _, ok := t.byKey[k]; !ok {
					return false
				}
			}
			return true
		}
	}
	natstest.Eventually(t, 10*time.Second, inTables(k1, k2), "both backends in the tables")
	send := func(first int) {
		t.Helper()
		if n := rejectedSpans(t, e, tracesRequest(t, "checkout", first, 50, 2)); n != 0 {
			t.Fatalf("%d spans refused", n)
		}
	}

	h1.set(0.99)
	natstest.Eventually(t, 10*time.Second, inTables(k2), "saturated b1 left the tables while b2 is healthy")
	send(0)
	natstest.Eventually(t, 10*time.Second, func() bool { _, n := b2.counts(); return n == 100 }, "traces not delivered to b2")
	if _, n := b1.counts(); n != 0 {
		t.Fatalf("unhealthy b1 got %d spans while b2 was healthy", n)
	}
	if got := testutil.ToFloat64(e.r.m.lastResort); got != 0 {
		t.Fatalf("last resort counted %v times with a healthy backend", got)
	}

	h2.set(0.99)
	natstest.Eventually(t, 10*time.Second, inTables(k1, k2), "every backend saturated: both back as a last resort")
	send(100)
	natstest.Eventually(t, 10*time.Second, func() bool {
		_, n1 := b1.counts()
		_, n2 := b2.counts()
		return n1+n2 == 200
	}, "traces not delivered to the unhealthy backends")
	if got := testutil.ToFloat64(e.r.m.lastResort); got != 1 {
		t.Fatalf("last resort counted %v times, want 1", got)
	}
	if got := testutil.ToFloat64(e.r.m.onLastResort); got != 1 {
		t.Fatalf("on-last-resort gauge %v, want 1", got)
	}

	h1.set(0.1)
	natstest.Eventually(t, 10*time.Second, inTables(k1), "b1 healthy again: the unhealthy b2 left the tables")
	if got := testutil.ToFloat64(e.r.m.onLastResort); got != 0 {
		t.Fatalf("on-last-resort gauge %v after b1 recovered, want 0", got)
	}
	_, before := b1.counts()
	send(200)
	natstest.Eventually(t, 10*time.Second, func() bool { _, n := b1.counts(); return n == before+100 }, "traces not delivered to the healthy b1")
	if got := testutil.ToFloat64(e.r.m.lastResort); got != 1 {
		t.Fatalf("last resort counted %v times after leaving it, want still 1", got)
	}
}
