package main

import (
	"context"
	"fmt"

	"github.com/otelfleet/otelfleet/pkg/platform"
)

const healthUsage = `health [--url http://127.0.0.1:8080/readyz] [--timeout 3s]

Exits 0 when URL answers 200 and 1 otherwise (the reason on stderr): the container
healthcheck of images that have no shell or curl.`

func runHealth(ctx context.Context, env *cliEnv, args []string) error {
	var url string
	fs, k := env.flags("health", healthUsage)
	k.String(&url, "url", "HEALTH_URL", "http://127.0.0.1:8080/readyz", "URL to probe")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError("health: unexpected argument %q", pos[0])
	}
	if err := k.Err(); err != nil {
		return usageError("%v", err)
	}
	if err := platform.Probe(ctx, url, env.timeout); err != nil {
		return refused(err)
	}
	fmt.Fprintln(env.stdout, "ok")
	return nil
}
