package topologysvc

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetview"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

func routerStatus(id, region string, received, kept, sent int64) events.RouterStatus {
	return events.RouterStatus{V: events.RouterVersion, Router: id, Region: region, Strategy: "consistent_hash",
		Received: received, Kept: kept, At: time.Now(),
		Backends: []events.RouterBackend{{Key: "collector." + region + ".c1", Addr: "c1:4317", Region: region, Share: 1, Sent: sent, QueueBytes: 512, InFlight: 2, Rerouted: 3, Dropped: 1}}}
}

func publishStatus(t *testing.T, f *fixture, subjectID string, st events.RouterStatus) {
	t.Helper()
	subj, err := events.Default.RouterStatusSubject(subjectID)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.NewMsg(subj, "test", st)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
}

// TestRoutersFromPublishedStatuses: a registered router's statuses appear in
// /v1/routers; statuses of unregistered routers, of a router outside its registered
// region, or naming another router than their subject are dropped and counted; and a
// router is never listed as a collector.
func TestRoutersFromPublishedStatuses(t *testing.T) {
	f := newFixture(t, time.Minute)
	now := time.Now().UTC()
	putRegistration(t, f.b.Registry, &events.Registration{V: events.RegistrationVersion, ID: "r1", InstanceKind: events.KindService,
		Name: events.ServiceRouter, Region: "eu", Address: "r1:4317", Health: events.Health{Status: events.HealthHealthy}, RegisteredAt: now, UpdatedAt: now, Generation: 1})
	r := f.start(t, fastConfig(), "t1")
	natstest.Eventually(t, 10*time.Second, func() bool { return r.svc.routers.registered("eu", "r1") }, "router registration seen")

	publishStatus(t, f, "r1", routerStatus("r1", "eu", 100, 40, 40))
	publishStatus(t, f, "ghost", routerStatus("ghost", "eu", 1e9, 1e9, 1e9)) // unregistered
	publishStatus(t, f, "r1", routerStatus("r1", "us", 1e9, 1e9, 1e9))       // wrong region
	publishStatus(t, f, "r2", routerStatus("r1", "eu", 1e9, 1e9, 1e9))       // subject names another
	if err := f.nc.Publish("otlp.router.status.r1", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		return testutil.ToFloat64(r.svc.m.routerStatuses.WithLabelValues("ok")) == 1 &&
			testutil.ToFloat64(r.svc.m.routerStatuses.WithLabelValues("dropped")) == 2 &&
			testutil.ToFloat64(r.svc.m.routerStatuses.WithLabelValues("invalid")) == 2
	}, "statuses counted")

	rec := httptest.NewRecorder()
	r.svc.serveRouters(rec, httptest.NewRequest(http.MethodGet, "/v1/routers", nil))
	var got Routers
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Routers) != 1 || got.Routers[0].Router != "r1" || got.Routers[0].Received != 100 || len(got.Routers[0].Backends) != 1 ||
		got.Routers[0].Backends[0].QueueBytes != 512 || got.Routers[0].Backends[0].InFlight != 2 {
		t.Fatalf("/v1/routers = %s", rec.Body.String())
	}
	top, err := r.svc.Get(GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if top.Global.Collectors != 0 {
		t.Fatalf("the router counted as a collector: %+v", top.Global)
	}
}

// TestRouterRates: rates come from the last two statuses; a counter that went back (the
// router restarted) gives 0, not a negative rate; a new backend has no rate yet.
func TestRouterRates(t *testing.T) {
	tb := newRouterTable(fleetview.New(fleetview.Config{}))
	tb.fleet.PutRegistration(&events.Registration{V: 1, InstanceKind: events.KindService, Name: events.ServiceRouter, ID: "r1", Region: "eu"})
	t0 := time.Unix(1000, 0)
	if !tb.add(routerStatus("r1", "eu", 1000, 400, 400), t0) {
		t.Fatal("registered router dropped")
	}
	if v := tb.list(t0).Routers[0]; v.ReceivedPerSec != 0 || v.Backends[0].SentPerSec != 0 {
		t.Fatalf("rates from one status: %+v", v)
	}
	st := routerStatus("r1", "eu", 3000, 900, 900)
	st.Backends = append(st.Backends, events.RouterBackend{Key: "collector.eu.c2", Sent: 50})
	tb.add(st, t0.Add(2*time.Second))
	v := tb.list(t0.Add(2 * time.Second)).Routers[0]
	if v.ReceivedPerSec != 1000 || v.KeptPerSec != 250 || v.Backends[0].SentPerSec != 250 || v.Backends[1].SentPerSec != 0 {
		t.Fatalf("rates: %+v", v)
	}
	tb.add(routerStatus("r1", "eu", 10, 5, 5), t0.Add(3*time.Second))
	if v := tb.list(t0.Add(3 * time.Second)).Routers[0]; v.ReceivedPerSec != 0 || v.Backends[0].SentPerSec != 0 {
		t.Fatalf("rates after a restart: %+v", v)
	}
	if n := len(tb.list(t0.Add(3*time.Second + RouterStatusTTL + time.Second)).Routers); n != 0 {
		t.Fatalf("%d routers listed after the TTL", n)
	}
}
