package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/microapi"
)

const routeUsage = `route TRACE_ID [--service S] [--region R] [-o table|json]

Asks a router (micro endpoint <root>.router.route) where a trace goes now: the sampling
rate of its service in the region and whether this trace ID is kept at it, the backend
it is sent to, the backends it fails over to, in order, and why. TRACE_ID is 32 hex
digits (not all zero); --service selects the sampling rate and routing rules, --region
the client's region (default: the router's).`

const routerUsage = `router status [-o table|json]

Commands:
  status   one router's backends (share of the trace-ID space, sent, failed, retried,
           rerouted, dropped, queue bytes, in flight) and its span counters`

func runRoute(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("route", routeUsage)
	out := outputFlag(fs, "table", "json")
	var q events.RouteQuery
	fs.StringVar(&q.Service, "service", "", "the trace's service.name")
	fs.StringVar(&q.Region, "region", "", "the client's region (default: the router's)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		fmt.Fprintln(env.stderr, "Usage: otelfleet "+routeUsage)
		return usageError("route: missing TRACE_ID")
	case len(pos) > 1:
		return usageError("route: unexpected argument %q (one TRACE_ID)", pos[1])
	}
	if q.TraceID, err = normalTraceID(pos[0]); err != nil {
		return usageError("route: %v", err)
	}
	if q.Region != "" {
		if err := events.CheckToken("--region", q.Region); err != nil {
			return usageError("route: %v", err)
		}
	}
	nc, err := env.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	var a events.RouteAnswer
	if err := routerRequest(ctx, env, nc, events.RouterOpRoute, q, &a); err != nil {
		return err
	}
	if *out == "json" {
		return env.printJSON(a)
	}
	kept := "no (sampled out)"
	if a.Kept {
		kept = "yes"
	}
	backend := "none: no backend can take the trace"
	if a.Backend != "" {
		backend = a.Backend + " (" + dash(a.Addr) + ")"
	}
	tw := env.table()
	fmt.Fprintf(tw, "TRACE\t%s\n", a.TraceID)
	fmt.Fprintf(tw, "SERVICE\t%s\n", dash(a.Service))
	fmt.Fprintf(tw, "RATE\t%v (th %s)\n", a.Rate, dash(a.Threshold))
	fmt.Fprintf(tw, "KEPT\t%s\n", kept)
	fmt.Fprintf(tw, "BACKEND\t%s\n", backend)
	fmt.Fprintf(tw, "REGION\t%s\n", dash(a.Region))
	fmt.Fprintf(tw, "STRATEGY\t%s\n", dash(a.Strategy))
	fmt.Fprintf(tw, "FALLBACKS\t%s\n", dash(strings.Join(a.Fallbacks, ", ")))
	fmt.Fprintf(tw, "ROUTER\t%s\n", dash(a.Router))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(a.Why) > 0 {
		fmt.Fprintln(env.stdout, "WHY")
		for _, w := range a.Why {
			fmt.Fprintln(env.stdout, "  - "+w)
		}
	}
	return nil
}

// errTraceID is wrapped by normalTraceID's errors.
var errTraceID = errors.New("not a trace ID")

// normalTraceID checks that s is a valid trace ID, 32 hex digits not all zero, and
// returns it in lowercase.
func normalTraceID(s string) (string, error) {
	var id [16]byte
	if len(s) != 32 {
		return "", fmt.Errorf("TRACE_ID %q: %w: want 32 hex digits, got %d characters", s, errTraceID, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return "", fmt.Errorf("TRACE_ID %q: %w: %v", s, errTraceID, err)
	}
	if id == [16]byte{} {
		return "", fmt.Errorf("TRACE_ID %q: %w: all zero is the invalid trace ID", s, errTraceID)
	}
	return hex.EncodeToString(id[:]), nil
}

func runRouter(ctx context.Context, env *cliEnv, args []string) error {
	return env.dispatch(ctx, "router", routerUsage, args, "status", map[string]subcommand{"status": routerStatus})
}

func routerStatus(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("router status", routerUsage)
	out := outputFlag(fs, "table", "json")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("router status: unexpected argument %q", pos[0])
	}
	nc, err := env.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	var st events.RouterStatus
	if err := routerRequest(ctx, env, nc, events.RouterOpStatus, nil, &st); err != nil {
		return err
	}
	if *out == "json" {
		return env.printJSON(st)
	}
	fmt.Fprintf(env.stdout, "router %s · region %s · strategy %s · OTLP gRPC %s · HTTP %s\n", st.Router, dash(st.Region), dash(st.Strategy), dash(st.GRPCAddr), dash(st.HTTPAddr))
	fmt.Fprintf(env.stdout, "spans: received %d · kept %d · sampled out %d · rate-limited %d · memory %s of %s\n",
		st.Received, st.Kept, st.Sampled, st.RateLimited, formatBytes(st.MemoryBytes), formatBytes(st.MemoryLimit))
	tw := env.table()
	fmt.Fprintln(tw, "BACKEND\tADDR\tREGION\tSHARE%\tSENT\tFAILED\tRETRIED\tREROUTED\tDROPPED\tQUEUE\tIN FLIGHT\tSTATE")
	for _, b := range st.Backends {
		state := "active"
		if b.Leaving {
			state = "leaving"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\n", b.Key, dash(b.Addr), dash(b.Region), b.Share*100,
			b.Sent, b.Failed, b.Retried, b.Rerouted, b.Dropped, formatBytes(b.QueueBytes), b.InFlight, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Backends) == 0 {
		fmt.Fprintln(env.stdout, "(no backends: no healthy collector with an address is registered)")
	}
	return nil
}

// routerRequest calls a router endpoint; no router answering is exit 1 with a message
// saying how to start one.
func routerRequest(ctx context.Context, env *cliEnv, nc *nats.Conn, op string, in, out any) error {
	err := env.request(ctx, nc, events.ServiceRouter, op, in, out)
	if microapi.CodeOf(err) == microapi.CodeUnavailable {
		return refused(fmt.Errorf("%w; start one with otelfleet dev or otelfleet-router", err))
	}
	return err
}

// formatBytes formats a byte count for people (a negative count as 0).
func formatBytes(n int64) string { return bytesIEC(uint64(max(n, 0))) }
