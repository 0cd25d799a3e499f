package fleetconfig

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// tailYAML is the policy set a user writes.
const tailYAML = `
decision_wait: 5s
max_trace_spans: 10000
policies:
  - {name: errors, when: {status: error}, keep: 1.0}
  - {name: slow, when: {min_duration: 2s}, keep: 1.0}
  - {name: vip, when: {attributes: {tenant: vip}}, keep: 1.0}
  - {name: checkout, when: {services: ["checkout*"]}, dynamic: {key: [http.route, http.response.status_code], goal_rate: 20}}
  - {name: rest, keep: 0.05}
throughput: {traces_per_second: 500}
`

func TestTailSamplingParsesAndValidates(t *testing.T) {
	ts, err := ParseTailSamplingYAML([]byte(tailYAML))
	if err != nil {
		t.Fatalf("ParseTailSamplingYAML: %v", err)
	}
	if err := ts.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if time.Duration(ts.DecisionWait) != 5*time.Second || ts.MaxTraceSpans != 10000 || len(ts.Policies) != 5 {
		t.Fatalf("decoded %+v", ts)
	}
	if p := ts.Policies[1]; p.When == nil || time.Duration(p.When.MinDuration) != 2*time.Second || *p.Keep != 1 {
		t.Errorf("slow policy decoded as %+v", p)
	}
	if d := ts.Policies[3].Dynamic; d == nil || d.GoalRate != 20 || !slices.Equal(d.Key, []string{"http.route", "http.response.status_code"}) {
		t.Errorf("dynamic policy decoded as %+v", ts.Policies[3].Dynamic)
	}
	if ts.Policies[4].When != nil || ts.Throughput == nil || ts.Throughput.TracesPerSecond != 500 {
		t.Errorf("rest/throughput decoded as %+v / %+v", ts.Policies[4], ts.Throughput)
	}
}

func TestTailSamplingRejects(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want []string
	}{
		"no policies and no wait": {
			`{max_trace_spans: 10}`,
			[]string{"tail_sampling.decision_wait: must be positive", "tail_sampling.policies: must list at least one policy"},
		},
		"keep and dynamic": {
			`{decision_wait: 1s, max_trace_spans: 10, policies: [{name: a, keep: 1, dynamic: {key: [x], goal_rate: 2}}]}`,
			[]string{"tail_sampling.policies[0]: set keep or dynamic, not both"},
		},
		"neither": {
			`{decision_wait: 1s, max_trace_spans: 10, policies: [{name: a}]}`,
			[]string{"tail_sampling.policies[0]: set keep (a probability) or dynamic (a per-key sampler)"},
		},
		"bad values": {
			`{decision_wait: 1h, max_trace_spans: 0, policies: [{name: "a b", keep: 1.5, when: {status: broken, services: ["["], min_spans: -1}}, {name: "a b", dynamic: {key: [x, x, ""], goal_rate: 0, weight: 2}}], throughput: {traces_per_second: 0}}`,
			[]string{
				"tail_sampling.decision_wait: 1h0m0s is longer than the maximum 5m0s",
				"tail_sampling.max_trace_spans: 0 is outside [1, 1000000]",
				`tail_sampling.policies[0].name: "a b" is not a policy name: 1 to 64 ASCII letters, digits, '-', '_' or '.'`,
				"tail_sampling.policies[0].keep: 1.5 is outside [0, 1]",
				`tail_sampling.policies[0].when.status: "broken" is not a span status: error, ok or unset`,
				`tail_sampling.policies[0].when.services[0]: "[" is not a valid glob: syntax error in pattern`,
				"tail_sampling.policies[0].when.min_spans: must not be negative, got -1",
				`tail_sampling.policies[1].name: "a b" is already the name of policies[0]`,
				`tail_sampling.policies[1].name: "a b" is not a policy name: 1 to 64 ASCII letters, digits, '-', '_' or '.'`,
				`tail_sampling.policies[1].dynamic.key[1]: "x" is listed twice`,
				"tail_sampling.policies[1].dynamic.key[2]: must not be empty",
				"tail_sampling.policies[1].dynamic.goal_rate: 0 is outside [1, 1000000]",
				"tail_sampling.policies[1].dynamic.weight: 2 is outside (0, 1]",
				"tail_sampling.throughput.traces_per_second: must be positive",
			},
		},
		"unknown field": {`{decision_wait: 1s, max_trace_spans: 10, policies: [{name: a, keep: 1, when: {stat: error}}]}`, nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ts, err := ParseTailSamplingYAML([]byte(tt.yaml + "\n"))
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), "stat") {
					t.Fatalf("ParseTailSamplingYAML = %v, want an unknown-field error naming stat", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTailSamplingYAML: %v", err)
			}
			got := problems(t, ts.Validate())
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// FuzzParseTailSamplingYAML: any input decodes or fails with ErrDecode, never panics,
// and what decodes validates without panicking.
func FuzzParseTailSamplingYAML(f *testing.F) {
	f.Add([]byte(tailYAML))
	f.Add([]byte(`{decision_wait: 1s, max_trace_spans: 1, policies: [{name: a, dynamic: {key: [k], goal_rate: 3, weight: 0.5}}]}`))
	f.Add([]byte(`policies: [{name: x, when: {attributes: {"": "["}}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := ParseTailSamplingYAML(data)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v does not wrap ErrDecode", err)
			}
			return
		}
		_ = ts.Validate()
	})
}
