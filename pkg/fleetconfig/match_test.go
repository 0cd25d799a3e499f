package fleetconfig

import "testing"

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"payment", "payment", true},
		{"payment", "payments", false},
		{"critical-*", "critical-db", true},
		{"critical-*", "critical-", true},
		{"critical-*", "noncritical-db", false},
		{"*", "anything", true},
		{"*", "a/b", false}, // path.Match: '*' stops at '/'
		{"svc-?", "svc-1", true},
		{"svc-[0-9]", "svc-x", false},
		{"[", "[", false}, // malformed pattern matches nothing
		{"", "", true},
	}
	for _, tt := range tests {
		if got := MatchGlob(tt.pattern, tt.name); got != tt.want {
			t.Errorf("MatchGlob(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestPriorityFor(t *testing.T) {
	overlapping := Defaults().Global
	overlapping.SamplingStrategies[1].Rules = []PriorityRule{
		{Priority: "normal", Rate: 0.1}, // catch-all first: still used only when nothing else matches
		{Priority: "high", Rate: 1, Services: []string{"pay*"}},
		{Priority: "low", Rate: 0.01, Services: []string{"payroll", "test-*"}},
	}
	noCatchAll := Defaults().Global
	noCatchAll.SamplingStrategies[1].Rules = noCatchAll.SamplingStrategies[1].Rules[:1]
	noPriority := Defaults().Global
	noPriority.SamplingStrategies = noPriority.SamplingStrategies[:1]

	tests := []struct {
		name    string
		g       Global
		service string
		want    string // priority; "" means ok is false
	}{
		{"listed high", Defaults().Global, "payment", "high"},
		{"second glob of a rule", Defaults().Global, "checkout", "high"},
		{"listed low", Defaults().Global, "debug", "low"},
		{"catch-all", Defaults().Global, "frontend", "normal"},
		{"exact names are not prefixes", Defaults().Global, "payment-api", "normal"},
		{"first match wins", overlapping, "payroll", "high"},
		{"catch-all listed first is a fallback", overlapping, "test-a", "low"},
		{"catch-all when nothing matches", overlapping, "cart", "normal"},
		{"no catch-all and no match", noCatchAll, "cart", ""},
		{"no catch-all, match", noCatchAll, "payment", "high"},
		{"no priority_based strategy", noPriority, "payment", ""},
		{"empty config", Global{}, "payment", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule, ok := tt.g.PriorityFor(tt.service)
			if ok != (tt.want != "") || rule.Priority != tt.want {
				t.Fatalf("PriorityFor(%q) = %+v, %v; want priority %q", tt.service, rule, ok, tt.want)
			}
		})
	}
}
