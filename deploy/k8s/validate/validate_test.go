package validate

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// root is the repository root, three levels up from deploy/k8s/validate.
var root = filepath.Join("..", "..", "..")

// images returns the image tags the Makefile's images target builds, with $$s expanded
// over the services (services/<s>/cmd/otelfleet-<s>) and $(TAG) replaced by the
// Makefile's default (`TAG ?= dev`). Any other make variable in a tag is an error.
func images(t *testing.T) map[string]bool {
	t.Helper()
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	defTag := regexp.MustCompile(`(?m)^TAG\s*\?=\s*(\S+)\s*$`).FindSubmatch(mk)
	if defTag == nil {
		t.Fatal("Makefile: no `TAG ?= <default>`")
	}
	makeVar := regexp.MustCompile(`\$\(|\$\{`)
	dirs, err := filepath.Glob(filepath.Join(root, "services", "*", "cmd", "otelfleet-*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no services/*/cmd/otelfleet-*: %v", err)
	}
	out := map[string]bool{}
	in := false
	tag := regexp.MustCompile(`-t (\S+)`)
	sc := bufio.NewScanner(strings.NewReader(string(mk)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "images:"):
			in = true
			continue
		case in && !strings.HasPrefix(line, "\t"):
			in = false
		}
		if m := tag.FindStringSubmatch(line); in && m != nil {
			img := strings.ReplaceAll(m[1], "$(TAG)", string(defTag[1]))
			if makeVar.MatchString(img) {
				t.Fatalf("Makefile images target: tag %q: a make variable the validation does not expand", m[1])
			}
			if !strings.Contains(img, "$$s") {
				out[img] = true
				continue
			}
			for _, d := range dirs {
				out[strings.ReplaceAll(img, "$$s", filepath.Base(filepath.Dir(filepath.Dir(d))))] = true
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("Makefile: no `docker build -t` in the images target")
	}
	return out
}

// binaries builds otelfleet and every service binary once, into a temporary directory.
var binaries = sync.OnceValues(func() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go toolchain not on PATH: %w", err)
	}
	dir, err := os.MkdirTemp("", "otelfleet-k8s-validate-")
	if err != nil {
		return "", err
	}
	pkgs := []string{"./cmd/otelfleet"}
	mains, _ := filepath.Glob(filepath.Join(root, "services", "*", "cmd", "otelfleet-*"))
	for _, m := range mains {
		rel, _ := filepath.Rel(root, m)
		pkgs = append(pkgs, "./"+filepath.ToSlash(rel))
	}
	cmd := exec.Command(goBin, append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %v: %w\n%s", pkgs, err, out)
	}
	return dir, nil
})

var helpEnv = regexp.MustCompile(`\benv ([A-Z][A-Z0-9_]*)`)

// natsEnv are the variables the otelfleet CLI's NATS client reads from the environment
// (natsconn.OptionsFromEnv), taken from the source.
func natsEnv(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, "pkg", "natsconn", "natsconn.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`os\.Getenv\("([A-Z_]+)"\)`).FindAllStringSubmatch(string(src), -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatal("pkg/natsconn: no os.Getenv found")
	}
	return out
}

// helpKnobs returns a Facts.Knobs that runs the program's --help and collects the env
// vars it names.
func helpKnobs(t *testing.T) func(c corev1.Container) (map[string]bool, error) {
	t.Helper()
	dir, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	nats := natsEnv(t)
	var mu sync.Mutex
	cache := map[string]map[string]bool{}
	return func(c corev1.Container) (map[string]bool, error) {
		name, ok := strings.CutPrefix(c.Image, "otelfleet/")
		name, _, _ = strings.Cut(name, ":")
		if !ok || len(c.Command) > 0 {
			return nil, fmt.Errorf("image %q command %q: not an otelfleet program", c.Image, c.Command)
		}
		args := []string{"--help"}
		bin := filepath.Join(dir, "otelfleet-"+name)
		if name == "otelfleet" {
			if len(c.Args) == 0 {
				return nil, errors.New("otelfleet image without a command in args")
			}
			bin, args = filepath.Join(dir, "otelfleet"), []string{c.Args[0], "--help"}
		}
		key := bin + " " + strings.Join(args, " ")
		mu.Lock()
		defer mu.Unlock()
		if k, ok := cache[key]; ok {
			return k, nil
		}
		out, _ := exec.Command(bin, args...).CombinedOutput() // --help exits 0 or 2 by flag package
		known := map[string]bool{}
		for _, m := range helpEnv.FindAllStringSubmatch(string(out), -1) {
			known[m[1]] = true
		}
		if len(known) == 0 {
			return nil, fmt.Errorf("%s: --help names no env vars:\n%s", key, out)
		}
		if name == "otelfleet" {
			for _, n := range nats {
				known[n] = true
			}
		}
		cache[key] = known
		return known, nil
	}
}

func facts(t *testing.T) Facts {
	return Facts{Images: images(t), NATSImage: "otelfleet/nats-server:dev", Knobs: helpKnobs(t)}
}

func build(t *testing.T, dir string) *Set {
	t.Helper()
	docs, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Decode(docs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestManifests builds deploy/k8s, deploy/k8s/demo and deploy/k8s/monitoring and runs
// every check.
func TestManifests(t *testing.T) {
	f := facts(t)
	for _, dir := range []string{"..", filepath.Join("..", "demo"), filepath.Join("..", "monitoring")} {
		t.Run(filepath.ToSlash(dir), func(t *testing.T) {
			s := build(t, dir)
			if err := Check(s, f); err != nil {
				t.Fatal(err)
			}
			want := map[string]int{"Deployment": 6, "StatefulSet": 1, "HorizontalPodAutoscaler": 1}
			if len(s.Deployments) < want["Deployment"] || len(s.StatefulSets) != 1 || len(s.HPAs) != 1 {
				t.Fatalf("got %d Deployments, %d StatefulSets, %d HPAs; want at least %v", len(s.Deployments), len(s.StatefulSets), len(s.HPAs), want)
			}
			router := deployment(t, s, "router")
			if *router.Spec.Replicas != 2 {
				t.Errorf("router replicas %d, want 2", *router.Spec.Replicas)
			}
			for _, port := range []string{"otlp-grpc", "otlp-http"} {
				if !s.Allowed(Peer{External: true}, router.Spec.Template, router.Namespace, intstr.FromString(port)) {
					t.Errorf("router %s: not reachable from outside the namespace", port)
				}
			}
			nats := s.StatefulSets[0]
			if *nats.Spec.Replicas != 3 || len(nats.Spec.VolumeClaimTemplates) != 1 {
				t.Errorf("nats: %d replicas, %d volume claims; want 3 and 1", *nats.Spec.Replicas, len(nats.Spec.VolumeClaimTemplates))
			}
			deployment(t, s, "opamp")
			for _, d := range s.Deployments {
				identity(t, s, d)
			}
			cm := map[string]string{}
			for _, m := range s.ConfigMaps {
				if strings.HasPrefix(m.Name, "otelfleet-env") {
					cm = m.Data
				}
			}
			if cm["JS_REPLICAS"] != "3" || cm["NATS_URL"] == "" || cm["REGION"] == "" || cm["ADMIN_ADDR"] == "" {
				t.Errorf("otelfleet-env: %v; want JS_REPLICAS=3, NATS_URL, REGION, ADMIN_ADDR", cm)
			}
		})
	}
}

// identity checks that Deployment d connects to NATS as its own identity of
// deploy/nats/auth.conf (Secret nats-user-<name>, as the NATS servers' env has it) and
// that only the config service provisions the streams and buckets (the other service
// identities have no create rights; the CLI's sinks do not provision).
func identity(t *testing.T, s *Set, d *appsv1.Deployment) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	secret := map[string]string{}
	provision, hasProvision := "", false
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			secret[e.Name] = e.ValueFrom.SecretKeyRef.Name
		}
		if e.Name == "PROVISION_BUCKETS" {
			provision, hasProvision = e.Value, true
		}
	}
	// The generated Secrets' names carry a content hash: nats-user-<name>-<hash>.
	if u, p := secret["NATS_USER"], secret["NATS_PASSWORD"]; u != p || !strings.HasPrefix(u, "nats-user-"+d.Name+"-") {
		t.Errorf("Deployment/%s: NATS identity from Secrets %q and %q (NATS_USER, NATS_PASSWORD); want nats-user-%s", d.Name, u, p, d.Name)
	}
	for _, sec := range s.Secrets {
		if sec.Name == secret["NATS_USER"] && string(sec.Data["user"])+sec.StringData["user"] != d.Name {
			t.Errorf("Deployment/%s: Secret %s: user %q; want %q", d.Name, sec.Name, string(sec.Data["user"])+sec.StringData["user"], d.Name)
		}
	}
	if strings.HasPrefix(c.Image, "otelfleet/otelfleet:") {
		return
	}
	wantProvision := "false"
	if d.Name == "config" {
		wantProvision = "true"
	}
	if !hasProvision || provision != wantProvision {
		t.Errorf("Deployment/%s: env PROVISION_BUCKETS %q (set: %v); want %q (only config provisions)", d.Name, provision, hasProvision, wantProvision)
	}
}

// TestSinkIdentities: each demo sink runs as collector local/sink-N, the only
// registration and load subject its NATS identity sink-N may write.
func TestSinkIdentities(t *testing.T) {
	s := build(t, filepath.Join("..", "demo"))
	for _, n := range []string{"sink-1", "sink-2", "sink-3"} {
		d := deployment(t, s, n)
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("Deployment/%s: replicas %v; want 1 (one collector per identity)", n, d.Spec.Replicas)
		}
		c := d.Spec.Template.Spec.Containers[0]
		args := strings.Join(c.Args, " ")
		if !strings.Contains(args, "--id "+n) || !strings.Contains(args, "--region local") {
			t.Errorf("Deployment/%s: args %q; want --id %s --region local", n, args, n)
		}
		for _, e := range c.Env {
			if e.Name == "COLLECTOR_ID" || e.Name == "REGION" {
				t.Errorf("Deployment/%s: env %s overrides the identity's collector id or region", n, e.Name)
			}
		}
	}
}

// TestUnquoted: a nats-server configuration's quoted strings and comments name no
// variables; the rest of the line does.
func TestUnquoted(t *testing.T) {
	for in, want := range map[string]string{
		`password: $OTELFLEET_PASSWORD_CONFIG`:             `password: $OTELFLEET_PASSWORD_CONFIG`,
		`  "$JS.API.STREAM.INFO.*"`:                        `   `,
		`x: '$SRV.*' # $COMMENT`:                           `x:   `,
		`a: "q\"$B" $C`:                                    `a:   $C`,
		`  // $COMMENTED`:                                  ``,
		`routes: [nats://nats-0.nats:6222] $AFTER_SLASHES`: `routes: [nats://nats-0.nats:6222] $AFTER_SLASHES`,
	} {
		if got := unquoted(in); got != want {
			t.Errorf("unquoted(%q) = %q; want %q", in, got, want)
		}
	}
}

func deployment(t *testing.T, s *Set, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range s.Deployments {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment/%s", name)
	return nil
}

// TestTypoFails: a misspelt field in a manifest fails the decode, naming the object and
// the field (testdata/typo has readinesProbe for readinessProbe).
func TestTypoFails(t *testing.T) {
	docs, err := Build(filepath.Join("testdata", "typo"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decode(docs)
	if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "Deployment/config") || !strings.Contains(err.Error(), `"readinesProbe"`) {
		t.Fatalf("Decode: %v; want ErrDecode naming Deployment/config and readinesProbe", err)
	}
}

// TestChecksFail: each way of breaking the good manifests is caught, with the object and
// field named.
func TestChecksFail(t *testing.T) {
	f := facts(t)
	cases := []struct {
		name   string
		break_ func(s *Set)
		want   string
	}{
		{"no liveness probe", func(s *Set) { ctr(s, "router").LivenessProbe = nil }, "Deployment/router: spec.template.spec.containers[0] (router): livenessProbe: missing"},
		{"readiness on healthz", func(s *Set) { ctr(s, "sampler").ReadinessProbe.HTTPGet.Path = "/healthz" }, `readinessProbe.httpGet.path "/healthz": want /readyz`},
		{"probe on the OTLP port", func(s *Set) { ctr(s, "router").ReadinessProbe.HTTPGet.Port = intstr.FromString("otlp-http") }, "is 4318, the admin server listens on 8080"},
		{"probe on a missing port", func(s *Set) { ctr(s, "config").LivenessProbe.HTTPGet.Port = intstr.FromString("adminn") }, "livenessProbe.httpGet.port adminn: the container has no such port"},
		{"no memory limit", func(s *Set) { delete(ctr(s, "topology").Resources.Limits, corev1.ResourceMemory) }, "Deployment/topology: spec.template.spec.containers[0] (topology): resources.limits.memory: missing"},
		{"no PDB", func(s *Set) { s.PDBs = s.PDBs[:0] }, "Deployment/registry: no PodDisruptionBudget selects its pods"},
		{"env typo", func(s *Set) {
			c := ctr(s, "router")
			c.Env = append(c.Env, corev1.EnvVar{Name: "ROUTER_MEMORY_LIMT", Value: "1"})
		}, "env ROUTER_MEMORY_LIMT: the program reads no such variable"},
		{"missing secret", func(s *Set) { s.Secrets = s.Secrets[:0] }, "secretKeyRef"},
		{"image typo", func(s *Set) { ctr(s, "config").Image = "otelfleet/confg:dev" }, `image "otelfleet/confg:dev" is not one`},
		{"service selects nothing", func(s *Set) {
			for _, svc := range s.Services {
				if svc.Name == "router" {
					svc.Spec.Selector = map[string]string{"app.kubernetes.io/name": "routr"}
				}
			}
		}, "Service/router: spec.selector map[app.kubernetes.io/name:routr] selects no pods"},
		{"writable root", func(s *Set) { f := false; ctr(s, "registry").SecurityContext.ReadOnlyRootFilesystem = &f }, "readOnlyRootFilesystem: want true"},
		{"NATS client without the label", func(s *Set) {
			for _, d := range s.Deployments {
				if d.Name == "sampler" {
					delete(d.Spec.Template.Labels, NATSClientLabel)
				}
			}
		}, "Deployment/sampler: NetworkPolicy: reads NATS_URL but may not reach StatefulSet/nats"},
		{"NATS open to all", func(s *Set) {
			for _, np := range s.NetworkPolicies {
				if np.Name == "nats-clients" {
					np.Spec.Ingress[0].From = nil
				}
			}
		}, "StatefulSet/nats: NetworkPolicy: an unlabelled pod may reach the client port"},
		{"password var not set on nats", func(s *Set) {
			c := &s.StatefulSets[0].Spec.Template.Spec.Containers[0]
			c.Env = c.Env[:1]
		}, "mounted auth.conf refers to $OTELFLEET_PASSWORD_CONFIG, which the container's env does not set"},
		{"one password var missing on nats", func(s *Set) {
			c := &s.StatefulSets[0].Spec.Template.Spec.Containers[0]
			var env []corev1.EnvVar
			for _, e := range c.Env {
				if e.Name != "OTELFLEET_PASSWORD_SINK_2" {
					env = append(env, e)
				}
			}
			c.Env = env
		}, "mounted auth.conf refers to $OTELFLEET_PASSWORD_SINK_2, which the container's env does not set"},
		{"an identity reads every reply", func(s *Set) {
			for _, cm := range s.ConfigMaps {
				for k, v := range cm.Data {
					cm.Data[k] = strings.ReplaceAll(v, `"_INBOX_router.>"`, `"_INBOX.>"`)
				}
			}
		}, `user "router" may use "_INBOX.>"; want only its own replies, _INBOX_router.>`},
		{"an identity reads another's replies", func(s *Set) {
			for _, cm := range s.ConfigMaps {
				for k, v := range cm.Data {
					cm.Data[k] = strings.ReplaceAll(v, `"_INBOX_sink-2.>"`, `"_INBOX_sink-2.>" "_INBOX_config.>"`)
				}
			}
		}, `user "sink-2" may use "_INBOX_config.>"`},
		{"stale password var on nats", func(s *Set) {
			c := &s.StatefulSets[0].Spec.Template.Spec.Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "SINK_PASSWORD", Value: "x"})
		}, "env SINK_PASSWORD: nats-server's configuration does not use it"},
		{"selector misses the pods", func(s *Set) {
			for _, d := range s.Deployments {
				if d.Name == "opamp" {
					d.Spec.Template.Labels["app.kubernetes.io/name"] = "opam"
				}
			}
		}, "Deployment/opamp: spec.selector does not select spec.template.metadata.labels"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := build(t, "..")
			tc.break_(s)
			err := Check(s, f)
			if !errors.Is(err, ErrCheck) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

func ctr(s *Set, deployment string) *corev1.Container {
	for _, d := range s.Deployments {
		if d.Name == deployment {
			return &d.Spec.Template.Spec.Containers[0]
		}
	}
	panic("no Deployment/" + deployment)
}

// TestPrometheusRuleEqualsAlerts: the monitoring overlay's PrometheusRule carries exactly
// the groups of deploy/monitoring/alerts.yaml (the rule file the promtool tests cover),
// and a PodMonitor scrapes every otelfleet pod.
func TestPrometheusRuleEqualsAlerts(t *testing.T) {
	s := build(t, filepath.Join("..", "monitoring"))
	if len(s.PrometheusRules) != 1 || len(s.PodMonitors) != 1 {
		t.Fatalf("%d PrometheusRules, %d PodMonitors; want 1 and 1", len(s.PrometheusRules), len(s.PodMonitors))
	}
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "monitoring", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file RuleSpec
	if err := yaml.UnmarshalStrict(raw, &file); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	got := s.PrometheusRules[0].Spec
	if len(file.Groups) == 0 || !reflect.DeepEqual(got, file) {
		for i := range max(len(got.Groups), len(file.Groups)) {
			var a, b RuleGroup
			if i < len(got.Groups) {
				a = got.Groups[i]
			}
			if i < len(file.Groups) {
				b = file.Groups[i]
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("group %d differs:\nPrometheusRule: %+v\nalerts.yaml:    %+v", i, a, b)
			}
		}
		t.Fatal("deploy/k8s/monitoring/prometheusrule.yaml: spec.groups differ from deploy/monitoring/alerts.yaml; copy the groups over")
	}
	if s.PrometheusRules[0].Namespace != "otelfleet" {
		t.Errorf("PrometheusRule namespace %q, want otelfleet", s.PrometheusRules[0].Namespace)
	}
}

// TestMonitoringChecksFail: each way of breaking the monitoring overlay is caught.
func TestMonitoringChecksFail(t *testing.T) {
	f := facts(t)
	cases := []struct {
		name   string
		break_ func(s *Set)
		want   string
	}{
		{"wrong port", func(s *Set) { s.PodMonitors[0].Spec.PodMetricsEndpoints[0].Port = "adminn" }, `PodMonitor/otelfleet: spec.podMetricsEndpoints[0].port "adminn": no selected pod has such a port`},
		{"wrong path", func(s *Set) { s.PodMonitors[0].Spec.PodMetricsEndpoints[0].Path = "/metric" }, `spec.podMetricsEndpoints[0].path "/metric": want /metrics`},
		{"router not selected", func(s *Set) {
			s.PodMonitors[0].Spec.Selector.MatchLabels = map[string]string{"app.kubernetes.io/name": "sampler"}
		}, "Deployment/router: its admin port (/metrics) is scraped by no PodMonitor"},
		{"runbook anchor", func(s *Set) {
			s.PrometheusRules[0].Spec.Groups[0].Rules[0].Annotations["runbook_url"] = "https://example.invalid/OPERATIONS.md#elsewhere"
		}, "want the anchor #otelfleetsamplernoleader"},
		{"no severity", func(s *Set) { delete(s.PrometheusRules[0].Spec.Groups[0].Rules[1].Labels, "severity") }, "(OtelfleetSamplingDecisionStale): labels.severity: missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := build(t, filepath.Join("..", "monitoring"))
			if err := Check(s, f); err != nil {
				t.Fatalf("the overlay as shipped: %v", err)
			}
			tc.break_(s)
			err := Check(s, f)
			if !errors.Is(err, ErrCheck) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}
