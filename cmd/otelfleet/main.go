// Command otelfleet is the command line of the otelfleet control plane: the all-in-one
// dev stack, and clients for config, registry, topology, sampling and leadership.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// commands lists every top-level command, in the order `otelfleet help` shows them.
var commands = []command{
	{name: "dev", summary: "run embedded NATS and every service in one process (the main job)", run: runDev},
	{name: "config", summary: "get, set, validate, roll back the global and regional config", run: runConfig},
	{name: "topology", summary: "the live fleet topology, and the best collector to send to", run: runTopology},
	{name: "sampling", summary: "the sampling decision in force, and how a service's rate was derived", run: runSampling},
	{name: "route", summary: "where a trace goes now: its sampling rate and verdict, its backend and fail-over order, and why", run: runRoute},
	{name: "router", summary: "a router's backends and counters (router status)", run: runRouter},
	{name: "collectors", summary: "collector configs for OpAMP-managed collectors (set, validate, history, rollback) and their rollouts", run: runCollectors},
	{name: "registry", summary: "list registered collectors and services", run: runRegistry},
	{name: "agent", summary: "register one collector and heart-beat until stopped", run: runAgent},
	{name: "elect", summary: "campaign for a leadership role and print every change (resigns on SIGTERM)", run: runElect},
	{name: "leader", summary: "each leadership role with its holder, fencing token and since when", run: runLeader},
	{name: "lock", summary: "run a command while holding a distributed lock", run: runLock},
	{name: "sink", summary: "run a real OTLP backend that registers as a collector, reports its load and counts spans per trace", run: runSink},
	{name: "simulate", summary: "run a simulated fleet of collectors that register and report load", run: runSimulate},
	{name: "proxy", summary: "publish one port in front of every replica of a scaled service (TCP, re-resolving its DNS name)", run: runProxy},
	{name: "health", summary: "probe a /readyz or /healthz URL: exit 0 when it answers 200 (container healthchecks)", run: runHealth},
	{name: "events", summary: "tail lifecycle events (or load reports: events 'otlp.load.>') readably", run: runEvents},
	{name: "version", summary: "print the version", run: runVersion},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
