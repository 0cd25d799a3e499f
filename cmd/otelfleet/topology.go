package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/otelfleet/otelfleet/pkg/events"
	topologysvc "github.com/otelfleet/otelfleet/services/topology"
)

const topologyUsage = `topology [get] [--region R] [-o table|json]
       otelfleet topology best [--region R] [--load-weight W] [--latency-weight W] [--capacity-weight W] [-o table|json]

Commands:
  get (default)   every collector: region, collector, health, qps, capacity, util%, latency, age
                  of its last load report; a summary of the fleet follows the table
  best            the best collector to send to (healthy, fresh, utilisation < 1), preferring
                  --region and falling back to other regions (said so: fallback true + reason)`

func runTopology(ctx context.Context, env *cliEnv, args []string) error {
	return env.dispatch(ctx, "topology", topologyUsage, args, "get", map[string]subcommand{"get": topologyGet, "best": topologyBest})
}

func topologyGet(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("topology", topologyUsage)
	out := outputFlag(fs, "table", "json")
	region := fs.String("region", "", "show only this region")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *region != "" {
		if err := events.CheckToken("--region", *region); err != nil {
			return usageError("%v", err)
		}
	}
	nc, err := env.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	top, err := fetchTopology(ctx, env, nc, *region)
	if err != nil {
		return err
	}
	if *out == "json" {
		return env.printJSON(top)
	}
	tw := env.table()
	fmt.Fprintln(tw, "REGION\tCOLLECTOR\tHEALTH\tQPS\tCAPACITY\tUTIL%\tLATENCY\tAGE")
	for _, r := range top.Regions {
		for _, c := range r.Collectors {
			capacity, util := "?", "-"
			if c.CapacityQPS > 0 {
				capacity, util = formatRate(c.CapacityQPS), strconv.FormatFloat(c.Utilization*100, 'f', 1, 64)
			}
			latency := "-"
			if !c.Stale {
				latency = strconv.FormatFloat(c.AvgLatencyMS, 'f', 1, 64) + "ms"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Region, c.ID, c.Status, formatRate(c.QPS), capacity, util, latency, reportAge(c.ReportAgeMS))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	g := top.Global
	if *region != "" && len(top.Regions) == 1 {
		r := top.Regions[0].Stats
		g = events.GlobalStats{Regions: 1, Collectors: r.Collectors, Healthy: r.Healthy, Degraded: r.Degraded, Unhealthy: r.Unhealthy,
			Stale: r.Stale, SpansPerSec: r.QPS, CapacityQPS: r.CapacityQPS, Utilization: r.Utilization, AvgLatencyMS: r.AvgLatencyMS,
			ErrorRate: r.ErrorRate, EffectiveSamplingRate: top.Global.EffectiveSamplingRate}
	} else if *region != "" {
		fmt.Fprintf(env.stdout, "\nregion %s: no registered collectors\n", *region)
		return nil
	}
	sampling := "-"
	if g.EffectiveSamplingRate != nil {
		sampling = strconv.FormatFloat(*g.EffectiveSamplingRate*100, 'g', 4, 64) + "%"
	}
	fmt.Fprintf(env.stdout, "\n%s in %s: %d healthy, %d degraded, %d unhealthy, %d stale · %s spans/s of %s · util %.1f%% · latency %.1fms · errors %.2f%% · sampling %s\n",
		plural(g.Collectors, "collector"), plural(g.Regions, "region"), g.Healthy, g.Degraded, g.Unhealthy, g.Stale, formatRate(g.SpansPerSec), formatRate(g.CapacityQPS),
		g.Utilization*100, g.AvgLatencyMS, g.ErrorRate*100, sampling)
	return nil
}

// fetchTopology reads every page of otlp.topology.get into one Topology.
func fetchTopology(ctx context.Context, env *cliEnv, nc *nats.Conn, region string) (topologysvc.Topology, error) {
	var all topologysvc.Topology
	index := map[string]int{}
	after := ""
	for page := 0; ; page++ {
		var top topologysvc.Topology
		req := topologysvc.GetRequest{Region: region, After: after, Limit: topologysvc.MaxPageLimit}
		if err := env.request(ctx, nc, events.ServiceTopology, "get", req, &top); err != nil {
			return all, err
		}
		if page == 0 {
			all = top
			all.Regions = nil
		}
		for _, r := range top.Regions {
			i, ok := index[r.Region]
			if !ok {
				i = len(all.Regions)
				index[r.Region] = i
				r.Omitted = 0
				all.Regions = append(all.Regions, r)
				continue
			}
			all.Regions[i].Collectors = append(all.Regions[i].Collectors, r.Collectors...)
		}
		if top.Next == "" || top.Next == after || page > 10_000 {
			break
		}
		after = top.Next
	}
	all.Next = ""
	if all.Regions == nil {
		all.Regions = []topologysvc.Region{}
	}
	return all, nil
}

func topologyBest(ctx context.Context, env *cliEnv, args []string) error {
	fs, _ := env.flags("topology best", "topology best [--region R] [--load-weight W] [--latency-weight W] [--capacity-weight W] [-o table|json]")
	out := outputFlag(fs, "table", "json")
	region := fs.String("region", "", "preferred region (any region when empty); other regions are used when it has no eligible collector")
	def := topologysvc.DefaultWeights()
	lw := fs.Float64("load-weight", def.Load, "weight of low utilisation (qps / capacity)")
	tw := fs.Float64("latency-weight", def.Latency, "weight of low latency")
	cw := fs.Float64("capacity-weight", def.Capacity, "weight of spare capacity (absolute headroom)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *region != "" {
		if err := events.CheckToken("--region", *region); err != nil {
			return usageError("%v", err)
		}
	}
	req := topologysvc.BestRequest{Region: *region}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "load-weight":
			req.LoadWeight = lw
		case "latency-weight":
			req.LatencyWeight = tw
		case "capacity-weight":
			req.CapacityWeight = cw
		}
	})
	for _, f := range []struct {
		name string
		v    float64
	}{{"--load-weight", *lw}, {"--latency-weight", *tw}, {"--capacity-weight", *cw}} {
		if !(f.v >= 0 && f.v <= 1e6) {
			return usageError("%s %v: must be a number in [0, 1e6]", f.name, f.v)
		}
	}
	if *lw+*tw+*cw == 0 {
		return usageError("--load-weight, --latency-weight, --capacity-weight: at least one must be > 0")
	}
	nc, err := env.dial()
	if err != nil {
		return err
	}
	defer nc.Close()
	var best topologysvc.BestReply
	if err := env.request(ctx, nc, events.ServiceTopology, "best", req, &best); err != nil {
		return err
	}
	if *out == "json" {
		return env.printJSON(best)
	}
	t := env.table()
	fmt.Fprintln(t, "REGION\tCOLLECTOR\tADDRESS\tSCORE\tQPS\tCAPACITY\tUTIL%\tLATENCY\tFALLBACK")
	fmt.Fprintf(t, "%s\t%s\t%s\t%.3f\t%s\t%s\t%.1f\t%.1fms\t%v\n", best.Region, best.ID, orDash(best.Address), best.Score,
		formatRate(best.QPS), formatRate(best.CapacityQPS), best.Utilization*100, best.AvgLatencyMS, best.Fallback)
	if err := t.Flush(); err != nil {
		return err
	}
	if best.Fallback {
		fmt.Fprintf(env.stdout, "\nfallback: %s\n", best.Reason)
	}
	return nil
}

// reportAge formats the age of a collector's last load report; -1 means never.
func reportAge(ms int64) string {
	if ms < 0 {
		return "never"
	}
	d := time.Duration(ms) * time.Millisecond
	if d < time.Minute {
		return d.Round(100*time.Millisecond).String() + " ago"
	}
	return d.Round(time.Second).String() + " ago"
}

// plural writes "1 region", "2 regions".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
