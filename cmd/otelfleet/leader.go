package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/election"
	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/lease"
)

const leaderUsage = `leader COMMAND [flags]

Commands:
  ls [--locks] [-o table|json]   each leadership role with its holder, fencing token and
                                 since when (--locks adds the distributed locks)`

func runLeader(ctx context.Context, env *cliEnv, args []string) error {
	return env.dispatch(ctx, "leader", leaderUsage, args, "", map[string]subcommand{"ls": leaderLs, "list": leaderLs})
}

// leaderRow is one line of `leader ls`.
type leaderRow struct {
	// Role is the leadership role (or, with --locks, the lock name and Lock true).
	Role      string    `json:"role"`
	Lock      bool      `json:"lock,omitempty"`
	Holder    string    `json:"holder"`
	Token     uint64    `json:"token"`
	Since     time.Time `json:"since"`
	RenewedAt time.Time `json:"renewed_at"`
}

func leaderLs(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("leader ls", "leader ls [--locks] [-o table|json]")
	locks := fs.Bool("locks", false, "also list distributed locks (keys lock.<name>)")
	out := outputFlag(fs, "table", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	nc, js, err := env.jetStream()
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := env.bucket(ctx, js, events.Namespace.LeasesBucket)
	if err != nil {
		return err
	}
	rows, err := env.readLeases(ctx, kv, *locks)
	if err != nil {
		return err
	}
	if *out == "json" {
		return env.printJSON(rows)
	}
	tw := env.table()
	fmt.Fprintln(tw, "ROLE\tHOLDER\tTOKEN\tSINCE\tRENEWED")
	for _, r := range rows {
		name := r.Role
		if r.Lock {
			name = "lock " + r.Role
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s (%s)\t%s\n", name, r.Holder, r.Token, r.Since.UTC().Format(time.RFC3339), since(r.Since), since(r.RenewedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rows) == 0 {
		fmt.Fprintln(env.stderr, "no leaders")
	}
	return nil
}

// readLeases reads every held lease with one watch, sorted by role.
func (env *cliEnv) readLeases(ctx context.Context, kv jetstream.KeyValue, withLocks bool) ([]leaderRow, error) {
	ctx, cancel := context.WithTimeout(ctx, env.timeout)
	defer cancel()
	entries, err := kvwatch.Current(ctx, kv)
	if err != nil {
		return nil, err
	}
	rows := []leaderRow{}
	for _, e := range entries {
		ld, ok := election.LeaderFromEntry(lease.Entry{Op: lease.OpPut, Revision: e.Revision(), Value: e.Value()})
		if !ok {
			fmt.Fprintf(env.stderr, "warning: %s: not a lease value\n", e.Key())
			continue
		}
		row := leaderRow{Role: e.Key(), Holder: ld.Holder, Token: ld.Token, Since: ld.Since, RenewedAt: ld.RenewedAt}
		if name, isLock := events.LockFromKey(e.Key()); isLock {
			if !withLocks {
				continue
			}
			row.Role, row.Lock = name, true
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b leaderRow) int {
		if a.Lock != b.Lock {
			if a.Lock {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Role, b.Role)
	})
	return rows, nil
}
