package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
	"github.com/otelfleet/otelfleet/pkg/microapi"
	configsvc "github.com/otelfleet/otelfleet/services/config"
)

const configUsage = `config COMMAND [flags]

Commands:
  get [-o yaml|json]                          the config in force (warns when a stored value is invalid)
  set -f FILE [--if-version N] [--by NAME]    validate and store a config file (YAML)
  validate -f FILE [-o text|json]             validate a file offline (no NATS needed)
  history [--key global|region.R] [-o table|json]
                                              one entry per kept version
  rollback --to VERSION [--key K]             store a kept version again as the newest
  status [-o table|json]                      the version each instance has applied`

func runConfig(ctx context.Context, env *cliEnv, args []string) error {
	return env.dispatch(ctx, "config", configUsage, args, "", map[string]subcommand{
		"get":      configGet,
		"set":      configSet,
		"validate": func(_ context.Context, env *cliEnv, args []string) error { return configValidate(env, args) },
		"history":  configHistory,
		"rollback": configRollback,
		"status":   configStatus,
	})
}

// withConfigStore runs fn on the config bucket (read directly: it works without the
// config service), within the command's timeout.
func (env *cliEnv) withConfigStore(ctx context.Context, fn func(context.Context, *configsvc.Store) error) error {
	nc, js, err := env.jetStream()
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := env.bucket(ctx, js, events.Namespace.ConfigBucket)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, env.timeout)
	defer cancel()
	return fn(ctx, configsvc.NewStore(kv))
}

func configGet(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("config get", "config get [-o yaml|json]")
	out := outputFlag(fs, "yaml", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var (
		g       fleetconfig.Global
		warn    *configsvc.HistoryEntry
		regions map[string]fleetconfig.Region
		rwarns  []configsvc.HistoryEntry
	)
	if err := env.withConfigStore(ctx, func(ctx context.Context, store *configsvc.Store) error {
		var err error
		if g, warn, err = store.Global(ctx); err != nil {
			return err
		}
		regions, rwarns, err = store.Regions(ctx)
		return err
	}); err != nil {
		return err
	}
	if warn != nil {
		rwarns = append([]configsvc.HistoryEntry{*warn}, rwarns...)
	}
	for _, w := range rwarns {
		fmt.Fprintf(env.stderr, "warning: the newest stored value (revision %d) is invalid and not in force; showing the last valid version: %s\n", w.Revision, w.Error)
	}
	f := fleetconfig.File{Global: g, Regions: regions}
	if *out == "json" {
		return env.printJSON(f)
	}
	data, err := f.ToYAML()
	if err != nil {
		return err
	}
	_, err = env.stdout.Write(data)
	return err
}

func readConfigFile(path string) ([]byte, error) {
	if path == "" {
		return nil, usageError("-f FILE is required")
	}
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, refused(err)
	}
	return data, nil
}

// printProblems writes one line per validation problem, prefixed with the file name.
func (env *cliEnv) printProblems(file string, err error) {
	var ve *fleetconfig.ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			fmt.Fprintf(env.stderr, "%s: %s: %s\n", file, p.Path, p.Message)
		}
		return
	}
	fmt.Fprintf(env.stderr, "%s: %v\n", file, err)
}

func configValidate(env *cliEnv, args []string) error {
	fs, _ := env.flags("config validate", "config validate -f FILE [-o text|json]")
	file := fs.String("f", "", "config file to validate (YAML; - for stdin)")
	out := outputFlag(fs, "text", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	data, err := readConfigFile(*file)
	if err != nil {
		return err
	}
	_, err = fleetconfig.LoadFile(data)
	if *out == "json" {
		rep := struct {
			Valid    bool                  `json:"valid"`
			Problems []fleetconfig.Problem `json:"problems,omitempty"`
			Error    string                `json:"error,omitempty"`
		}{Valid: err == nil}
		var ve *fleetconfig.ValidationError
		if errors.As(err, &ve) {
			rep.Problems = ve.Problems
		} else if err != nil {
			rep.Error = err.Error()
		}
		if perr := env.printJSON(rep); perr != nil {
			return perr
		}
		if err != nil {
			return &exitError{code: exitRefused, err: fmt.Errorf("%s is invalid", *file)}
		}
		return nil
	}
	if err != nil {
		env.printProblems(*file, err)
		return refused(fmt.Errorf("%s is invalid", *file))
	}
	fmt.Fprintf(env.stdout, "%s is valid\n", *file)
	return nil
}

func whoAmI() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func configSet(ctx context.Context, env *cliEnv, args []string) error {
	fs, k := env.flags("config set", "config set -f FILE [--if-version N] [--by NAME]")
	file := fs.String("f", "", "config file to store (YAML; - for stdin)")
	var by string
	k.String(&by, "by", "OTELFLEET_USER", whoAmI(), "who makes the change (recorded as updated_by)")
	ifVersion := fs.Int64("if-version", -1, "refuse unless the stored global version is this one (compare-and-set)")
	out := outputFlag(fs, "text", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	data, err := readConfigFile(*file)
	if err != nil {
		return err
	}
	// Validate locally first: a bad file is refused even when NATS is down.
	if _, err := fleetconfig.LoadFile(data); err != nil {
		env.printProblems(*file, err)
		return refused(fmt.Errorf("%s is invalid; nothing was changed", *file))
	}
	nc, err := env.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	req := configsvc.PutRequest{File: string(data), By: by}
	if *ifVersion >= 0 {
		v := uint64(*ifVersion)
		req.IfVersion = &v
	}
	var rep configsvc.PutReply
	if err := env.request(ctx, nc, events.ServiceConfig, "put", req, &rep); err != nil {
		return env.configRefusal(*file, err)
	}
	if *out == "json" {
		return env.printJSON(rep)
	}
	for _, c := range rep.Changes {
		if c.Unchanged {
			fmt.Fprintf(env.stdout, "%s: unchanged at version %d (same content)\n", c.Key, c.NewVersion)
			continue
		}
		fmt.Fprintf(env.stdout, "%s: version %d → %d (changed: %s)\n", c.Key, c.OldVersion, c.NewVersion, orNone(c.Changed))
	}
	return nil
}

// configRefusal prints the problems a refused write carries.
func (env *cliEnv) configRefusal(file string, err error) error {
	var me *microapi.Error
	if errors.As(err, &me) && me.Code == microapi.CodeBadRequest && len(me.Body) > 0 {
		var rep configsvc.ValidateReply
		if json.Unmarshal(me.Body, &rep) == nil && len(rep.Problems) > 0 {
			env.printProblems(file, &fleetconfig.ValidationError{Problems: rep.Problems})
			return refused(fmt.Errorf("%s is invalid; nothing was changed", file))
		}
	}
	if errors.As(err, &me) && me.Code != microapi.CodeUnavailable {
		return refused(err)
	}
	return err
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

func configHistory(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("config history", "config history [--key global|region.R] [-o table|json]")
	key := fs.String("key", events.GlobalConfigKey, "config key: global or region.<region>")
	out := outputFlag(fs, "table", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var hist []configsvc.HistoryEntry
	if err := env.withConfigStore(ctx, func(ctx context.Context, store *configsvc.Store) error {
		var err error
		if hist, err = store.History(ctx, *key); err != nil {
			return refused(err)
		}
		return nil
	}); err != nil {
		return err
	}
	return env.printHistory(hist, *out)
}

// printHistory prints a key's kept versions as a table or JSON.
func (env *cliEnv) printHistory(hist []configsvc.HistoryEntry, out string) error {
	if out == "json" {
		return env.printJSON(hist)
	}
	tw := env.table()
	fmt.Fprintln(tw, "VERSION\tREVISION\tUPDATED\tBY\tCHANGED")
	for _, h := range hist {
		switch {
		case h.Deleted:
			fmt.Fprintf(tw, "-\t%d\t-\t-\t(deleted)\n", h.Revision)
		case !h.Valid:
			fmt.Fprintf(tw, "-\t%d\t-\t-\tINVALID: %s\n", h.Revision, h.Error)
		default:
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", h.Version, h.Revision, h.UpdatedAt.Format("2006-01-02 15:04:05Z07:00"), h.UpdatedBy, orNone(h.Changed))
		}
	}
	return tw.Flush()
}

func configRollback(ctx context.Context, env *cliEnv, args []string) error {
	fs, k := env.flags("config rollback", "config rollback --to VERSION [--key global|region.R]")
	key := fs.String("key", events.GlobalConfigKey, "config key: global or region.<region>")
	to := fs.Uint64("to", 0, "version to restore (see config history)")
	var by string
	k.String(&by, "by", "OTELFLEET_USER", whoAmI(), "who makes the change")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *to == 0 {
		return usageError("config rollback: --to VERSION is required")
	}
	nc, err := env.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	var c configsvc.Change
	if err := env.request(ctx, nc, events.ServiceConfig, "rollback", configsvc.RollbackRequest{Key: *key, To: *to, By: by}, &c); err != nil {
		return env.configRefusal(*key, err)
	}
	fmt.Fprintf(env.stdout, "%s: version %d → %d (content of version %d; changed: %s)\n", c.Key, c.OldVersion, c.NewVersion, *to, orNone(c.Changed))
	return nil
}

func configStatus(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("config status", "config status [-o table|json]")
	out := outputFlag(fs, "table", "json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	nc, err := env.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	var rep configsvc.StatusReply
	if err := env.request(ctx, nc, events.ServiceConfig, "status", nil, &rep); err != nil {
		return err
	}
	if *out == "json" {
		return env.printJSON(rep)
	}
	fmt.Fprintf(env.stdout, "stored global version: %d\n", rep.GlobalVersion)
	tw := env.table()
	fmt.Fprintln(tw, "SERVICE\tINSTANCE\tGLOBAL\tIN SYNC\tAPPLIED\tREJECTED\tLAST ERROR")
	for _, r := range rep.Instances {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%s\t%d\t%s\n", r.Service, r.Instance, r.GlobalVersion, rep.InSync(r), since(r.AppliedAt), r.Rejected, r.LastError)
	}
	return tw.Flush()
}
