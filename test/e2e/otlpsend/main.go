// Command otlpsend is the e2e suite's OpenTelemetry SDK client: `send` exports traces
// through the OTel Go SDK's OTLP/gRPC exporter (otlptracegrpc) and records every trace
// whose export was acknowledged; `check` polls the sinks' /v1/sink until every recorded
// trace has all its spans there.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: otlpsend send|check [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "send":
		err = send(ctx, os.Args[2:])
	case "check":
		err = check(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want send or check)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "otlpsend:", err)
		os.Exit(1)
	}
}

// acked is one line of the record: a trace whose export returned success.
type acked struct {
	TraceID string `json:"trace_id"`
	Spans   int    `json:"spans"`
	AtMS    int64  `json:"at_ms"`
}

func send(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "127.0.0.1:4317", "OTLP/gRPC endpoint")
	out := fs.String("out", "acked.jsonl", "file the acknowledged traces are appended to")
	workers := fs.Int("workers", 4, "concurrent exporters (one gRPC connection each)")
	spans := fs.Int("spans", 5, "spans per trace (one export per trace)")
	dur := fs.Duration("for", 10*time.Second, "how long to send")
	every := fs.Duration("every", 20*time.Millisecond, "pause between a worker's exports")
	readyAfter := fs.Int("ready-after", 50, "acknowledged traces after which --ready is created")
	ready := fs.String("ready", "", "file created once --ready-after traces are acknowledged")
	service := fs.String("service", "e2e", "service.name of the spans")
	pause := fs.String("pause", "", "while this file exists, workers start no export; FILE.idle is created once every worker is idle")
	maxFailures := fs.Int64("max-failures", -1, "exit 1 when more exports than this fail after the exporter's retries (-1: any number)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	var mu sync.Mutex // one whole line per write: the script reads the file while sending
	var n, failures, idle atomic.Int64
	res := resource.NewSchemaless(attribute.String("service.name", *service))
	ctx, cancel := context.WithTimeout(ctx, *dur)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, *workers)
	for i := range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exp, err := otlptracegrpc.New(context.Background(),
				otlptracegrpc.WithEndpoint(*endpoint), otlptracegrpc.WithInsecure(),
				otlptracegrpc.WithTimeout(5*time.Second),
				otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: 50 * time.Millisecond, MaxInterval: 500 * time.Millisecond, MaxElapsedTime: 20 * time.Second}),
				otlptracegrpc.WithDialOption(grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 500 * time.Millisecond}, MinConnectTimeout: time.Second})))
			if err != nil {
				errs[i] = err
				return
			}
			defer exp.Shutdown(context.Background()) //nolint:errcheck
			for ctx.Err() == nil {
				if *pause != "" && waitWhilePaused(ctx, *pause, &idle, int64(*workers)) {
					continue
				}
				var tid trace.TraceID
				_, _ = rand.Read(tid[:])
				stubs := make(tracetest.SpanStubs, *spans)
				now := time.Now()
				for j := range stubs {
					var sid trace.SpanID
					_, _ = rand.Read(sid[:])
					stubs[j] = tracetest.SpanStub{
						Name:        fmt.Sprintf("op-%d", j),
						SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}),
						StartTime:   now, EndTime: now.Add(time.Millisecond), Resource: res,
					}
				}
				// The export gets its own deadline, not ctx: a trace in flight when
				// sending stops is still either acknowledged or not.
				ectx, ecancel := context.WithTimeout(context.Background(), 25*time.Second)
				err := exp.ExportSpans(ectx, stubs.Snapshots())
				ecancel()
				if err != nil {
					if failures.Add(1) <= 3 {
						fmt.Fprintf(os.Stderr, "otlpsend: export failed (not acknowledged): %v\n", err)
					}
					continue
				}
				line, _ := json.Marshal(acked{TraceID: tid.String(), Spans: *spans, AtMS: time.Now().UnixMilli()})
				mu.Lock()
				_, werr := f.Write(append(line, '\n'))
				mu.Unlock()
				if werr != nil {
					errs[i] = werr
					return
				}
				if n.Add(1) == int64(*readyAfter) && *ready != "" {
					_ = os.WriteFile(*ready, nil, 0o644)
				}
				select {
				case <-ctx.Done():
				case <-time.After(*every):
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("otlpsend: %d traces acknowledged, %d exports failed after retries\n", n.Load(), failures.Load())
	if *maxFailures >= 0 && failures.Load() > *maxFailures {
		errs = append(errs, fmt.Errorf("%d exports failed after retries (at most %d allowed): clients did not fail over", failures.Load(), *maxFailures))
	}
	return errors.Join(errs...)
}

// waitWhilePaused blocks while the pause file exists; the last worker to go idle
// creates FILE.idle, and it is removed again on resume. It reports whether it paused.
func waitWhilePaused(ctx context.Context, file string, idle *atomic.Int64, workers int64) bool {
	if _, err := os.Stat(file); err != nil {
		return false
	}
	if idle.Add(1) == workers {
		_ = os.WriteFile(file+".idle", nil, 0o644)
	}
	for ctx.Err() == nil {
		if _, err := os.Stat(file); err != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	if idle.Add(-1) == workers-1 {
		_ = os.Remove(file + ".idle")
	}
	return true
}

// sinkCounts is the part of /v1/sink the check reads.
type sinkCounts struct {
	Recent []struct {
		TraceID string `json:"trace_id"`
		Spans   int    `json:"spans"`
	} `json:"recent"`
}

func check(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	in := fs.String("acked", "acked.jsonl", "the record written by send")
	sinks := fs.String("sinks", "", "comma-separated /v1/sink URLs of every sink")
	within := fs.Duration("within", 30*time.Second, "how long to wait for every trace to arrive")
	killAt := fs.Int64("kill-at-ms", 0, "when a router was killed (unix ms): traces acknowledged in the --window before it may have been in its queue")
	window := fs.Duration("window", time.Second, "see --kill-at-ms")
	extra := fs.String("also", "", "a file of traces known to have arrived at a sink that was killed since (trace_id spans per line, JSON as /v1/sink recent)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	want, err := readAcked(*in)
	if err != nil {
		return err
	}
	if len(want) == 0 {
		return fmt.Errorf("%s: no acknowledged traces", *in)
	}
	known := map[string]int{}
	if *extra != "" {
		b, err := os.ReadFile(*extra)
		if err != nil {
			return err
		}
		var c sinkCounts
		if err := json.Unmarshal(b, &c); err != nil {
			return fmt.Errorf("%s: %w", *extra, err)
		}
		for _, r := range c.Recent {
			known[r.TraceID] += r.Spans
		}
	}
	deadline := time.Now().Add(*within)
	for {
		got, err := readSinks(ctx, strings.Split(*sinks, ","), len(want))
		if err == nil {
			for id, n := range known {
				got[id] += n
			}
			var missing, excused []acked
			for _, a := range want {
				if got[a.TraceID] >= a.Spans {
					continue
				}
				if *killAt > 0 && a.AtMS <= *killAt && a.AtMS > *killAt-window.Milliseconds() {
					excused = append(excused, a)
					continue
				}
				missing = append(missing, a)
			}
			if len(missing) == 0 {
				fmt.Printf("otlpsend: all %d acknowledged traces at the sinks", len(want)-len(excused))
				if *killAt > 0 {
					fmt.Printf("; %d acknowledged in the %v before the router kill missing (held in its queue)", len(excused), *window)
				}
				fmt.Println()
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d acknowledged traces missing or short at the sinks after %v (first: %s, acked at %d)", len(missing), len(want), *within, missing[0].TraceID, missing[0].AtMS)
			}
		} else if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func readAcked(path string) ([]acked, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []acked
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var a acked
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, a)
	}
	return out, sc.Err()
}

// readSinks sums the span counts per trace over every sink that answers (a killed sink
// does not; what it had is given by check --also); none answering is an error.
func readSinks(ctx context.Context, urls []string, n int) (map[string]int, error) {
	got := map[string]int{}
	answered := 0
	var errs []error
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s?recent=%d", u, n*2+1000), nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		answered++
		var c sinkCounts
		err = json.NewDecoder(resp.Body).Decode(&c)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", u, err)
		}
		for _, r := range c.Recent {
			got[r.TraceID] += r.Spans
		}
	}
	if answered == 0 {
		return nil, fmt.Errorf("no sink answered: %w", errors.Join(errs...))
	}
	return got, nil
}
