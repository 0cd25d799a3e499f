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
	{name: "version", summary: "print the version", run: runVersion},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
