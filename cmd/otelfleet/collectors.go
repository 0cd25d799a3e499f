package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/knobs"
	"github.com/otelfleet/otelfleet/pkg/kvwatch"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	configsvc "github.com/otelfleet/otelfleet/services/config"
)

const collectorsUsage = `collectors COMMAND [flags]

Commands:
  config set -f FILE --group G [--selector region=R,key=value] [--canary PCT] [--waves N] [--soak D]
                                         validate a collector config (YAML) against the group's agents and store it
  config validate -f FILE --group G [--selector S]
                                         validate without storing (component types checked when NATS is reachable)
  config get --group G [-o yaml|json]    the group's collector config in force
  config ls [-o table|json]              every group with its version and selector
  config history --group G [-o table|json]
  config rollback --group G --to VERSION store a kept version again as the newest
  rollout status [--group G] [-o table|json]
                                         each group's rollout and, per agent, version, status, error`

func runCollectors(ctx context.Context, env *cliEnv, args []string) error {
	return env.dispatch(ctx, "collectors", collectorsUsage, args, "", map[string]subcommand{
		"config": func(ctx context.Context, env *cliEnv, args []string) error {
			return env.dispatch(ctx, "collectors config", collectorsUsage, args, "", map[string]subcommand{
				"set":      collectorsSet,
				"validate": collectorsValidate,
				"get":      collectorsGet,
				"ls":       collectorsList,
				"history":  collectorsHistory,
				"rollback": collectorsRollback,
			})
		},
		"rollout": func(ctx context.Context, env *cliEnv, args []string) error {
			return env.dispatch(ctx, "collectors rollout", collectorsUsage, args, "status", map[string]subcommand{"status": rolloutStatus})
		},
	})
}

func groupFlag(k *knobs.Set) *string {
	var g string
	k.String(&g, "group", "OTELFLEET_COLLECTOR_GROUP", "", "collector group (the config key is collector.<group>)")
	return &g
}

func needGroup(cmd, group string) error {
	if group == "" {
		return usageError("%s: --group G is required", cmd)
	}
	return nil
}

// collectorRequest reads the flags shared by set and validate.
type collectorFlags struct {
	file, group, selector *string
	policy                fleetconfig.RolloutPolicy
	soak, timeout         time.Duration
}

func bindCollectorFlags(fs *flag.FlagSet, k *knobs.Set) *collectorFlags {
	f := &collectorFlags{file: fs.String("f", "", "collector config file (the collector's YAML; - for stdin)"), group: groupFlag(k)}
	var sel string
	k.String(&sel, "selector", "OTELFLEET_COLLECTOR_SELECTOR", "", "agents of the group: region=R and/or agent attributes key=value, comma separated (empty: every agent)")
	f.selector = &sel
	k.Float(&f.policy.CanaryPercent, "canary", "OTELFLEET_ROLLOUT_CANARY", fleetconfig.DefaultCanaryPercent, "share of the group's agents in the canary wave (percent; at least one agent)")
	k.Int(&f.policy.Waves, "waves", "OTELFLEET_ROLLOUT_WAVES", fleetconfig.DefaultWaves, "waves after the canary")
	k.Duration(&f.soak, "soak", "OTELFLEET_ROLLOUT_SOAK", time.Duration(fleetconfig.DefaultSoak), "how long a wave stays APPLIED and healthy before the next")
	k.Duration(&f.timeout, "wave-timeout", "OTELFLEET_ROLLOUT_WAVE_TIMEOUT", time.Duration(fleetconfig.DefaultWaveTimeout), "how long a wave may take before the rollout fails and rolls back")
	return f
}

func (f *collectorFlags) request(cmd, by string) (configsvc.CollectorRequest, error) {
	if err := needGroup(cmd, *f.group); err != nil {
		return configsvc.CollectorRequest{}, err
	}
	data, err := readConfigFile(*f.file)
	if err != nil {
		return configsvc.CollectorRequest{}, err
	}
	sel, err := fleetconfig.ParseSelector(*f.selector)
	if err != nil {
		return configsvc.CollectorRequest{}, usageError("%s: --selector: %v", cmd, err)
	}
	p := f.policy
	p.Soak, p.WaveTimeout = fleetconfig.Duration(f.soak), fleetconfig.Duration(f.timeout)
	return configsvc.CollectorRequest{Group: *f.group, Selector: sel, Config: string(data), Rollout: p, By: by}, nil
}

// localCheck validates the document offline; a bad one is refused even with NATS down.
func (env *cliEnv) localCheck(file string, req configsvc.CollectorRequest) error {
	doc := fleetconfig.CollectorConfig{Selector: req.Selector, Config: req.Config, Rollout: req.Rollout}
	if err := doc.Validate(req.Group); err != nil {
		env.printProblems(file, err)
		return refused(fmt.Errorf("%s is invalid; nothing was changed", file))
	}
	return nil
}

// collectorRefusal prints the problems and notes a refused collector put carries.
func (env *cliEnv) collectorRefusal(file string, err error) error {
	var me *microapi.Error
	if errors.As(err, &me) && me.Code == microapi.CodeBadRequest && len(me.Body) > 0 {
		var rep configsvc.CollectorValidateReply
		if json.Unmarshal(me.Body, &rep) == nil && len(rep.Problems) > 0 {
			env.printProblems(file, &fleetconfig.ValidationError{Problems: rep.Problems})
			env.printNotes(rep.Notes)
			return refused(fmt.Errorf("%s is invalid; nothing was changed", file))
		}
	}
	return env.configRefusal(file, err)
}

func (env *cliEnv) printNotes(notes []string) {
	for _, n := range notes {
		fmt.Fprintln(env.stderr, "note: "+n)
	}
}

func collectorsSet(ctx context.Context, env *cliEnv, args []string) error {
	fs, k := env.flags("collectors config set", "collectors config set -f FILE --group G [--selector S] [--canary PCT] [--waves N] [--soak D] [--if-version N]")
	f := bindCollectorFlags(fs, k)
	var by string
	k.String(&by, "by", "OTELFLEET_USER", whoAmI(), "who makes the change (recorded as updated_by)")
	ifVersion := fs.Int64("if-version", -1, "refuse unless the group's stored version is this one (compare-and-set)")
	out := outputFlag(fs, "text", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	req, err := f.request("collectors config set", by)
	if err != nil {
		return err
	}
	if err := env.localCheck(*f.file, req); err != nil {
		return err
	}
	if *ifVersion >= 0 {
		v := uint64(*ifVersion)
		req.IfVersion = &v
	}
	nc, err := env.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	var c configsvc.Change
	if err := env.request(ctx, nc, events.ServiceConfig, "collector.put", req, &c); err != nil {
		return env.collectorRefusal(*f.file, err)
	}
	if *out == "json" {
		return env.printJSON(c)
	}
	if c.Unchanged {
		fmt.Fprintf(env.stdout, "%s: unchanged at version %d (same content)\n", c.Key, c.NewVersion)
		return nil
	}
	fmt.Fprintf(env.stdout, "%s: version %d → %d (changed: %s); follow it with otelfleet collectors rollout status --group %s\n", c.Key, c.OldVersion, c.NewVersion, orNone(c.Changed), req.Group)
	return nil
}

func collectorsValidate(ctx context.Context, env *cliEnv, args []string) error {
	fs, k := env.flags("collectors config validate", "collectors config validate -f FILE --group G [--selector S] [-o text|json]")
	f := bindCollectorFlags(fs, k)
	out := outputFlag(fs, "text", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	req, err := f.request("collectors config validate", "")
	if err != nil {
		return err
	}
	var rep configsvc.CollectorValidateReply
	doc := fleetconfig.CollectorConfig{Selector: req.Selector, Config: req.Config, Rollout: req.Rollout}
	if err := doc.Validate(req.Group); err != nil {
		rep.ValidateReply = configsvc.ValidateReply{Error: err.Error()}
		var ve *fleetconfig.ValidationError
		if errors.As(err, &ve) {
			rep.Problems = ve.Problems
		}
	} else if nc, derr := env.dial(); derr != nil {
		rep.Valid = true
		rep.Notes = []string{"component types were not checked: " + derr.Error()}
	} else {
		err := env.request(ctx, nc, events.ServiceConfig, "collector.validate", req, &rep)
		nc.Close()
		if err != nil {
			rep = configsvc.CollectorValidateReply{ValidateReply: configsvc.ValidateReply{Valid: true}, Notes: []string{"component types were not checked: " + err.Error()}}
		}
	}
	if *out == "json" {
		if err := env.printJSON(rep); err != nil {
			return err
		}
	} else {
		if len(rep.Problems) > 0 {
			env.printProblems(*f.file, &fleetconfig.ValidationError{Problems: rep.Problems})
		} else if !rep.Valid {
			fmt.Fprintf(env.stderr, "%s: %s\n", *f.file, rep.Error)
		}
		env.printNotes(rep.Notes)
	}
	if !rep.Valid {
		return refused(fmt.Errorf("%s is invalid", *f.file))
	}
	if *out != "json" {
		fmt.Fprintf(env.stdout, "%s is valid for group %s (%d matching agents)\n", *f.file, req.Group, len(rep.Agents))
	}
	return nil
}

func collectorsGet(ctx context.Context, env *cliEnv, args []string) error {
	fs, k := env.flags("collectors config get", "collectors config get --group G [-o yaml|json]")
	group := groupFlag(k)
	out := outputFlag(fs, "yaml", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := needGroup("collectors config get", *group); err != nil {
		return err
	}
	var (
		doc  fleetconfig.CollectorConfig
		warn *configsvc.HistoryEntry
	)
	if err := env.withConfigStore(ctx, func(ctx context.Context, store *configsvc.Store) error {
		var err error
		if doc, warn, err = store.Collector(ctx, *group); err != nil {
			return refused(err)
		}
		return nil
	}); err != nil {
		return err
	}
	if warn != nil {
		fmt.Fprintf(env.stderr, "warning: the newest stored value (revision %d) is invalid and not in force; showing the last valid version: %s\n", warn.Revision, warn.Error)
	}
	if *out == "json" {
		return env.printJSON(doc)
	}
	p := doc.Rollout.WithDefaults()
	fmt.Fprintf(env.stdout, "# group %s, version %d, selector %s, by %s at %s\n# rollout: canary %v%%, %d waves, soak %v, wave timeout %v\n",
		*group, doc.Version, doc.Selector, doc.UpdatedBy, doc.UpdatedAt.Format(time.RFC3339), p.CanaryPercent, p.Waves, p.Soak, p.WaveTimeout)
	fmt.Fprint(env.stdout, strings.TrimLeft(doc.Config, "\n"))
	return nil
}

func collectorsList(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("collectors config ls", "collectors config ls [-o table|json]")
	out := outputFlag(fs, "table", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var all map[string]fleetconfig.CollectorConfig
	if err := env.withConfigStore(ctx, func(ctx context.Context, store *configsvc.Store) error {
		var err error
		all, _, err = store.Collectors(ctx)
		return err
	}); err != nil {
		return err
	}
	groups := make([]string, 0, len(all))
	for g := range all {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	if *out == "json" {
		rows := make([]configsvc.CollectorListEntry, 0, len(groups))
		for _, g := range groups {
			c := all[g]
			rows = append(rows, configsvc.CollectorListEntry{Group: g, Version: c.Version, Selector: c.Selector.String(), UpdatedAt: c.UpdatedAt, UpdatedBy: c.UpdatedBy})
		}
		return env.printJSON(rows)
	}
	tw := env.table()
	fmt.Fprintln(tw, "GROUP\tVERSION\tSELECTOR\tUPDATED\tBY")
	for _, g := range groups {
		c := all[g]
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", g, c.Version, c.Selector, since(c.UpdatedAt), c.UpdatedBy)
	}
	return tw.Flush()
}

func collectorsHistory(ctx context.Context, env *cliEnv, args []string) error {
	fs, k := env.flags("collectors config history", "collectors config history --group G [-o table|json]")
	group := groupFlag(k)
	out := outputFlag(fs, "table", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	key, err := events.CollectorConfigKey(*group)
	if err != nil {
		return usageError("collectors config history: --group: %v", err)
	}
	var hist []configsvc.HistoryEntry
	if err := env.withConfigStore(ctx, func(ctx context.Context, store *configsvc.Store) error {
		var err error
		if hist, err = store.History(ctx, key); err != nil {
			return refused(err)
		}
		return nil
	}); err != nil {
		return err
	}
	return env.printHistory(hist, *out)
}

func collectorsRollback(ctx context.Context, env *cliEnv, args []string) error {
	fs, k := env.flags("collectors config rollback", "collectors config rollback --group G --to VERSION")
	group := groupFlag(k)
	to := fs.Uint64("to", 0, "version to restore (see collectors config history)")
	var by string
	k.String(&by, "by", "OTELFLEET_USER", whoAmI(), "who makes the change")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := needGroup("collectors config rollback", *group); err != nil {
		return err
	}
	if *to == 0 {
		return usageError("collectors config rollback: --to VERSION is required")
	}
	nc, err := env.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	var c configsvc.Change
	if err := env.request(ctx, nc, events.ServiceConfig, "collector.rollback", configsvc.CollectorRollbackRequest{Group: *group, To: *to, By: by}, &c); err != nil {
		return env.configRefusal("collector."+*group, err)
	}
	fmt.Fprintf(env.stdout, "%s: version %d → %d (content of version %d; changed: %s)\n", c.Key, c.OldVersion, c.NewVersion, *to, orNone(c.Changed))
	return nil
}

func rolloutStatus(ctx context.Context, env *cliEnv, args []string) error {
	fs, k := env.flags("collectors rollout status", "collectors rollout status [--group G] [-o table|json]")
	group := groupFlag(k)
	out := outputFlag(fs, "table", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	nc, _, kv, err := env.openBucket(ctx, events.Namespace.RolloutsBucket)
	if err != nil {
		return err
	}
	defer nc.Close()
	rctx, cancel := context.WithTimeout(ctx, env.timeout)
	defer cancel()
	entries, err := kvwatch.Current(rctx, kv)
	if err != nil {
		return err
	}
	states := []events.RolloutState{}
	for _, e := range entries {
		g, ok := strings.CutPrefix(e.Key(), events.RolloutKeyPrefix)
		if !ok || e.Operation() != jetstream.KeyValuePut || (*group != "" && g != *group) {
			continue
		}
		var st events.RolloutState
		if err := events.Decode(e.Value(), &st); err != nil {
			fmt.Fprintf(env.stderr, "warning: %s holds an invalid rollout state: %v\n", e.Key(), err)
			continue
		}
		states = append(states, st)
	}
	sort.Slice(states, func(i, j int) bool { return states[i].Group < states[j].Group })
	if *out == "json" {
		return env.printJSON(states)
	}
	if len(states) == 0 {
		if *group != "" {
			return refused(fmt.Errorf("no rollout for group %s (is a collector config set and the opamp service running?)", *group))
		}
		fmt.Fprintln(env.stdout, "no rollouts")
		return nil
	}
	tw := env.table()
	for i, st := range states {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		good := "-"
		if st.Good != nil {
			good = fmt.Sprint(st.Good.Version)
		}
		waves := fmt.Sprintf("wave %d of %d", st.Wave+1, len(st.Waves))
		if len(st.Waves) == 0 {
			waves = "no agent of the group accepts remote config (agents that join later get this version)"
		}
		fmt.Fprintf(tw, "group %s: version %d %s, %s, last good %s, updated %s\n", st.Group, st.Target.Version, strings.ToUpper(st.Phase), waves, good, since(st.UpdatedAt))
		if st.Settled > 0 {
			fmt.Fprintf(tw, "  %d more agents APPLIED and healthy on version %d (not listed)\n", st.Settled, st.Target.Version)
		}
		if st.Reason != "" {
			fmt.Fprintf(tw, "  reason: %s\n", st.Reason)
		}
		fmt.Fprintln(tw, "  AGENT\tREGION\tWAVE\tVERSION\tSTATUS\tHEALTHY\tERROR")
		for _, a := range st.Agents {
			status, healthy := a.Status, fmt.Sprint(a.Healthy)
			if a.Gone {
				status, healthy = "GONE", "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%s\t%s\n", cmp.Or(a.ID, a.UID), cmp.Or(a.Region, "-"), a.Wave, a.Version, cmp.Or(status, "-"), healthy, cmp.Or(a.Error, "-"))
		}
	}
	return tw.Flush()
}
