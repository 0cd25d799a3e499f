package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
	"github.com/otelfleet/otelfleet/pkg/natsconn"
	"github.com/otelfleet/otelfleet/pkg/natstest"
)

// bgCLI runs the CLI in a goroutine until the returned stop function cancels it; stop
// returns the exit code and the output.
func bgCLI(t *testing.T, args ...string) func() (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu   sync.Mutex
		buf  bytes.Buffer
		code int
		wg   sync.WaitGroup
	)
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	wg.Add(1)
	go func() {
		defer wg.Done()
		env := &cliEnv{stdout: w, stderr: w}
		code = env.main(ctx, args)
	}()
	var once sync.Once
	stop := func() (int, string) {
		once.Do(func() { cancel(); wg.Wait() })
		mu.Lock()
		defer mu.Unlock()
		return code, buf.String()
	}
	t.Cleanup(func() { stop() })
	return stop
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func provisioned(t *testing.T) (*natstest.Server, *natsconn.Buckets) {
	t.Helper()
	srv := natstest.Run(t)
	_, js := srv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsconn.Provision(ctx, js, natsconn.DefaultLayout())
	if err != nil {
		t.Fatal(err)
	}
	return srv, b
}

func TestEventsAndSimulateUsage(t *testing.T) {
	for name, args := range map[string][]string{
		"events: two subjects":    {"events", "a.>", "b.>"},
		"events: bad output":      {"events", "-o", "xml"},
		"events: negative count":  {"events", "-n", "-1"},
		"simulate: bad pattern":   {"simulate", "--pattern", "sawtooth"},
		"simulate: zero regions":  {"simulate", "--regions", "0"},
		"simulate: argument":      {"simulate", "extra"},
		"simulate: bad log level": {"simulate", "--log-level", "loud"},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, stderr := runCLI(t, append([]string{"--nats", "nats://127.0.0.1:1"}, args...)...); code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr)
			}
		})
	}
	if code, _, stderr := runCLI(t, "--nats", "nats://127.0.0.1:1", "--timeout", "300ms", "events"); code != exitUnreachable {
		t.Errorf("events without NATS: exit %d, %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "--nats", "nats://127.0.0.1:1", "--timeout", "300ms", "simulate"); code != exitUnreachable {
		t.Errorf("simulate without NATS: exit %d, %s", code, stderr)
	}
}

func TestSimulateNeedsTheRegistryBucket(t *testing.T) {
	srv := natstest.Run(t)
	code, _, stderr := runCLI(t, "--nats", srv.URL(), "simulate")
	if code != exitRefused || !strings.Contains(stderr, "otlp_registry") {
		t.Fatalf("exit %d, stderr %q; want 1 naming the bucket", code, stderr)
	}
}

// TestSimulateRefusesRegisteredIDs: a second fleet with the same ids (e.g. simulate next
// to otelfleet dev's fleet) is refused instead of overwriting, and later deregistering,
// the first fleet's collectors; another --id-prefix runs beside it.
func TestSimulateRefusesRegisteredIDs(t *testing.T) {
	srv, b := provisioned(t)
	stopFirst := bgCLI(t, "simulate", "--nats", srv.URL(), "--regions", "1", "--collectors", "2", "--log-level", "warn")
	ctx := context.Background()
	natstest.Eventually(t, 10*time.Second, func() bool {
		_, err := b.Registry.Get(ctx, "collector.us-east-1.sim-us-east-1-2")
		return err == nil
	}, "first fleet not registered")
	code, _, stderr := runCLI(t, "--nats", srv.URL(), "simulate", "--regions", "2", "--collectors", "3", "--log-level", "warn")
	if code != exitRefused || !strings.Contains(stderr, "collector.us-east-1.sim-us-east-1-1 and 1 more are already registered") || !strings.Contains(stderr, "--id-prefix") {
		t.Fatalf("same ids: exit %d, stderr %q; want 1 naming the key and --id-prefix", code, stderr)
	}
	if _, err := b.Registry.Get(ctx, "collector.us-east-1.sim-us-east-1-1"); err != nil {
		t.Fatalf("the refused fleet touched the first fleet's registration: %v", err)
	}
	stopOther := bgCLI(t, "simulate", "--nats", srv.URL(), "--regions", "1", "--collectors", "1", "--id-prefix", "more", "--log-level", "warn")
	natstest.Eventually(t, 10*time.Second, func() bool {
		_, err := b.Registry.Get(ctx, "collector.us-east-1.more-us-east-1-1")
		return err == nil
	}, "fleet with another prefix not registered")
	if code, out := stopOther(); code != exitOK {
		t.Fatalf("simulate --id-prefix more exited %d: %s", code, out)
	}
	if code, out := stopFirst(); code != exitOK {
		t.Fatalf("first simulate exited %d: %s", code, out)
	}
}

// TestSimulateRegistersAndDeregisters runs `otelfleet simulate`, tails its load with
// `otelfleet events`, and stops it as Ctrl-C would.
func TestSimulateRegistersAndDeregisters(t *testing.T) {
	srv, b := provisioned(t)
	stopSim := bgCLI(t, "simulate", "--nats", srv.URL(), "--regions", "2", "--collectors", "2", "--interval", "100ms", "--pattern", "diurnal", "--log-level", "warn")
	ctx := context.Background()
	keys := []string{"collector.us-east-1.sim-us-east-1-1", "collector.us-east-1.sim-us-east-1-2", "collector.eu-west-1.sim-eu-west-1-1", "collector.eu-west-1.sim-eu-west-1-2"}
	natstest.Eventually(t, 10*time.Second, func() bool {
		for _, k := range keys {
			if _, err := b.Registry.Get(ctx, k); err != nil {
				return false
			}
		}
		return true
	}, "simulated collectors not registered")

	code, out, stderr := runCLI(t, "--nats", srv.URL(), "events", "-n", "8", "otlp.load.>")
	if code != exitOK {
		t.Fatalf("events: exit %d, %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8 {
		t.Fatalf("events printed %d lines:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if !strings.Contains(l, "otlp.load.") || !strings.Contains(l, "load.report.v1") || !strings.Contains(l, "qps=") || !strings.Contains(l, "top=checkout:") {
			t.Fatalf("line %q", l)
		}
	}
	code, out, _ = runCLI(t, "--nats", srv.URL(), "events", "-n", "2", "-o", "json", "otlp.load.>")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct {
			Subject string            `json:"subject"`
			Type    string            `json:"type"`
			Source  string            `json:"source"`
			Data    events.LoadReport `json:"data"`
		}
		if code != exitOK || json.Unmarshal([]byte(l), &e) != nil || e.Type != "io.otelfleet.load.report.v1" || e.Data.Collector == "" || !strings.HasSuffix(e.Subject, e.Data.Collector) {
			t.Fatalf("-o json line %q", l)
		}
	}

	if code, out := stopSim(); code != exitOK {
		t.Fatalf("simulate exited %d: %s", code, out)
	}
	for _, k := range keys {
		if _, err := b.Registry.Get(ctx, k); err == nil {
			t.Fatalf("%s still registered after Ctrl-C", k)
		}
	}
}

func TestEventsTailsLifecycleEvents(t *testing.T) {
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	type result struct {
		code     int
		out, err string
	}
	res := make(chan result, 1)
	go func() {
		code, out, stderr := runCLI(t, "events", "--nats", srv.URL(), "-n", "1")
		res <- result{code, out, stderr}
	}()
	ev := events.RegistryEvent{V: 1, Event: events.EventRegistryExpired, Key: "collector.us-east-1.c1", InstanceKind: "collector", ID: "c1", Region: "us-east-1", Revision: 7, At: time.Now()}
	// Publish until the tail, which subscribes asynchronously, has shown one.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		msg, err := events.NewMsg(events.Default.EventSubject(events.EventRegistryExpired), "test", ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-res:
			if r.code != exitOK {
				t.Fatalf("exit %d: %s", r.code, r.err)
			}
			if want := "otlp.events.registry.expired  registry.expired.v1  event=registry.expired key=collector.us-east-1.c1 kind=collector id=c1 region=us-east-1 revision=7"; !strings.Contains(r.out, want) {
				t.Fatalf("output %q, want %q", r.out, want)
			}
			return
		case <-deadline:
			t.Fatal("no event shown")
		case <-tick.C:
		}
	}
}

func TestEventLine(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	load := events.LoadReport{V: 1, Region: "r1", Collector: "c1", At: at, QPS: 1234.5, Capacity: 2500, QueueDepth: 6, AvgLatencyMS: 4.86,
		ErrorRate: 0.0005, CPU: 0.41, Memory: 200 << 20, Healthy: true, Services: []events.ServiceRate{{Name: "checkout", SpansPerSec: 480}}}
	loadMsg, err := loadreport.NewMsg(events.Default, "test", load)
	if err != nil {
		t.Fatal(err)
	}
	plain := nats.NewMsg("otlp.events.config.changed")
	plain.Data = []byte(`{"v":1,"key":"global","version":4,"by":"alice smith","changed":["sampling_rate","degradation"],"config":{"a":1}}`)
	badLoad := nats.NewMsg("otlp.load.r1.c2")
	badLoad.Data = loadMsg.Data
	tests := []struct {
		name string
		msg  *nats.Msg
		want string
	}{
		{name: "load report", msg: loadMsg, want: "otlp.load.r1.c1  load.report.v1  qps=1235 cap=2500 util=49% queue=6 lat=4.9ms err=0.05% cpu=41% mem=200MiB healthy top=checkout:480"},
		{name: "generic JSON without headers", msg: plain, want: `otlp.events.config.changed  -  key=global version=4 by="alice smith" changed=[sampling_rate,degradation] config={1 fields}`},
		{name: "load report on the wrong subject", msg: badLoad, want: `INVALID invalid load report`},
		{name: "not JSON", msg: &nats.Msg{Subject: "x", Data: []byte("hello")}, want: `x  -  (5 bytes, not JSON) "hello"`},
		{name: "truncated object", msg: &nats.Msg{Subject: "x", Data: []byte(`{"key":"global","version":4`)}, want: `x  -  (27 bytes, not JSON) "{\"key\":\"global\",\"version\":4"`},
		{name: "object then garbage", msg: &nats.Msg{Subject: "x", Data: []byte(`{"a":1} {`)}, want: `x  -  (9 bytes, not JSON) "{\"a\":1} {"`},
		{name: "JSON scalar", msg: &nats.Msg{Subject: "x", Data: []byte(`42`)}, want: `x  -  42`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := eventLine(tt.msg, at)
			if !strings.Contains(got, tt.want) {
				t.Fatalf("eventLine =\n%s\nwant it to contain\n%s", got, tt.want)
			}
		})
	}
}

// TestDevRunsASimulatedFleet checks that `otelfleet dev` runs the simulator by default:
// its load reports show in `otelfleet events otlp.load.>`.
func TestDevRunsASimulatedFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole dev stack")
	}
	port := freePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	stop := startDev(t, t.TempDir(), port, "--router=false", "--sinks", "0") // only the simulated fleet reports load
	code, out, stderr := runCLI(t, "--nats", url, "events", "-n", "12", "otlp.load.>")
	if code != exitOK {
		t.Fatalf("events: exit %d: %s", code, stderr)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasPrefix(f[1], "otlp.load.") || f[2] != "load.report.v1" {
			t.Fatalf("line %q", l)
		}
		seen[strings.Split(f[1], ".")[2]] = true
	}
	if !seen["us-east-1"] || !seen["eu-west-1"] || !seen["ap-south-1"] {
		t.Fatalf("regions seen %v, want the three simulated ones", seen)
	}
	if code := stop(); code != exitOK {
		t.Fatalf("dev exited %d", code)
	}
}

// FuzzEventLine: any payload on any subject gives one bounded line, never a panic, and a
// payload that is not JSON is never summarised as fields.
func FuzzEventLine(f *testing.F) {
	for _, s := range []string{`{"v":1,"key":"global"}`, `{"key":`, `{"a":1} {`, "hello", "", `[1,2]`, `{"registration":{"health":{"status":"ok"}}}`} {
		f.Add("otlp.events.x", []byte(s))
	}
	f.Add("otlp.load.r1.c1", []byte(`{"v":1,"region":"r1"`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		line := eventLine(&nats.Msg{Subject: subject, Data: data}, time.Unix(0, 0))
		if !strings.Contains(subject, "\n") && strings.Contains(line, "\n") {
			t.Fatalf("line break in %q", line)
		}
		if !json.Valid(data) && len(data) > 0 && !strings.Contains(line, "not JSON") && !strings.Contains(line, "INVALID") {
			t.Fatalf("not JSON %q summarised as %q", data, line)
		}
	})
}
