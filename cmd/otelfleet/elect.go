package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/platform"
)

const electUsage = `elect ROLE [--id ID]

Campaigns for ROLE (a leadership role in the otlp_leases bucket, like sampler) and
prints a line on every leadership change, until stopped: SIGINT/SIGTERM resign, so
another candidate takes over at once. Lines look like
  2026-11-26T08:00:00Z elected role=demo id=a token=42
  2026-11-26T08:00:05Z lost role=demo id=a token=42 reason=resigned
  2026-11-26T08:00:05Z leader role=demo id=b token=44 (another candidate leads)`

func runElect(ctx context.Context, env *cliEnv, args []string) error {
	fs, k := env.flags("elect", electUsage)
	var id string
	k.String(&id, "id", "", defaultCandidateID(), "candidate id")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("elect: want exactly one ROLE, got %d arguments", len(pos))
	}
	role := pos[0]
	if err := (election.Config{Role: role, ID: id}).Validate(); err != nil {
		return usageError("elect: %v", err)
	}
	ns, err := env.namespace()
	if err != nil {
		return err
	}
	nc, js, log, err := env.longLived(ctx, "elect-"+id)
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := env.bucket(ctx, js, events.Namespace.LeasesBucket)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	line := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(env.stdout, "%s "+format+"\n", append([]any{time.Now().UTC().Format(time.RFC3339)}, args...)...)
	}
	e, err := election.NewKV(nc, kv, election.Config{
		Role: role, ID: id, Namespace: ns,
		OnLeader: func(l election.Leader) {
			if l.Holder != "" && l.Holder != id {
				line("leader role=%s id=%s token=%d", role, l.Holder, l.Token)
			}
		},
	}, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "otelfleet elect: campaigning for %s as %s at %s (Ctrl-C resigns)\n", role, id, env.nats.URL)
	return e.Run(ctx, func(t election.Term) {
		line("elected role=%s id=%s token=%d", role, id, t.Token)
		<-t.Ctx.Done()
		line("lost role=%s id=%s token=%d reason=%s", role, id, t.Token, t.Reason())
	})
}

// defaultCandidateID is <host>-<pid>, reduced to a valid name token.
func defaultCandidateID() string {
	host, _ := os.Hostname()
	return platform.SanitizeToken(fmt.Sprintf("%s-%d", host, os.Getpid()))
}
