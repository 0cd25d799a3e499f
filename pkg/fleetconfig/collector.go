package fleetconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// CollectorConfig is a collector configuration document: the OpenTelemetry Collector
// YAML a group of OpAMP-managed agents runs, stored in the config bucket under
// collector.<group> with the same version rules as the global config, and rolled out to
// the agents its Selector matches.
type CollectorConfig struct {
	Version   uint64    `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
	// Selector says which agents belong to the group.
	Selector Selector `json:"selector"`
	// Config is the collector's own YAML. It may hold placeholders
	// (${otelfleet:sampling.percent} and ${otelfleet:sampling.percent:<service>}) that
	// the rollout controller renders from the sampling decision.
	Config string `json:"config"`
	// Rollout is how a new version goes out.
	Rollout RolloutPolicy `json:"rollout"`
}

// Selector matches agents by region and by attributes of their agent description
// (identifying or non-identifying), each by equality. The empty selector matches every
// agent. An agent matched by several groups belongs to the most specific one (most
// conditions), ties going to the group name that sorts first (GroupFor).
type Selector struct {
	Region     string            `json:"region,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Matches reports whether an agent of region with the attribute lookup attr matches s.
func (s Selector) Matches(region string, attr func(key string) (string, bool)) bool {
	if s.Region != "" && s.Region != region {
		return false
	}
	for k, want := range s.Attributes {
		if got, ok := attr(k); !ok || got != want {
			return false
		}
	}
	return true
}

// specificity is the number of conditions of s.
func (s Selector) specificity() int {
	n := len(s.Attributes)
	if s.Region != "" {
		n++
	}
	return n
}

// String returns the selector as region=R,key=value,... (sorted), or "*" when empty.
func (s Selector) String() string {
	var parts []string
	if s.Region != "" {
		parts = append(parts, "region="+s.Region)
	}
	keys := make([]string, 0, len(s.Attributes))
	for k := range s.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+s.Attributes[k])
	}
	if len(parts) == 0 {
		return "*"
	}
	return strings.Join(parts, ",")
}

// ParseSelector parses "region=R,key=value,..." (the form String prints); "" and "*"
// are the empty selector.
func ParseSelector(text string) (Selector, error) {
	var s Selector
	text = strings.TrimSpace(text)
	if text == "" || text == "*" {
		return s, nil
	}
	for part := range strings.SplitSeq(text, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" || v == "" {
			return Selector{}, fmt.Errorf("%w: selector %q: want key=value", ErrInvalid, part)
		}
		if k == "region" {
			s.Region = v
			continue
		}
		if s.Attributes == nil {
			s.Attributes = map[string]string{}
		}
		s.Attributes[k] = v
	}
	return s, nil
}

// GroupFor returns the group (a key of selectors) an agent belongs to: among the groups
// whose selector matches it, the most specific, ties going to the name that sorts
// first; false when none matches.
func GroupFor(selectors map[string]Selector, region string, attr func(string) (string, bool)) (string, bool) {
	best, bestN := "", -1
	for g, s := range selectors {
		if !s.Matches(region, attr) {
			continue
		}
		if n := s.specificity(); n > bestN || (n == bestN && g < best) {
			best, bestN = g, n
		}
	}
	return best, bestN >= 0
}

// RolloutPolicy says how a new version goes out: the canary share of the group's
// agents first (at least one agent), then the rest in Waves waves; each wave waits for
// every agent's APPLIED status and health for Soak, and fails when that has not
// happened within WaveTimeout.
type RolloutPolicy struct {
	// CanaryPercent is the share of agents in the canary wave, in (0, 100]; 0 means
	// the default, 10.
	CanaryPercent float64 `json:"canary_percent,omitempty"`
	// Waves is the number of waves after the canary, 1..100; 0 means the default, 3.
	Waves int `json:"waves,omitempty"`
	// Soak is how long every agent of a wave must stay APPLIED and healthy before the
	// next wave; 0 means the default, 30s.
	Soak Duration `json:"soak,omitempty"`
	// WaveTimeout is how long a wave may take to become APPLIED and healthy before the
	// rollout fails; 0 means the default, 5m.
	WaveTimeout Duration `json:"wave_timeout,omitempty"`
}

// Rollout policy defaults.
const (
	DefaultCanaryPercent = 10
	DefaultWaves         = 3
	DefaultSoak          = Duration(30 * time.Second)
	DefaultWaveTimeout   = Duration(5 * time.Minute)
)

// WithDefaults returns p with every zero field set to its default.
func (p RolloutPolicy) WithDefaults() RolloutPolicy {
	if p.CanaryPercent == 0 {
		p.CanaryPercent = DefaultCanaryPercent
	}
	if p.Waves == 0 {
		p.Waves = DefaultWaves
	}
	if p.Soak == 0 {
		p.Soak = DefaultSoak
	}
	if p.WaveTimeout == 0 {
		p.WaveTimeout = DefaultWaveTimeout
	}
	return p
}

func (p RolloutPolicy) problems() []Problem {
	var ps []Problem
	if !(p.CanaryPercent >= 0 && p.CanaryPercent <= 100) {
		ps = append(ps, Problem{"rollout.canary_percent", fmt.Sprintf("%v is outside (0, 100]", p.CanaryPercent)})
	}
	if p.Waves < 0 || p.Waves > 100 {
		ps = append(ps, Problem{"rollout.waves", fmt.Sprintf("%d is outside 1..100", p.Waves)})
	}
	if p.Soak < 0 || time.Duration(p.Soak) > 24*time.Hour {
		ps = append(ps, Problem{"rollout.soak", fmt.Sprintf("%v is outside [0, 24h]", p.Soak)})
	}
	if p.WaveTimeout < 0 || time.Duration(p.WaveTimeout) > 24*time.Hour {
		ps = append(ps, Problem{"rollout.wave_timeout", fmt.Sprintf("%v is outside [0, 24h]", p.WaveTimeout)})
	}
	return ps
}

// Placeholder names known in collector configs.
const (
	// PlaceholderSamplingPercent renders as the sampling percentage (0..100) for a
	// service (${otelfleet:sampling.percent:<service>}) or the fleet's default rate
	// (${otelfleet:sampling.percent}), times the regional multiplier of the group's
	// region.
	PlaceholderSamplingPercent = "sampling.percent"
)

var (
	placeholderRE = regexp.MustCompile(`\$\{otelfleet:([^}]*)\}`)
	serviceRE     = regexp.MustCompile(`^[A-Za-z0-9._/*-]{1,256}$`)
)

// Placeholder is one ${otelfleet:...} reference of a collector config.
type Placeholder struct {
	// Text is the reference as written, e.g. "${otelfleet:sampling.percent:checkout}".
	Text string
	// Name is the placeholder name (PlaceholderSamplingPercent); Arg its argument (a
	// service name), "" for none.
	Name, Arg string
}

// Placeholders returns the placeholders of text, each once in order of first
// appearance, and the problems of unknown or malformed ones.
func Placeholders(text string) ([]Placeholder, []Problem) {
	var out []Placeholder
	var ps []Problem
	seen := map[string]bool{}
	for _, m := range placeholderRE.FindAllStringSubmatch(text, -1) {
		if seen[m[0]] {
			continue
		}
		seen[m[0]] = true
		name, arg, _ := strings.Cut(m[1], ":")
		switch {
		case name != PlaceholderSamplingPercent:
			ps = append(ps, Problem{"config", fmt.Sprintf("placeholder %q is unknown (known: ${otelfleet:%s} and ${otelfleet:%s:<service>})", m[0], PlaceholderSamplingPercent, PlaceholderSamplingPercent)})
		case strings.Contains(m[1], ":") && !serviceRE.MatchString(arg):
			ps = append(ps, Problem{"config", fmt.Sprintf("placeholder %q: service %q is not a service name", m[0], arg)})
		default:
			out = append(out, Placeholder{Text: m[0], Name: name, Arg: arg})
		}
	}
	return out, ps
}

// Render replaces every placeholder of text by value(p), and returns the rendered text
// and the values used by placeholder text.
func Render(text string, value func(Placeholder) string) (string, map[string]string) {
	ps, _ := Placeholders(text)
	if len(ps) == 0 {
		return text, nil
	}
	vals := make(map[string]string, len(ps))
	pairs := make([]string, 0, 2*len(ps))
	for _, p := range ps {
		v := value(p)
		vals[p.Text] = v
		pairs = append(pairs, p.Text, v)
	}
	return strings.NewReplacer(pairs...).Replace(text), vals
}

// FormatPercent formats a rate in [0,1] as a percentage with at most 4 decimals,
// clamped to [0, 100].
func FormatPercent(rate float64) string {
	p := rate * 100
	switch {
	case !(p > 0): // also NaN
		p = 0
	case p > 100:
		p = 100
	}
	return strconv.FormatFloat(math.Round(p*1e4)/1e4, 'f', -1, 64)
}

// Collector config sections and the component kind each defines.
var collectorSections = []struct{ section, kind string }{
	{"receivers", "receiver"}, {"processors", "processor"}, {"exporters", "exporter"},
	{"extensions", "extension"}, {"connectors", "connector"},
}

// CollectorShape is the part of a collector config the validator understands: the
// components each section defines and the service's pipelines.
type CollectorShape struct {
	Receivers  map[string]any `yaml:"receivers"`
	Processors map[string]any `yaml:"processors"`
	Exporters  map[string]any `yaml:"exporters"`
	Extensions map[string]any `yaml:"extensions"`
	Connectors map[string]any `yaml:"connectors"`
	Service    struct {
		Extensions []string            `yaml:"extensions"`
		Pipelines  map[string]Pipeline `yaml:"pipelines"`
		Telemetry  any                 `yaml:"telemetry"`
	} `yaml:"service"`
}

// Pipeline is one service pipeline.
type Pipeline struct {
	Receivers  []string `yaml:"receivers"`
	Processors []string `yaml:"processors"`
	Exporters  []string `yaml:"exporters"`
}

func (s *CollectorShape) section(name string) map[string]any {
	switch name {
	case "receivers":
		return s.Receivers
	case "processors":
		return s.Processors
	case "exporters":
		return s.Exporters
	case "extensions":
		return s.Extensions
	default:
		return s.Connectors
	}
}

var (
	componentTypeRE = regexp.MustCompile(`^[a-zA-Z][0-9a-zA-Z_]{0,62}$`)
	signalRE        = regexp.MustCompile(`^(traces|metrics|logs|profiles)$`)
)

// splitID splits a component or pipeline id type[/name].
func splitID(id string) (typ, name string, ok bool) {
	typ, name, slash := strings.Cut(id, "/")
	return typ, name, componentTypeRE.MatchString(typ) && (!slash || (name != "" && len(name) <= 1024))
}

// ParseCollectorYAML parses a collector config (placeholders replaced by a number) and
// checks its shape: known top-level and service fields, valid component ids, at least
// one pipeline, each with receivers and exporters, every reference defined in the
// document. Every problem is reported with its path under "config".
func ParseCollectorYAML(text string) (CollectorShape, []Problem) {
	var shape CollectorShape
	rendered, _ := Render(text, func(Placeholder) string { return "50" })
	dec := yaml.NewDecoder(strings.NewReader(rendered))
	dec.KnownFields(true)
	if err := dec.Decode(&shape); err != nil {
		if errors.Is(err, io.EOF) {
			return shape, []Problem{{"config", "is empty; a collector config needs service.pipelines"}}
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			ps := make([]Problem, 0, len(te.Errors))
			for _, e := range te.Errors {
				ps = append(ps, Problem{"config", e})
			}
			return shape, ps
		}
		return shape, []Problem{{"config", "is not YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var ps []Problem
	for _, sec := range collectorSections {
		for _, id := range sortedKeys(shape.section(sec.section)) {
			if _, _, ok := splitID(id); !ok {
				ps = append(ps, Problem{"config." + sec.section + "." + id, fmt.Sprintf("%q is not a component id (type[/name], type of letters, digits and _)", id)})
			}
		}
	}
	defined := func(id string, sections ...string) bool {
		for _, s := range sections {
			if _, ok := shape.section(s)[id]; ok {
				return true
			}
		}
		return false
	}
	for i, id := range shape.Service.Extensions {
		if !defined(id, "extensions") {
			ps = append(ps, Problem{fmt.Sprintf("config.service.extensions[%d]", i), fmt.Sprintf("%q is not defined in extensions", id)})
		}
	}
	if len(shape.Service.Pipelines) == 0 {
		ps = append(ps, Problem{"config.service.pipelines", "no pipeline is defined"})
	}
	for _, name := range sortedKeys(shape.Service.Pipelines) {
		p := shape.Service.Pipelines[name]
		path := "config.service.pipelines." + name
		if typ, _, ok := splitID(name); !ok || !signalRE.MatchString(typ) {
			ps = append(ps, Problem{path, fmt.Sprintf("%q is not a pipeline id (traces, metrics, logs or profiles, optionally /name)", name)})
		}
		check := func(field string, ids []string, sections ...string) {
			if len(ids) == 0 && field != "processors" {
				ps = append(ps, Problem{path + "." + field, "is empty; a pipeline needs at least one"})
			}
			for i, id := range ids {
				if !defined(id, sections...) {
					ps = append(ps, Problem{fmt.Sprintf("%s.%s[%d]", path, field, i), fmt.Sprintf("%q is not defined", id)})
				}
			}
		}
		check("receivers", p.Receivers, "receivers", "connectors")
		check("processors", p.Processors, "processors")
		check("exporters", p.Exporters, "exporters", "connectors")
	}
	return shape, ps
}

// AgentComponents are the components one agent says it has ("<kind>/<type>").
type AgentComponents struct {
	// Name identifies the agent in messages (region/id).
	Name       string
	Components []string
}

// CheckComponents reports every component of shape whose type is missing on any of
// agents. Agents that list no components are not checked.
func CheckComponents(shape CollectorShape, agents []AgentComponents) []Problem {
	var ps []Problem
	for _, sec := range collectorSections {
		for _, id := range sortedKeys(shape.section(sec.section)) {
			typ, _, _ := splitID(id)
			want := sec.kind + "/" + typ
			var missing []string
			checked := 0
			for _, a := range agents {
				if len(a.Components) == 0 {
					continue
				}
				checked++
				found := false
				for _, c := range a.Components {
					if c == want {
						found = true
						break
					}
				}
				if !found {
					missing = append(missing, a.Name)
				}
			}
			if len(missing) > 0 {
				shown := missing[:min(len(missing), 5)]
				more := ""
				if len(missing) > len(shown) {
					more = fmt.Sprintf(" and %d more", len(missing)-len(shown))
				}
				ps = append(ps, Problem{"config." + sec.section + "." + id, fmt.Sprintf("%s is not among the components of %d of %d matching agents (%s%s)", want, len(missing), checked, strings.Join(shown, ", "), more)})
			}
		}
	}
	return ps
}

// Validate checks the document of group: the group and selector tokens, the rollout
// policy, the collector YAML's shape and references, and its placeholders. It returns
// a *ValidationError listing every problem, or nil. The stamp is not checked
// (CheckStamp does, for stored values).
func (c CollectorConfig) Validate(group string) error {
	var ps []Problem
	if !tokenRE.MatchString(group) {
		ps = append(ps, Problem{"group", fmt.Sprintf("%q must be 1..128 of [A-Za-z0-9_=-]", group)})
	}
	if c.Selector.Region != "" && !tokenRE.MatchString(c.Selector.Region) {
		ps = append(ps, Problem{"selector.region", fmt.Sprintf("%q must be 1..128 of [A-Za-z0-9_=-]", c.Selector.Region)})
	}
	for _, k := range sortedKeys(c.Selector.Attributes) {
		if k == "" || len(k) > 256 || len(c.Selector.Attributes[k]) > 1024 {
			ps = append(ps, Problem{"selector.attributes." + k, "key must be 1..256 bytes and value at most 1024"})
		}
	}
	ps = append(ps, c.Rollout.problems()...)
	if strings.TrimSpace(c.Config) == "" {
		ps = append(ps, Problem{"config", "is empty; a collector config needs service.pipelines"})
	} else {
		_, pps := Placeholders(c.Config)
		ps = append(ps, pps...)
		_, sps := ParseCollectorYAML(c.Config)
		ps = append(ps, sps...)
	}
	if len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_=-]{1,128}$`)

// DecodeStoredCollector decodes the collector config of group read from the config
// bucket at key and checks size, schema, rules and stamp, as DecodeStoredGlobal does.
func DecodeStoredCollector(key, group string, b []byte) (CollectorConfig, error) {
	if err := CheckDocumentSize(key, len(b)); err != nil {
		return CollectorConfig{}, err
	}
	var c CollectorConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return CollectorConfig{}, fmt.Errorf("%w: %s: %v", ErrDecode, key, err)
	}
	if err := c.Validate(group); err != nil {
		return c, err
	}
	return c, CheckStamp(c.Version, c.UpdatedBy)
}

// DiffCollector names the fields of b that differ from a (stamp excluded).
func DiffCollector(a, b CollectorConfig) []string {
	var out []string
	if a.Selector.String() != b.Selector.String() {
		out = append(out, "selector")
	}
	if a.Config != b.Config {
		out = append(out, "config")
	}
	if a.Rollout != b.Rollout {
		out = append(out, "rollout")
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
