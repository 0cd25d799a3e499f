package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/otelfleet/otelfleet/deploy/k8s/validate"
)

// ErrInvalid is wrapped by every finding: the message names the file, the object and the
// field.
var ErrInvalid = errors.New("invalid")

// LoadRules reads a rule file into the types deploy/k8s/validate decodes a
// PrometheusRule's spec into (one definition of a rule group); an unknown field is an
// error.
func LoadRules(path string) (validate.RuleSpec, error) {
	var f validate.RuleSpec
	b, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return f, fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
	}
	return f, nil
}

// Query is one PromQL expression and where it comes from.
type Query struct {
	Where string // e.g. "alerts.yaml: OtelfleetRouterDropping" or "router.json: panel 3 (Memory) target A"
	Expr  string
}

// RuleQueries are the expressions of rule file f, named file.
func RuleQueries(f validate.RuleSpec, file string) []Query {
	var out []Query
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, Query{Where: file + ": " + g.Name + "/" + r.Alert + r.Record, Expr: r.Expr})
		}
	}
	return out
}

// grafanaVars are Grafana's built-in variables with a value that parses where they stand.
var grafanaVars = map[string]string{
	"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "__range_s": "3600",
	"__interval_ms": "60000", "__range_ms": "3600000",
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]`)

// Substitute replaces Grafana's variables in expr: the built-in intervals by durations,
// a dashboard's own variables (vars) by ".*" (what "All" stands for: they are used in
// regular-expression matchers). An unknown variable is an error.
func Substitute(expr string, vars map[string]bool) (string, error) {
	var unknown []string
	out := varRef.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		if v, ok := grafanaVars[name]; ok {
			return v
		}
		if vars[name] {
			return ".*"
		}
		unknown = append(unknown, "$"+name)
		return m
	})
	if len(unknown) > 0 {
		return expr, fmt.Errorf("%w: unknown variable %s", ErrInvalid, strings.Join(unknown, ", "))
	}
	return out, nil
}

var promql = parser.NewParser(parser.Options{})

// MetricNames parses expr and returns the metric names its selectors name, sorted. A
// selector without a metric name is an error: every query here names its metric.
func MetricNames(expr string) ([]string, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: parse: %w", ErrInvalid, err)
	}
	set := map[string]bool{}
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			errs = append(errs, fmt.Errorf("%w: selector %s names no metric", ErrInvalid, vs))
			return nil
		}
		set[name] = true
		return nil
	})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Exported reports whether name is a series of the scraped families: a family's own
// name, or a histogram's name_bucket, name_sum or name_count (a summary's _sum and
// _count).
func Exported(families map[string]*dto.MetricFamily, name string) bool {
	if _, ok := families[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f, ok := families[base]
		if !ok {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			return true
		case dto.MetricType_SUMMARY:
			return suffix != "_bucket"
		}
	}
	return false
}

// Dashboard is the part of Grafana's dashboard model the checks read; the file is kept
// whole in Raw.
type Dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []Panel `json:"panels"`
	Templating    struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Panel is one panel (a row's nested panels in Panels).
type Panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	GridPos     *GridPos       `json:"gridPos"`
	Datasource  *DatasourceRef `json:"datasource"`
	Targets     []Target       `json:"targets"`
	Panels      []Panel        `json:"panels"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

// GridPos is a panel's place on the 24-column grid.
type GridPos struct {
	X, Y, W, H int
}

// DatasourceRef names a data source; "${datasource}" refers to the variable.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Target is one query of a panel.
type Target struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Datasource *DatasourceRef `json:"datasource"`
}

// Variable is a template variable.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *DatasourceRef  `json:"datasource"`
}

// LoadDashboard decodes a dashboard JSON file.
func LoadDashboard(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
	}
	return &d, nil
}

// SchemaVersion is the lowest dashboard schema version the checks accept: the panel
// model with gridPos and datasource references by uid.
const SchemaVersion = 36

// Check returns what keeps Grafana from importing d as it is, or makes a panel show
// nothing: a missing title or uid, an old schema, no Prometheus data source variable,
// panels without a unique id or a place on the grid, overlapping panels, data source
// references other than that variable, targets without a query or a refId, unknown
// variables, and time series or stat panels without a unit.
func (d *Dashboard) Check(file string) error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: "+format, append([]any{ErrInvalid, file}, args...)...))
	}
	if strings.TrimSpace(d.Title) == "" {
		fail("title: missing")
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`).MatchString(d.UID) {
		fail("uid %q: want 1 to 40 of [A-Za-z0-9_-]", d.UID)
	}
	if d.SchemaVersion < SchemaVersion {
		fail("schemaVersion %d: want at least %d", d.SchemaVersion, SchemaVersion)
	}
	dsVar := ""
	vars := map[string]bool{}
	for i, v := range d.Templating.List {
		if v.Name == "" || vars[v.Name] {
			fail("templating.list[%d]: name %q missing or repeated", i, v.Name)
		}
		vars[v.Name] = true
		if v.Type == "datasource" {
			var q string
			if json.Unmarshal(v.Query, &q) != nil || q != "prometheus" {
				fail("templating.list[%d] (%s): a datasource variable with query %s; want \"prometheus\"", i, v.Name, v.Query)
			}
			dsVar = v.Name
		}
	}
	if dsVar == "" {
		fail("templating: no Prometheus datasource variable")
	}
	wantDS := "${" + dsVar + "}"
	ref := func(at string, ds *DatasourceRef) {
		if ds == nil || ds.UID != wantDS || ds.Type != "prometheus" {
			fail("%s: datasource %+v: want {type: prometheus, uid: %s}", at, ds, wantDS)
		}
	}
	for i, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		at := fmt.Sprintf("templating.list[%d] (%s)", i, v.Name)
		ref(at, v.Datasource)
		if _, err := VariableQueries(v); err != nil {
			fail("%s: %v", at, err)
		}
	}
	ids := map[int]string{}
	var placed []Panel
	var walk func(ps []Panel, path string)
	walk = func(ps []Panel, path string) {
		for i, p := range ps {
			at := fmt.Sprintf("%s[%d] (%s)", path, i, p.Title)
			if p.ID <= 0 {
				fail("%s: id %d: want a positive id", at, p.ID)
			} else if other, dup := ids[p.ID]; dup {
				fail("%s: id %d: already the id of %s", at, p.ID, other)
			} else {
				ids[p.ID] = at
			}
			if strings.TrimSpace(p.Title) == "" {
				fail("%s: title: missing", at)
			}
			g := p.GridPos
			if g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				fail("%s: gridPos %+v: want x >= 0, y >= 0, w > 0, h > 0, x + w <= 24", at, g)
			} else {
				for _, q := range placed {
					r := q.GridPos
					if g.X < r.X+r.W && r.X < g.X+g.W && g.Y < r.Y+r.H && r.Y < g.Y+g.H {
						fail("%s: gridPos %+v overlaps panel %d (%s) at %+v", at, *g, q.ID, q.Title, *r)
					}
				}
				placed = append(placed, p)
			}
			walk(p.Panels, at+".panels")
			if p.Type == "row" {
				continue
			}
			ref(at, p.Datasource)
			if len(p.Targets) == 0 {
				fail("%s: targets: none", at)
			}
			if (p.Type == "timeseries" || p.Type == "stat") && p.FieldConfig.Defaults.Unit == "" {
				fail("%s: fieldConfig.defaults.unit: missing", at)
			}
			refs := map[string]bool{}
			for j, t := range p.Targets {
				tat := fmt.Sprintf("%s.targets[%d]", at, j)
				if t.RefID == "" || refs[t.RefID] {
					fail("%s: refId %q missing or repeated", tat, t.RefID)
				}
				refs[t.RefID] = true
				ref(tat, t.Datasource)
				if strings.TrimSpace(t.Expr) == "" {
					fail("%s: expr: empty", tat)
				} else if _, err := Substitute(t.Expr, vars); err != nil {
					fail("%s: %v", tat, err)
				}
			}
		}
	}
	walk(d.Panels, "panels")
	return errors.Join(errs...)
}

// Variables are the names of d's template variables.
func (d *Dashboard) Variables() map[string]bool {
	out := map[string]bool{}
	for _, v := range d.Templating.List {
		out[v.Name] = true
	}
	return out
}

// Queries are d's panel targets' expressions and its query variables' metric
// selectors, with where they are.
func (d *Dashboard) Queries(file string) ([]Query, error) {
	var out []Query
	var walk func(ps []Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, Query{Where: fmt.Sprintf("%s: panel %d (%s) target %s", file, p.ID, p.Title, t.RefID), Expr: t.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	var errs []error
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		qs, err := VariableQueries(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: variable %s: %w", file, v.Name, err))
		}
		for _, q := range qs {
			out = append(out, Query{Where: fmt.Sprintf("%s: variable %s", file, v.Name), Expr: q})
		}
	}
	return out, errors.Join(errs...)
}

var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

// VariableQueries returns the PromQL of a query variable: the series selector of
// label_values(selector, label), or a query_result(...) expression.
func VariableQueries(v Variable) ([]string, error) {
	q := v.Definition
	var obj struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &obj); err == nil && obj.Query != "" {
		q = obj.Query
	} else if s := ""; json.Unmarshal(v.Query, &s) == nil && s != "" {
		q = s
	}
	if m := labelValues.FindStringSubmatch(q); m != nil {
		return []string{m[1]}, nil
	}
	if inner, ok := strings.CutPrefix(strings.TrimSpace(q), "query_result("); ok {
		return []string{strings.TrimSuffix(inner, ")")}, nil
	}
	return nil, fmt.Errorf("%w: query %q: want label_values(selector, label) or query_result(expr)", ErrInvalid, q)
}
