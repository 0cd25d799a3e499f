package fleetview_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func collectorReg(region, id string) *events.Registration {
	return &events.Registration{V: 1, InstanceKind: events.KindCollector, Region: region, ID: id, Address: id + ":4317",
		Health: events.Health{Status: events.HealthHealthy}}
}

func routerReg(region, id string) *events.Registration {
	return &events.Registration{V: 1, InstanceKind: events.KindService, Name: events.ServiceRouter, Region: region, ID: id}
}

// TestWaitingReportsAreBoundedAndCountOnRegistration floods the view with reports of
// collectors that never registered: they wait in a bounded table and count for nothing;
// a collector whose report beat its registration counts once it registers.
func TestWaitingReportsAreBoundedAndCountOnRegistration(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	v := fleetview.New(fleetview.Config{MaxWaiting: 100, WaitFor: 10 * time.Second, Now: c.now})
	v.PutRegistration(collectorReg("eu", "real"))
	if o := v.PutReport(&events.LoadReport{Region: "eu", Collector: "real", QPS: 5, Healthy: true}, c.t); o != fleetview.Counted {
		t.Fatalf("registered: %v", o)
	}
	var waiting, dropped int
	for i := range 10_000 {
		switch v.PutReport(&events.LoadReport{Region: "eu", Collector: fmt.Sprint("fake-", i), QPS: 1e6}, c.t) {
		case fleetview.Waiting:
			waiting++
		case fleetview.WaitingLimit:
			dropped++
		default:
			t.Fatal("an unregistered report was counted")
		}
	}
	if _, w := v.Counts(); waiting != 100 || dropped != 9_900 || w != 100 {
		t.Fatalf("waiting %d dropped %d held %d", waiting, dropped, w)
	}
	s := v.Snapshot()
	if len(s.Collectors) != 1 || s.Collector("eu", "fake-0") != nil {
		t.Fatalf("a waiting reporter is in the snapshot")
	}
	v.PutRegistration(collectorReg("eu", "fake-1"))
	if got := v.Snapshot().Collector("eu", "fake-1"); got == nil || got.Report == nil || got.Report.QPS != 1e6 {
		t.Fatalf("a waiting report did not count on registration: %+v", got)
	}
	// Past WaitFor, waiting reports are forgotten and a late registration has none.
	c.t = c.t.Add(11 * time.Second)
	if n := v.Prune(c.t); n != 99 {
		t.Fatalf("pruned %d, want 99", n)
	}
	v.PutRegistration(collectorReg("eu", "fake-2"))
	if got := v.Snapshot().Collector("eu", "fake-2"); got.Report != nil {
		t.Fatal("a report older than WaitFor counted")
	}
}

func TestReportingTableIsBounded(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	v := fleetview.New(fleetview.Config{MaxReporting: 2, ForgetAfter: 10 * time.Second, Now: c.now})
	for _, id := range []string{"a", "b", "c"} {
		v.PutRegistration(collectorReg("eu", id))
	}
	put := func(id string) fleetview.Outcome {
		return v.PutReport(&events.LoadReport{Region: "eu", Collector: id, Healthy: true}, c.t)
	}
	if put("a") != fleetview.Counted || put("b") != fleetview.Counted {
		t.Fatal("refused below the limit")
	}
	if put("c") != fleetview.ReportingLimit {
		t.Fatal("a third reporter accepted over a limit of 2")
	}
	c.t = c.t.Add(5 * time.Second)
	if put("a") != fleetview.Counted {
		t.Fatal("a known reporter refused at the limit")
	}
	c.t = c.t.Add(6 * time.Second) // b is 11 s old
	if put("c") != fleetview.Counted {
		t.Fatal("a new reporter refused after another's report aged out")
	}
	if s := v.Snapshot(); s.Collector("eu", "b").Report != nil || s.Collector("eu", "c").Report == nil {
		t.Fatal("the old report was not the one forgotten")
	}
	// A collector that leaves frees its place.
	v.Delete("collector.eu.a")
	v.PutRegistration(collectorReg("eu", "d"))
	if v.PutReport(&events.LoadReport{Region: "eu", Collector: "d", Healthy: true}, c.t) != fleetview.Counted {
		t.Fatal("a deregistered collector kept its place")
	}
}

func TestRouterReportsCountInTheirRegistrationsRegion(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	v := fleetview.New(fleetview.Config{Now: c.now})
	v.PutRegistration(routerReg("eu", "r1"))
	v.PutRegistration(collectorReg("eu", "c1"))
	r := &events.LoadReport{Region: "us", Collector: "r1", Role: events.RoleRouter, QPS: 10}
	if o := v.PutReport(r, c.t); o != fleetview.Waiting {
		t.Fatalf("a router's report from another region: %v", o)
	}
	forged := &events.LoadReport{Region: "eu", Collector: "c1", Role: events.RoleRouter, QPS: 1e6}
	if o := v.PutReport(forged, c.t); o != fleetview.Waiting {
		t.Fatalf("a collector's id claiming router: %v", o)
	}
	r.Region = "eu"
	if o := v.PutReport(r, c.t); o != fleetview.Counted {
		t.Fatalf("a registered router: %v", o)
	}
	s := v.Snapshot()
	if s.Collector("eu", "c1").Report != nil || s.Router("r1").Report.QPS != 10 {
		t.Fatal("a router's report went to the collector of the same id")
	}
	v.PutRegistration(routerReg("us", "r1")) // moves: its eu report no longer counts
	if got := v.Snapshot().Router("r1"); got.Region != "us" || got.Report == nil || got.Report.Region != "us" {
		t.Fatalf("after the move: %+v (the us report that waited should count)", got)
	}
}

func TestReportsAreDatedByTheReceiversClock(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	v := fleetview.New(fleetview.Config{Now: c.now})
	v.PutRegistration(collectorReg("eu", "c1"))
	// During the replay a report is dated when the server stored it, never later than now.
	v.PutReport(&events.LoadReport{Region: "eu", Collector: "c1", Healthy: true}, c.t.Add(-time.Minute))
	if got := v.Snapshot().Collector("eu", "c1"); !got.ReceivedAt.Equal(c.t.Add(-time.Minute)) {
		t.Fatalf("replayed report dated %v", got.ReceivedAt)
	}
	v.PutReport(&events.LoadReport{Region: "eu", Collector: "c1", Healthy: true}, c.t.Add(time.Hour)) // server clock ahead
	if got := v.Snapshot().Collector("eu", "c1"); !got.ReceivedAt.Equal(c.t) {
		t.Fatalf("a report stored in the future dated %v, want now", got.ReceivedAt)
	}
	// An older report than the one held is outdated.
	if o := v.PutReport(&events.LoadReport{Region: "eu", Collector: "c1"}, c.t); o != fleetview.Outdated {
		t.Fatalf("older report: %v", o)
	}
}

func TestUnhealthyReportsCountConsecutively(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	v := fleetview.New(fleetview.Config{Now: c.now})
	v.PutRegistration(collectorReg("eu", "c1"))
	for i, healthy := range []bool{false, false, true, false} {
		c.t = c.t.Add(time.Second)
		v.PutReport(&events.LoadReport{Region: "eu", Collector: "c1", Healthy: healthy}, c.t)
		want := []int{1, 2, 0, 1}[i]
		if got := v.Snapshot().Collector("eu", "c1").UnhealthyReports; got != want {
			t.Fatalf("report %d: %d consecutive unhealthy, want %d", i, got, want)
		}
	}
	v.PutRegistration(collectorReg("eu", "c1")) // a heartbeat keeps the count
	if got := v.Snapshot().Collector("eu", "c1").UnhealthyReports; got != 1 {
		t.Fatalf("after a heartbeat: %d", got)
	}
}

func TestSnapshotIsImmutableAndShared(t *testing.T) {
	v := fleetview.New(fleetview.Config{})
	v.PutRegistration(collectorReg("eu", "b"))
	v.PutRegistration(collectorReg("eu", "a"))
	v.PutRegistration(collectorReg("ap", "z"))
	s1 := v.Snapshot()
	if v.Snapshot() != s1 {
		t.Fatal("an unchanged view built a new snapshot")
	}
	if s1.Collectors[0].Key.Region != "ap" || s1.Collectors[1].Key.ID != "a" || s1.Collectors[2].Key.ID != "b" {
		t.Fatal("collectors not ordered by region then id")
	}
	ch, stop := v.Subscribe()
	defer stop()
	v.PutRegistration(collectorReg("eu", "c"))
	select {
	case <-ch:
	default:
		t.Fatal("no change signalled")
	}
	if len(s1.Collectors) != 3 || len(v.Snapshot().Collectors) != 4 || v.Snapshot().Members == s1.Members {
		t.Fatal("a published snapshot changed, or the new one is wrong")
	}
}

func TestScore(t *testing.T) {
	w := fleetview.Weights{Load: 0.5, Latency: 0.3, Capacity: 0.2}
	got := fleetview.Score(w, fleetview.Reading{Utilization: 0.5, LatencyMS: 1, Spare: 50}, 100)
	if want := 0.5*0.5 + 0.3*0.5 + 0.2*0.5; math.Abs(got-want) > 1e-12 {
		t.Fatalf("score %v, want %v", got, want)
	}
	// Weights are normalised, all zero meaning equal; out-of-range readings are clamped.
	if a, b := fleetview.Score(fleetview.Weights{Load: 5, Latency: 3, Capacity: 2}, fleetview.Reading{Utilization: 0.5, LatencyMS: 1, Spare: 50}, 100), got; math.Abs(a-b) > 1e-12 {
		t.Fatalf("scaled weights %v != %v", a, b)
	}
	if s := fleetview.Score(fleetview.Weights{}, fleetview.Reading{Utilization: 2, LatencyMS: -1, Spare: 500}, 100); math.Abs(s-2.0/3) > 1e-12 {
		t.Fatalf("equal weights, clamped readings: %v", s)
	}
	if s := fleetview.Score(w, fleetview.Reading{LatencyMS: math.NaN()}, 0); s != 0 {
		t.Fatalf("NaN reading scored %v", s)
	}
	if err := (fleetview.Weights{Load: -1, Latency: math.Inf(1)}).Validate(); err == nil {
		t.Fatal("bad weights accepted")
	}
}

// TestTheSameReportAgainRefreshesNothing: a follower re-created after a reconnect
// replays every reporter's last report; that must not make a dead reporter look alive.
func TestTheSameReportAgainRefreshesNothing(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	v := fleetview.New(fleetview.Config{Now: c.now})
	v.PutRegistration(collectorReg("eu", "c1"))
	stored := c.t
	v.PutReportAt(&events.LoadReport{Region: "eu", Collector: "c1", Healthy: true}, stored, c.t)
	c.t = c.t.Add(time.Minute)
	if o := v.PutReport(&events.LoadReport{Region: "eu", Collector: "c1", Healthy: true}, stored); o != fleetview.Outdated {
		t.Fatalf("the same report again: %v", o)
	}
	if got := v.Snapshot().Collector("eu", "c1").ReceivedAt; !got.Equal(stored) {
		t.Fatalf("re-delivered report dated %v, want %v", got, stored)
	}
}
