package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
)

// TestMain removes the otelfleet binary the tests built (once for every -count) and
// checks for leaked goroutines.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		_ = os.RemoveAll(builtDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// root is the repository root, three levels up from deploy/monitoring/check.
var root = filepath.Join("..", "..", "..")

var (
	alertsFile    = filepath.Join("..", "alerts.yaml")
	dashboardsDir = filepath.Join("..", "dashboards")
)

// dashboards are the shipped dashboards by file name.
var dashboards = []string{"fleet.json", "router.json", "sampler.json", "opamp.json"}

// queries returns every PromQL query of the kit, Grafana variables substituted, and
// fails the test on a file that does not load or a variable that is not defined.
func queries(t *testing.T) []Query {
	t.Helper()
	rules, err := LoadRules(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	out := RuleQueries(rules, "alerts.yaml")
	found, _ := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	var names []string
	for _, f := range found {
		names = append(names, filepath.Base(f))
	}
	sort.Strings(names)
	want := slices.Clone(dashboards)
	sort.Strings(want)
	if !slices.Equal(names, want) {
		t.Fatalf("dashboards %v; want %v", names, want)
	}
	for _, name := range dashboards {
		d, err := LoadDashboard(filepath.Join(dashboardsDir, name))
		if err != nil {
			t.Fatal(err)
		}
		qs, err := d.Queries(name)
		if err != nil {
			t.Fatal(err)
		}
		vars := d.Variables()
		for _, q := range qs {
			expr, err := Substitute(q.Expr, vars)
			if err != nil {
				t.Fatalf("%s: %v", q.Where, err)
			}
			out = append(out, Query{Where: q.Where, Expr: expr})
		}
	}
	return out
}

// TestExpressionsParse: every expression of alerts.yaml and of every dashboard panel and
// variable parses as PromQL and names its metrics.
func TestExpressionsParse(t *testing.T) {
	qs := queries(t)
	n := map[string]int{}
	for _, q := range qs {
		names, err := MetricNames(q.Expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", q.Where, err, q.Expr)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: names no metric: %s", q.Where, q.Expr)
		}
		n[strings.SplitN(q.Where, ":", 2)[0]]++
	}
	for _, f := range append([]string{"alerts.yaml"}, dashboards...) {
		if n[f] == 0 {
			t.Errorf("%s: no query checked", f)
		}
	}
}

// TestAlertsAreComplete: every alert has a severity, a summary, a description and a
// runbook_url whose anchor is a section of docs/OPERATIONS.md.
func TestAlertsAreComplete(t *testing.T) {
	rules, err := LoadRules(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile(filepath.Join(root, "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(ops), "\n") {
		if h, ok := strings.CutPrefix(line, "### "); ok {
			anchors["#"+strings.ToLower(strings.TrimSpace(h))] = true
		}
	}
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if seen[r.Alert] {
				t.Errorf("%s: defined twice", r.Alert)
			}
			seen[r.Alert] = true
			if r.Labels["severity"] != "critical" && r.Labels["severity"] != "warning" {
				t.Errorf("%s: severity %q; want critical or warning", r.Alert, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: annotation %s missing", r.Alert, a)
				}
			}
			_, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "#")
			if !strings.HasSuffix(strings.Split(r.Annotations["runbook_url"], "#")[0], "/docs/OPERATIONS.md") || !anchors["#"+anchor] || anchor != strings.ToLower(r.Alert) {
				t.Errorf("%s: runbook_url %q; want docs/OPERATIONS.md#%s, a section (### %s) of docs/OPERATIONS.md", r.Alert, r.Annotations["runbook_url"], strings.ToLower(r.Alert), r.Alert)
			}
		}
	}
	if len(seen) < 12 {
		t.Errorf("%d alerts; want every alert of the kit", len(seen))
	}
}

// TestDashboardsImport: each dashboard is what Grafana imports as it is.
func TestDashboardsImport(t *testing.T) {
	uids := map[string]string{}
	for _, name := range dashboards {
		d, err := LoadDashboard(filepath.Join(dashboardsDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Check(name); err != nil {
			t.Error(err)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s: uid %q is %s's as well", name, d.UID, other)
		}
		uids[d.UID] = name
	}
}

// TestDashboardChecksFail: each way of breaking a dashboard is caught, naming the panel.
func TestDashboardChecksFail(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(d *Dashboard)
		want   string
	}{
		{"duplicate id", func(d *Dashboard) { d.Panels[2].ID = d.Panels[1].ID }, "already the id of"},
		{"no gridPos", func(d *Dashboard) { d.Panels[1].GridPos = nil }, "gridPos <nil>"},
		{"overlap", func(d *Dashboard) { g := *d.Panels[1].GridPos; d.Panels[2].GridPos = &g }, "overlaps panel"},
		{"too wide", func(d *Dashboard) { d.Panels[1].GridPos.X = 22 }, "x + w <= 24"},
		{"fixed datasource", func(d *Dashboard) {
			d.Panels[1].Datasource = &DatasourceRef{Type: "prometheus", UID: "P1809F7CD0C75ACF3"}
		}, "want {type: prometheus, uid: ${datasource}}"},
		{"target datasource", func(d *Dashboard) { d.Panels[1].Targets[0].Datasource = nil }, "targets[0]: datasource <nil>"},
		{"unknown variable", func(d *Dashboard) { d.Panels[1].Targets[0].Expr = `up{job=~"$jobb"}` }, "unknown variable $jobb"},
		{"no unit", func(d *Dashboard) { d.Panels[1].FieldConfig.Defaults.Unit = "" }, "fieldConfig.defaults.unit: missing"},
		{"no uid", func(d *Dashboard) { d.UID = "" }, `uid "": want`},
		{"no title", func(d *Dashboard) { d.Title = " " }, "title: missing"},
		{"old schema", func(d *Dashboard) { d.SchemaVersion = 16 }, "schemaVersion 16"},
		{"no datasource variable", func(d *Dashboard) { d.Templating.List = d.Templating.List[1:] }, "no Prometheus datasource variable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := LoadDashboard(filepath.Join(dashboardsDir, "router.json"))
			if err != nil {
				t.Fatal(err)
			}
			tc.break_(d)
			err = d.Check("router.json")
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]bool{"instance": true, "region": true}
	for in, want := range map[string]string{
		`rate(x{instance=~"$instance"}[$__rate_interval])`:                         `rate(x{instance=~".*"}[5m])`,
		`sum(x{region=~"${region}"}) / $__range_s`:                                 `sum(x{region=~".*"}) / 3600`,
		`increase(x{region=~"${region:regex}"}[$__interval])`:                      `increase(x{region=~".*"}[1m])`,
		`x{instance=~"[[instance]]"}`:                                              `x{instance=~".*"}`,
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))`: `histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))`,
	} {
		got, err := Substitute(in, vars)
		if err != nil || got != want {
			t.Errorf("Substitute(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Substitute(`x{a=~"$nope"}`, vars); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown variable: %v; want ErrInvalid", err)
	}
}

func TestMetricNames(t *testing.T) {
	got, err := MetricNames(`sum(rate(a_total[5m])) / on (k) group_left () max by (k) ({__name__="b"}) or absent(c) > 2 * histogram_quantile(0.9, rate(d_bucket[1m]))`)
	if err != nil || strings.Join(got, ",") != "a_total,b,c,d_bucket" {
		t.Errorf("MetricNames = %v, %v; want a_total b c d_bucket", got, err)
	}
	if _, err := MetricNames(`sum(rate(a_total[5m])`); !errors.Is(err, ErrInvalid) {
		t.Errorf("unbalanced parenthesis: %v; want ErrInvalid", err)
	}
	if _, err := MetricNames(`{job="x"}`); !errors.Is(err, ErrInvalid) {
		t.Errorf("a selector without a metric name: %v; want ErrInvalid", err)
	}
}

func TestExported(t *testing.T) {
	text := "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n" +
		"# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 1\n# TYPE c counter\nc_total 1\n# TYPE g gauge\ng 1\n"
	fams, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"h": true, "h_bucket": true, "h_sum": true, "h_count": true, "s": true, "s_sum": true, "s_count": true,
		"s_bucket": false, "c_total": true, "g": true, "g_bucket": false, "g_count": false, "missing": false, "c": false,
	} {
		if got := Exported(fams, name); got != want {
			t.Errorf("Exported(%q) = %v; want %v", name, got, want)
		}
	}
}

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// builtDir holds the binary otelfleetBinary built; TestMain removes it.
var builtDir string

// otelfleetBinary builds cmd/otelfleet once into a temporary directory.
var otelfleetBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "otelfleet-monitoring-check-")
	if err != nil {
		return "", err
	}
	builtDir = dir
	bin := filepath.Join(dir, "otelfleet")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/otelfleet")
	cmd.Dir = root
	// This module's tests run with GOWORK=off (make test); otelfleet builds in the
	// repository's workspace, as make build does.
	work, err := filepath.Abs(filepath.Join(root, "go.work"))
	if err != nil {
		return "", err
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK="+work)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/otelfleet: %w\n%s", err, out)
	}
	return bin, nil
})

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// traceJSON is one OTLP/JSON export request of n spans of service checkout, trace i.
func traceJSON(i, n int) []byte {
	var spans []string
	for j := range n {
		spans = append(spans, fmt.Sprintf(`{"traceId":"%032x","spanId":"%016x","name":"op","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000001000000"}`, i+1, j+1))
	}
	return []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},"scopeSpans":[{"spans":[` + strings.Join(spans, ",") + `]}]}]}`)
}

// TestMetricNamesExported runs a real `otelfleet dev` (router, sinks, OpAMP server,
// simulated fleet) on free ports, sends it some OTLP and fails naming every metric that
// an alert or a panel uses and the process does not export: a renamed metric breaks
// this test, not the on-call's dashboard.
func TestMetricNamesExported(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs otelfleet dev")
	}
	uses := map[string][]string{} // metric -> where
	for _, q := range queries(t) {
		names, err := MetricNames(q.Expr)
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		for _, n := range names {
			uses[n] = append(uses[n], q.Where)
		}
	}
	bin, err := otelfleetBinary()
	if err != nil {
		t.Fatal(err)
	}

	admin, otlpHTTP := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "dev",
		"--data-dir", t.TempDir(), "--nats-port", freePort(t), "--admin-addr", admin,
		"--otlp-grpc-addr", "127.0.0.1:"+freePort(t), "--otlp-http-addr", otlpHTTP,
		"--opamp-addr", "127.0.0.1:"+freePort(t), "--sampling-addr", "127.0.0.1:"+freePort(t),
		"--services", "all", "--router", "--sinks", "2", "--simulate", "--log-level", "warn")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 15 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel()
		if err := <-exited; err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("otelfleet dev: %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
		if t.Failed() {
			t.Logf("otelfleet dev output:\n%s", logs.String())
		}
	}()

	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(3 * time.Minute)
	// The router answers 503 until it is ready; a few traces then reach the sinks.
	sent := 0
	for sent < 5 && time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("otelfleet dev exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := client.Post("http://"+otlpHTTP+"/v1/traces", "application/json", bytes.NewReader(traceJSON(sent, 4)))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				sent++
				continue
			}
		}
		time.Sleep(200 * time.Millisecond) // the router is not ready yet: poll again
	}
	if sent < 5 {
		t.Fatalf("the router took %d of 5 OTLP requests within the deadline", sent)
	}

	// Poll the scrape until every metric used is there (some appear with the first
	// traffic or the first report) or the deadline passes.
	var missing []string
	for {
		fams, err := scrape(client, "http://"+admin+"/metrics")
		if err == nil {
			missing = missing[:0]
			for name := range uses {
				if !Exported(fams, name) {
					missing = append(missing, name)
				}
			}
			if len(missing) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond) // a scrape is cheap; the next report is a second away
	}
	sort.Strings(missing)
	var b strings.Builder
	for _, name := range missing {
		fmt.Fprintf(&b, "\n  %s, used by:\n    %s", name, strings.Join(uses[name], "\n    "))
	}
	t.Fatalf("%d metrics used by alerts or dashboards are not exported by otelfleet dev:%s", len(missing), b.String())
}

func scrape(c *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}
