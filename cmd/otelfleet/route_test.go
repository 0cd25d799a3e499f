package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/micro"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

// fakeRouter serves otlp-router's route and status endpoints with fixed answers on a
// test server and records the route queries it gets.
type fakeRouter struct {
	mu      sync.Mutex
	queries []events.RouteQuery
}

func startFakeRouter(t *testing.T, srv *natstest.Server) *fakeRouter {
	t.Helper()
	f := &fakeRouter{}
	nc := srv.Connect(t)
	route := microapi.Handler(func(_ context.Context, req micro.Request) (any, error) {
		var q events.RouteQuery
		if err := microapi.DecodeRequest(req, &q); err != nil {
			return nil, err
		}
		f.mu.Lock()
		f.queries = append(f.queries, q)
		f.mu.Unlock()
		return events.RouteAnswer{V: 1, Router: "r1", TraceID: q.TraceID, Service: q.Service, Rate: 0.25, Threshold: "c", Kept: true,
			Backend: "collector.eu.s2", Addr: "127.0.0.1:14317", Region: "eu", Strategy: "bounded_load",
			Fallbacks: []string{"collector.eu.s1", "collector.eu.s3"}, Why: []string{"rate: checkout has 0.25", "placement: bounded_load ring"}}, nil
	})
	status := microapi.Handler(func(context.Context, micro.Request) (any, error) {
		return events.RouterStatus{V: 1, Router: "r1", Region: "eu", Strategy: "bounded_load", GRPCAddr: "127.0.0.1:4317", HTTPAddr: "127.0.0.1:4318",
			Backends: []events.RouterBackend{
				{Key: "collector.eu.s1", Addr: "127.0.0.1:14317", Region: "eu", Share: 0.5, Sent: 120, QueueBytes: 2048},
				{Key: "collector.eu.s2", Addr: "127.0.0.1:14417", Region: "eu", Share: 0.5, Sent: 118, Rerouted: 3, Leaving: true},
			}, Received: 400, Kept: 238, Sampled: 162, MemoryBytes: 4096, MemoryLimit: 256 << 20}, nil
	})
	m, err := platform.AddMicro(nc, events.Default, platform.DefaultSettings("router"), events.ServiceRouter, "test",
		platform.Endpoint{Op: events.RouterOpRoute, Handler: route}, platform.Endpoint{Op: events.RouterOpStatus, Handler: status})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop() })
	if err := nc.Flush(); err != nil { // the endpoints' subscriptions reach the server
		t.Fatal(err)
	}
	return f
}

func TestRouteTableAndJSON(t *testing.T) {
	srv := natstest.Run(t)
	f := startFakeRouter(t, srv)
	code, stdout, stderr := runCLI(t, "--nats", srv.URL(), "route", "0AF7651916CD43DD8448EB211C80319C", "--service", "checkout", "--region", "eu")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"TRACE      0af7651916cd43dd8448eb211c80319c", "RATE       0.25 (th c)", "KEPT       yes",
		"BACKEND    collector.eu.s2 (127.0.0.1:14317)", "FALLBACKS  collector.eu.s1, collector.eu.s3", "STRATEGY   bounded_load",
		"WHY\n  - rate: checkout has 0.25\n  - placement: bounded_load ring"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	f.mu.Lock()
	q := f.queries[0]
	f.mu.Unlock()
	if q != (events.RouteQuery{TraceID: "0af7651916cd43dd8448eb211c80319c", Service: "checkout", Region: "eu"}) {
		t.Errorf("query %+v: want the normalised trace ID, service and region", q)
	}

	code, stdout, stderr = runCLI(t, "--nats", srv.URL(), "route", "-o", "json", "0af7651916cd43dd8448eb211c80319c")
	var a events.RouteAnswer
	if code != exitOK || json.Unmarshal([]byte(stdout), &a) != nil || a.Backend != "collector.eu.s2" || len(a.Fallbacks) != 2 || !a.Kept {
		t.Fatalf("json: exit %d %s %s", code, stdout, stderr)
	}
}

func TestRouteBadTraceIDIsAUsageError(t *testing.T) {
	for name, id := range map[string]string{
		"short":    "abc",
		"not hex":  "zz000000000000000000000000000000",
		"all zero": "00000000000000000000000000000000",
		"too long": "0af7651916cd43dd8448eb211c80319c00",
	} {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "--nats", "nats://127.0.0.1:1", "route", id)
			if code != exitUsage || !strings.Contains(stderr, id) {
				t.Errorf("exit %d, want %d naming %q: %s", code, exitUsage, id, stderr)
			}
		})
	}
	if code, _, stderr := runCLI(t, "--nats", "nats://127.0.0.1:1", "route"); code != exitUsage || !strings.Contains(stderr, "missing TRACE_ID") {
		t.Errorf("no trace ID: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "--nats", "nats://127.0.0.1:1", "route", "0af7651916cd43dd8448eb211c80319c", "--region", "a.b"); code != exitUsage {
		t.Errorf("bad region: exit %d: %s", code, stderr)
	}
}

func TestRouteWithoutRouterSaysSo(t *testing.T) {
	srv := natstest.Run(t)
	for _, args := range [][]string{{"route", "0af7651916cd43dd8448eb211c80319c"}, {"router", "status"}} {
		code, _, stderr := runCLI(t, append([]string{"--nats", srv.URL(), "--timeout", "2s"}, args...)...)
		if code != exitRefused || !strings.Contains(stderr, "no service answers on otlp.router.") || !strings.Contains(stderr, "otelfleet dev") {
			t.Errorf("%v: exit %d, want %d saying no router answers: %s", args, code, exitRefused, stderr)
		}
	}
}

func TestRouterStatusTableAndJSON(t *testing.T) {
	srv := natstest.Run(t)
	startFakeRouter(t, srv)
	code, stdout, stderr := runCLI(t, "--nats", srv.URL(), "router", "status")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"router r1 · region eu · strategy bounded_load", "received 400 · kept 238 · sampled out 162",
		"memory 4KiB of 256MiB", "collector.eu.s1", "2KiB", "leaving", "REROUTED"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runCLI(t, "--nats", srv.URL(), "router", "-o", "json")
	var st events.RouterStatus
	if code != exitOK || json.Unmarshal([]byte(stdout), &st) != nil || len(st.Backends) != 2 || st.Backends[1].Rerouted != 3 {
		t.Fatalf("json: exit %d %s", code, stdout)
	}
}
