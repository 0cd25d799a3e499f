package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otelfleet/otelfleet/pkg/events"
	samplersvc "github.com/otelfleet/otelfleet/services/sampler"
)

const samplingUsage = `sampling [get] [-o table|json] [--top N]
       otelfleet sampling explain SERVICE [--region R] [-o text|json]

Commands:
  get (default)     the sampling decision in force (KV otlp_sampling, key decision): version,
                    leader, fencing token, age, strategy, degraded, fleet traffic, and the rate
                    of every service seen in the load reports (busiest first), then the rate
                    of unseen services per priority rule and the default
  explain SERVICE   how SERVICE's rate was derived, step by step, recomputed from the
                    parameters and inputs stored in the decision; --region applies that
                    region's regional_sampling_rate`

func runSampling(ctx context.Context, env *cliEnv, args []string) error {
	return env.dispatch(ctx, "sampling", samplingUsage, args, "get", map[string]subcommand{"get": samplingGet, "explain": samplingExplain})
}

// readDecision reads the stored decision.
func (env *cliEnv) readDecision(ctx context.Context) (events.Decision, error) {
	nc, js, err := env.jetStream()
	if err != nil {
		return events.Decision{}, err
	}
	defer nc.Close()
	kv, err := env.bucket(ctx, js, events.Namespace.SamplingBucket)
	if err != nil {
		return events.Decision{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, env.timeout)
	defer cancel()
	d, _, err := samplersvc.NewStore(kv).Get(ctx)
	if errors.Is(err, samplersvc.ErrNoDecision) {
		return d, refused(fmt.Errorf("no sampling decision stored yet in %s (is otelfleet-sampler, or otelfleet dev, running?)", kv.Bucket()))
	}
	return d, err
}

// smpDecisionAge returns how old d is and whether it is stale (older than 3 intervals).
func smpDecisionAge(d events.Decision) (time.Duration, bool) {
	age := max(time.Since(d.At), 0)
	interval := time.Duration(d.IntervalMS) * time.Millisecond
	return age, interval > 0 && age > 3*interval
}

func samplingGet(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("sampling", samplingUsage)
	out := outputFlag(fs, "table", "json")
	top := fs.Int("top", 0, "show only the N busiest services (0: all)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	d, err := env.readDecision(ctx)
	if err != nil {
		return err
	}
	age, stale := smpDecisionAge(d)
	if stale {
		fmt.Fprintf(env.stderr, "warning: the decision is %v old (interval %v): no sampler leader is storing decisions\n",
			age.Round(time.Second), time.Duration(d.IntervalMS)*time.Millisecond)
	}
	if *out == "json" {
		return env.printJSON(d)
	}
	w := env.stdout
	fmt.Fprintf(w, "version %d · leader %s · token %d · age %v (interval %v) · config v%d\n",
		d.Version, d.Leader, d.Token, age.Round(100*time.Millisecond), time.Duration(d.IntervalMS)*time.Millisecond, d.ConfigVersion)
	degraded := "no"
	if d.Degraded {
		degraded = "YES since " + d.DegradedSince.Local().Format(time.TimeOnly)
	}
	fmt.Fprintf(w, "strategy %s · degraded %s (utilization %.1f%%) · global rate %s · default rate %s\n",
		d.Strategy, degraded, 100*d.Inputs.Utilization, smpRate(d.GlobalRate), smpRate(d.DefaultRate))
	fmt.Fprintf(w, "fleet %s spans/s from %d collectors · kept %s spans/s", formatRate(d.Inputs.FleetQPS), d.Inputs.Collectors, formatRate(d.Inputs.KeptQPS))
	if d.Inputs.TargetQPS > 0 {
		fmt.Fprintf(w, " (target %s)", formatRate(d.Inputs.TargetQPS))
	}
	if d.Inputs.BudgetQPS > 0 {
		fmt.Fprintf(w, " (cost budget %s)", formatRate(d.Inputs.BudgetQPS))
	}
	fmt.Fprintln(w)
	if len(d.Regions) > 0 {
		regions := make([]string, 0, len(d.Regions))
		for r, m := range d.Regions {
			regions = append(regions, r+" ×"+smpRate(m))
		}
		slices.Sort(regions)
		fmt.Fprintln(w, "regional multipliers: "+strings.Join(regions, ", "))
	}
	fmt.Fprintln(w)
	names := make([]string, 0, len(d.Services))
	for n := range d.Services {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := -smpCmp(d.Services[a].QPS, d.Services[b].QPS); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	if *top > 0 && len(names) > *top {
		names = names[:*top]
	}
	tw := env.table()
	fmt.Fprintln(tw, "SERVICE\tPRIORITY\tRATE\tSPANS/S\tKEPT/S")
	for _, n := range names {
		s := d.Services[n]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n, smpDash(s.Priority), smpRate(s.Rate), formatRate(s.QPS), formatRate(s.Rate*s.QPS))
	}
	for _, r := range d.Rules {
		globs := "(any other)"
		if len(r.Services) > 0 {
			globs = strings.Join(r.Services, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\n", "unseen "+globs, r.Priority, smpRate(r.Rate))
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\n", "default", "-", smpRate(d.DefaultRate))
	if err := tw.Flush(); err != nil {
		return err
	}
	if hidden := len(d.Services) - len(names); hidden > 0 {
		fmt.Fprintf(w, "(%d less busy services not shown; --top 0 shows all)\n", hidden)
	}
	if d.Truncated > 0 {
		fmt.Fprintf(w, "(%d services left out of the stored decision to fit the NATS payload limit; they get their rule's or the default rate)\n", d.Truncated)
	}
	return nil
}

func samplingExplain(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("sampling explain", "sampling explain SERVICE [--region R] [-o text|json]")
	out := outputFlag(fs, "text", "json")
	region := fs.String("region", "", "apply this region's regional_sampling_rate")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageError("sampling explain: want exactly one SERVICE")
	}
	if *region != "" {
		if err := events.CheckToken("--region", *region); err != nil {
			return usageError("%v", err)
		}
	}
	d, err := env.readDecision(ctx)
	if err != nil {
		return err
	}
	e := samplersvc.Explain(&d, pos[0])
	rate := e.Stored
	if *region != "" {
		m := d.RegionRate(*region)
		e.Steps = append(e.Steps, fmt.Sprintf("region %s: × regional_sampling_rate %s → %s", *region, smpRate(m), smpRate(rate*m)))
		rate *= m
	}
	if *out == "json" {
		return env.printJSON(struct {
			samplersvc.Explanation
			Region          string  `json:"region,omitempty"`
			EffectiveRate   float64 `json:"effective_rate"`
			DecisionVersion uint64  `json:"decision_version"`
			Token           uint64  `json:"token"`
			Leader          string  `json:"leader"`
		}{e, *region, rate, d.Version, d.Token, d.Leader})
	}
	w := env.stdout
	prio := ""
	if e.Priority != "" {
		prio = " (priority " + e.Priority + ")"
	}
	fmt.Fprintf(w, "%s: rate %s%s — decision version %d by %s, token %d\n", e.Service, smpRate(rate), prio, d.Version, d.Leader, d.Token)
	for i, s := range e.Steps {
		fmt.Fprintf(w, "  %d. %s\n", i+1, s)
	}
	if e.Rate != e.Stored {
		fmt.Fprintf(env.stderr, "warning: recomputing gives %s but the decision holds %s: the leader runs a different build\n", smpRate(e.Rate), smpRate(e.Stored))
	}
	return nil
}

func smpCmp(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func smpDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// smpRate formats a sampling rate with up to 4 significant digits.
func smpRate(r float64) string { return strconv.FormatFloat(r, 'g', 4, 64) }

// formatRate formats a rate (spans or requests per second) for people: 0.25, 950,
// 12.5k, 3.2M.
func formatRate(v float64) string {
	switch {
	case v >= 1e9:
		return strconv.FormatFloat(v/1e9, 'f', 1, 64) + "G"
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	case v >= 10 || v == 0:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}
