package platform_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testSettings(url string) platform.Settings {
	s := platform.DefaultSettings("test")
	s.AdminAddr = "127.0.0.1:0"
	s.NATS.URL = url
	s.LogLevel = "error"
	return s
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminEndpointsAndReadiness(t *testing.T) {
	srv := natstest.Run(t)
	var admin *platform.Admin
	var ready *platform.Readiness
	var contract *platform.Contract
	app := fxtest.New(t, platform.Module(testSettings(srv.URL())), fx.Populate(&admin, &ready, &contract), fx.NopLogger)
	gate := ready.Gate("first-load")
	app.RequireStart()
	defer app.RequireStop()
	base := "http://" + admin.Addr().String()

	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("/healthz = %d %q", code, body)
	}
	// Not ready while a gate is closed, and the reply names it.
	natstest.Eventually(t, 5*time.Second, func() bool {
		code, body := get(t, base+"/readyz")
		return code == 503 && strings.Contains(body, `"name":"first-load","ok":false`) && strings.Contains(body, `"name":"nats","ok":true`)
	}, "readyz reports the closed gate")
	gate.Open()
	natstest.Eventually(t, 5*time.Second, func() bool { code, _ := get(t, base+"/readyz"); return code == 200 }, "readyz 200 once every check passes")

	code, body := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, "otelfleet_nats_connected 1") {
		t.Errorf("/metrics lacks otelfleet_nats_connected 1: %d", code)
	}

	// The contract's streams and buckets exist.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := contract.Buckets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.Registry.Status(ctx)
	if err != nil || st.TTL() != platform.DefaultSettings("x").RegistryTTL {
		t.Errorf("registry bucket TTL = %v, %v", st, err)
	}
}

func TestStartsWithNATSDownAndBecomesReady(t *testing.T) {
	srv := natstest.Run(t)
	url := srv.URL()
	srv.Stop()
	var ready *platform.Readiness
	var contract *platform.Contract
	app := fxtest.New(t, platform.Module(testSettings(url)), fx.Populate(&ready, &contract), fx.NopLogger)
	app.RequireStart() // must not fail or block without NATS
	defer app.RequireStop()
	if _, ok := ready.Check(); ok {
		t.Fatal("ready without NATS")
	}
	srv.Restart(t)
	natstest.Eventually(t, 15*time.Second, func() bool { _, ok := ready.Check(); return ok }, "ready after NATS comes up")
}

func TestMicroServiceListedAndAnswers(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	s := testSettings(srv.URL())
	svc, err := platform.AddMicro(nc, events.Default, s, "demo", "a demo", platform.Endpoint{
		Op: "echo", Description: "echo",
		Handler: microapi.Handler(func(_ context.Context, req micro.Request) (any, error) {
			if string(req.Data()) == `"fail"` {
				return nil, microapi.Errorf(microapi.CodeConflict, "conflict on purpose")
			}
			return map[string]string{"got": string(req.Data())}, nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	if svc.Info().Name != "otlp-demo" {
		t.Errorf("name = %q", svc.Info().Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out map[string]string
	if err := microapi.Request(ctx, nc, "otlp.demo.echo", "hi", &out); err != nil || out["got"] != `"hi"` {
		t.Fatalf("echo = %v, %v", out, err)
	}
	err = microapi.Request(ctx, nc, "otlp.demo.echo", "fail", &out)
	if microapi.CodeOf(err) != microapi.CodeConflict || !strings.Contains(err.Error(), "conflict on purpose") {
		t.Errorf("error reply = %v", err)
	}
	err = microapi.Request(ctx, nc, "otlp.nobody.home", nil, nil)
	if microapi.CodeOf(err) != microapi.CodeUnavailable {
		t.Errorf("no responders = %v", err)
	}
	// `nats micro ls` sees it through the discovery subject.
	msg, err := nc.Request("$SRV.INFO.otlp-demo", nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil || len(info.Endpoints) != 1 || info.Endpoints[0].Subject != "otlp.demo.echo" {
		t.Errorf("info = %+v, %v", info, err)
	}
}

func TestSettingsValidateNamesEveryProblem(t *testing.T) {
	s := platform.DefaultSettings("x")
	s.Region = "us.east"
	s.LogLevel = "loud"
	s.LogFormat = "xml"
	s.LeaseTTL = 10 * time.Millisecond
	s.NATS.Token, s.NATS.User = "t", "u"
	err := s.Validate()
	for _, want := range []string{"--region", "--log-level", "--log-format", "lease TTL", "at most one"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

func TestMicroVersionIsAlwaysSemver(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":         "1.2.3",
		"1.2.3-rc.1":     "1.2.3-rc.1",
		"dev":            "0.0.0-dev",
		"":               "0.0.0-dev",
		"fd6b4bf-dirty":  "0.0.0-fd6b4bf-dirty",
		"v0.1.0-3-gabc":  "0.1.0-3-gabc",
		"weird/ver sion": "0.0.0-weird-ver-sion",
	} {
		if got := platform.MicroVersion(in); got != want {
			t.Errorf("MicroVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJSONLogsRenderDurationsReadably(t *testing.T) {
	var buf strings.Builder
	s := platform.DefaultSettings("x")
	log, err := platform.NewLoggerTo(&buf, s)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "ttl", 5*time.Second)
	if !strings.Contains(buf.String(), `"ttl":"5s"`) || !strings.Contains(buf.String(), `"process":"x"`) {
		t.Errorf("log line = %s", buf.String())
	}
}

func TestServiceFailingAfterReadyShowsOnReadyz(t *testing.T) {
	srv := natstest.Run(t)
	s := testSettings(srv.URL())
	s.LogLevel = "info"
	var logs natstest.Buffer
	ready := make(chan struct{})
	fail := make(chan struct{})
	stopped := make(chan struct{})
	var admin *platform.Admin
	app := fxtest.New(t, platform.Module(s), fx.NopLogger,
		fx.Decorate(func() (*slog.Logger, error) { return platform.NewLoggerTo(&logs, s) }),
		fx.Populate(&admin),
		fx.Invoke(func(p platform.ServiceParams) {
			platform.RunService(p, platform.ServiceSpec{
				Name: "demo", Description: "fails on purpose", Ready: ready,
				Run: func(ctx context.Context, _ *natsconn.Buckets) error {
					close(ready)
					select {
					case <-fail:
						return errors.New("watch gave up on purpose")
					case <-ctx.Done():
						return nil
					}
				},
				Stop: func(context.Context) error { close(stopped); return nil },
			})
		}))
	app.RequireStart()
	base := "http://" + admin.Addr().String()
	natstest.Eventually(t, 10*time.Second, func() bool { code, _ := get(t, base+"/readyz"); return code == 200 }, "ready once Run has loaded")

	close(fail)
	natstest.Eventually(t, 10*time.Second, func() bool {
		code, body := get(t, base+"/readyz")
		return code == 503 && strings.Contains(body, `"name":"demo","ok":false,"error":"failed: watch gave up on purpose"`)
	}, "readyz names the failed service and the reason")
	// The component's life logs the error once Run has returned, just after the gate
	// failed: wait for the line rather than expect it already written.
	natstest.Eventually(t, 10*time.Second, func() bool {
		l := logs.String()
		return strings.Contains(l, "component stopped working") && strings.Contains(l, "watch gave up on purpose")
	}, "a log line for the failure")
	app.RequireStop()
	select {
	case <-stopped:
	default:
		t.Error("Stop was not called")
	}
}

func TestComponentStartsAfterBucketsAndStopsInReverseOrder(t *testing.T) {
	srv := natstest.Run(t)
	url := srv.URL()
	srv.Stop()
	var (
		mu    sync.Mutex
		order []string
	)
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, s)
	}
	started := make(chan struct{}, 2)
	component := func(name string) platform.Component {
		return platform.Component{
			Name: name,
			Run: func(_ context.Context, b *natsconn.Buckets) error {
				if b == nil || b.Registry == nil {
					return errors.New("no buckets")
				}
				record("run " + name)
				started <- struct{}{}
				return nil
			},
			Stop: func(context.Context) error { record("stop " + name); return nil },
		}
	}
	app := fxtest.New(t, platform.Module(testSettings(url)), fx.NopLogger,
		fx.Invoke(func(l platform.Life) { platform.Start(l, component("a")) }),
		fx.Invoke(func(l platform.Life) { platform.Start(l, component("b")) }))
	app.RequireStart() // does not wait for NATS
	select {
	case <-started:
		t.Fatal("a component ran before the buckets existed")
	default:
	}
	srv.Restart(t)
	for range 2 {
		select {
		case <-started:
		case <-time.After(15 * time.Second):
			t.Fatal("components did not start once NATS came up")
		}
	}
	app.RequireStop()
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(order[2:], ", "); got != "stop b, stop a" {
		t.Errorf("stop order = %q, want stop b, stop a (all: %q)", got, order)
	}
}

// TestAdminPprofOnlyWhenAsked: /debug/pprof/ is served with Settings.Pprof and is a 404
// without it.
func TestAdminPprofOnlyWhenAsked(t *testing.T) {
	srv := natstest.Run(t)
	for _, on := range []bool{false, true} {
		s := testSettings(srv.URL())
		s.Pprof = on
		var admin *platform.Admin
		app := fxtest.New(t, platform.Module(s), fx.Populate(&admin), fx.NopLogger)
		app.RequireStart()
		code, body := get(t, "http://"+admin.Addr().String()+"/debug/pprof/heap?debug=1")
		app.RequireStop()
		switch {
		case on && (code != 200 || !strings.Contains(body, "heap profile")):
			t.Errorf("with Pprof: /debug/pprof/heap = %d %.80q", code, body)
		case !on && code != 404:
			t.Errorf("without Pprof: /debug/pprof/heap = %d, want 404", code)
		}
	}
}
