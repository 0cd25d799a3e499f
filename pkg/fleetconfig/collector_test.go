package fleetconfig_test

import (
	"strings"
	"testing"

	"github.com/otelfleet/otelfleet/pkg/fleetconfig"
)

func TestCollectorValidateReportsEveryProblemWithItsPath(t *testing.T) {
	doc := fleetconfig.CollectorConfig{
		Selector: fleetconfig.Selector{Region: "bad region"},
		Rollout:  fleetconfig.RolloutPolicy{CanaryPercent: 150, Waves: -1},
		Config: `
receivers: {otlp: {}}
processors: {"bad id!": {}}
exporters: {debug: {}}
extensions: {}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp, kafka]
      exporters: [debug, otlp/x]
    spans:
      receivers: [otlp]
      exporters: []
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
      sampling: ${otelfleet:sampling.percent:checkout} ${otelfleet:nope}
`}
	err := doc.Validate("edge")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`selector.region: "bad region"`,
		"rollout.canary_percent: 150 is outside",
		"rollout.waves: -1 is outside",
		`placeholder "${otelfleet:nope}" is unknown`,
		"field sampling not found",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nwant %q", err, want)
		}
	}
	doc.Config = strings.Replace(doc.Config, "      sampling: ${otelfleet:sampling.percent:checkout} ${otelfleet:nope}\n", "", 1)
	err = doc.Validate("edge")
	for _, want := range []string{
		`config.processors.bad id!: "bad id!" is not a component id`,
		`config.service.extensions[0]: "health_check" is not defined in extensions`,
		`config.service.pipelines.traces.receivers[1]: "kafka" is not defined`,
		`config.service.pipelines.traces.exporters[1]: "otlp/x" is not defined`,
		`config.service.pipelines.spans: "spans" is not a pipeline id`,
		"config.service.pipelines.spans.exporters: is empty",
		`config.service.pipelines.metrics.processors[0]: "batch" is not defined`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nwant %q", err, want)
		}
	}
}

func TestCollectorComponentsAndPlaceholders(t *testing.T) {
	shape, ps := fleetconfig.ParseCollectorYAML(`
receivers: {otlp: {}}
exporters: {otlp/x: {}, debug: {}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [otlp/x, debug]}}}
`)
	if len(ps) != 0 {
		t.Fatal(ps)
	}
	got := fleetconfig.CheckComponents(shape, []fleetconfig.AgentComponents{
		{Name: "eu/a", Components: []string{"receiver/otlp", "exporter/otlp", "exporter/debug"}},
		{Name: "eu/b", Components: []string{"receiver/otlp", "exporter/debug"}},
		{Name: "eu/c"}, // reports nothing: not checked
	})
	if len(got) != 1 || got[0].Path != "config.exporters.otlp/x" || !strings.Contains(got[0].Message, "exporter/otlp is not among the components of 1 of 2 matching agents (eu/b)") {
		t.Fatalf("got %v", got)
	}
	out, vals := fleetconfig.Render("a: ${otelfleet:sampling.percent}\nb: ${otelfleet:sampling.percent:checkout}\nc: ${otelfleet:sampling.percent}", func(p fleetconfig.Placeholder) string {
		if p.Arg == "checkout" {
			return fleetconfig.FormatPercent(0.123456)
		}
		return fleetconfig.FormatPercent(2)
	})
	if out != "a: 100\nb: 12.3456\nc: 100" || len(vals) != 2 {
		t.Fatalf("rendered %q %v", out, vals)
	}
	sel, err := fleetconfig.ParseSelector("region=eu,tier=edge")
	if err != nil || sel.String() != "region=eu,tier=edge" {
		t.Fatalf("selector %v %v", sel, err)
	}
	attrs := map[string]string{"tier": "edge"}
	lookup := func(k string) (string, bool) { v, ok := attrs[k]; return v, ok }
	g, ok := fleetconfig.GroupFor(map[string]fleetconfig.Selector{"all": {}, "eu": {Region: "eu"}, "edge": sel, "zz": sel}, "eu", lookup)
	if !ok || g != "edge" {
		t.Fatalf("group %q %v, want the most specific, first by name", g, ok)
	}
}

func FuzzDecodeStoredCollector(f *testing.F) {
	f.Add([]byte(`{"version":1,"updated_by":"x","config":"receivers: {otlp: {}}\nexporters: {debug: {}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}"}`))
	f.Add([]byte(`{"version":1,"config":"a: [\n"}`))
	f.Add([]byte(`{"version":1,"config":"${otelfleet:sampling.percent:}"}`))
	f.Add([]byte(`{"config":"service: {pipelines: {traces: {receivers: &a [x], exporters: *a}}}"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := fleetconfig.DecodeStoredCollector("collector.g", "g", b)
		if err == nil && (c.Version == 0 || c.Config == "") {
			t.Fatalf("accepted %q", b)
		}
	})
}
