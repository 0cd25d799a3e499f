// Package validate builds otelfleet's kustomizations offline with the kustomize API,
// decodes every object strictly into the Kubernetes API types (an unknown or misspelt
// field is an error) and checks what a cluster would only show at run time: probes on the
// real admin paths and ports, resources, a PodDisruptionBudget per workload, env vars the
// programs read, references to ConfigMaps and Secrets that exist, Services that select
// pods, images that `make images` builds, and NetworkPolicies that let exactly the NATS
// clients reach NATS.
package validate

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// ErrBuild is wrapped when kustomize cannot build a directory.
var ErrBuild = errors.New("kustomize build")

// ErrDecode is wrapped when an object does not decode strictly into its API type.
var ErrDecode = errors.New("decode")

// ErrCheck is wrapped by every failed check; the message names the object and field.
var ErrCheck = errors.New("check")

// Set is every object of one build, by kind.
type Set struct {
	Namespaces      []*corev1.Namespace
	ConfigMaps      []*corev1.ConfigMap
	Secrets         []*corev1.Secret
	Services        []*corev1.Service
	Deployments     []*appsv1.Deployment
	StatefulSets    []*appsv1.StatefulSet
	PDBs            []*policyv1.PodDisruptionBudget
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	NetworkPolicies []*networkingv1.NetworkPolicy
	PrometheusRules []*PrometheusRule
	PodMonitors     []*PodMonitor
}

// Build runs kustomize on dir (on disk, default options, as `kubectl apply -k` does) and
// returns each resulting object as YAML.
func Build(dir string) ([][]byte, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrBuild, dir, err)
	}
	var docs [][]byte
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%w %s: %s: %w", ErrBuild, dir, r.CurId(), err)
		}
		docs = append(docs, b)
	}
	return docs, nil
}

// Decode decodes each document strictly into its Kubernetes API type: an unknown field,
// a duplicate field or a value of the wrong type is an error naming the object. A kind
// this package does not know is an error too, so nothing goes unchecked.
func Decode(docs [][]byte) (*Set, error) {
	s := &Set{}
	var errs []error
	for _, doc := range docs {
		var tm struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			errs = append(errs, fmt.Errorf("%w: %w", ErrDecode, err))
			continue
		}
		id := tm.APIVersion + " " + tm.Kind + "/" + tm.Metadata.Name
		var err error
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/Namespace":
			s.Namespaces, err = appendStrict(s.Namespaces, doc)
		case "v1/ConfigMap":
			s.ConfigMaps, err = appendStrict(s.ConfigMaps, doc)
		case "v1/Secret":
			s.Secrets, err = appendStrict(s.Secrets, doc)
		case "v1/Service":
			s.Services, err = appendStrict(s.Services, doc)
		case "apps/v1/Deployment":
			s.Deployments, err = appendStrict(s.Deployments, doc)
		case "apps/v1/StatefulSet":
			s.StatefulSets, err = appendStrict(s.StatefulSets, doc)
		case "policy/v1/PodDisruptionBudget":
			s.PDBs, err = appendStrict(s.PDBs, doc)
		case "autoscaling/v2/HorizontalPodAutoscaler":
			s.HPAs, err = appendStrict(s.HPAs, doc)
		case "networking.k8s.io/v1/NetworkPolicy":
			s.NetworkPolicies, err = appendStrict(s.NetworkPolicies, doc)
		case "monitoring.coreos.com/v1/PrometheusRule":
			s.PrometheusRules, err = appendStrict(s.PrometheusRules, doc)
		case "monitoring.coreos.com/v1/PodMonitor":
			s.PodMonitors, err = appendStrict(s.PodMonitors, doc)
		default:
			err = errors.New("kind not known to the validation (add it to Decode)")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%w %s: %w", ErrDecode, id, err))
		}
	}
	return s, errors.Join(errs...)
}

func appendStrict[T any](list []*T, doc []byte) ([]*T, error) {
	v := new(T)
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return list, err
	}
	return append(list, v), nil
}

// Facts are what the manifests are checked against: things the repository defines.
type Facts struct {
	// Images are the images `make images` builds.
	Images map[string]bool
	// NATSImage is the nats-server image; its container reads no knobs, only the env vars
	// its mounted configuration names ($NAME).
	NATSImage string
	// Knobs returns the env vars the program of an otelfleet container reads (its image
	// and args say which program); an error for a program it does not know.
	Knobs func(c corev1.Container) (map[string]bool, error)
}

// workload is a Deployment or StatefulSet seen through what the checks need.
type workload struct {
	id       string // Deployment/name
	ns       string
	replicas int32
	selector *metav1.LabelSelector
	template corev1.PodTemplateSpec
}

func (s *Set) workloads() []workload {
	var out []workload
	for _, d := range s.Deployments {
		out = append(out, workload{"Deployment/" + d.Name, d.Namespace, replicas(d.Spec.Replicas), d.Spec.Selector, d.Spec.Template})
	}
	for _, st := range s.StatefulSets {
		out = append(out, workload{"StatefulSet/" + st.Name, st.Namespace, replicas(st.Spec.Replicas), st.Spec.Selector, st.Spec.Template})
	}
	return out
}

func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// Check runs every check on s and returns them all joined, each wrapping ErrCheck.
func Check(s *Set, f Facts) error {
	c := &checker{s: s, f: f}
	for _, w := range s.workloads() {
		c.workload(w)
	}
	c.services()
	c.hpas()
	c.networkPolicies()
	c.monitoring()
	return errors.Join(c.errs...)
}

type checker struct {
	s    *Set
	f    Facts
	errs []error
}

func (c *checker) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: "+format, append([]any{ErrCheck}, args...)...))
}

func (c *checker) configMap(ns, name string) *corev1.ConfigMap {
	for _, m := range c.s.ConfigMaps {
		if m.Namespace == ns && m.Name == name {
			return m
		}
	}
	return nil
}

func (c *checker) secret(ns, name string) *corev1.Secret {
	for _, m := range c.s.Secrets {
		if m.Namespace == ns && m.Name == name {
			return m
		}
	}
	return nil
}

func (c *checker) secretHas(sec *corev1.Secret, key string) bool {
	if _, ok := sec.Data[key]; ok {
		return true
	}
	_, ok := sec.StringData[key]
	return ok
}

// Liveness and readiness paths every otelfleet admin server serves.
const (
	LivenessPath  = "/healthz"
	ReadinessPath = "/readyz"
)

var refVar = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// confVar finds $NAME references in a nats-server configuration (in the unquoted text
// of a line: "$JS.API..." is a subject, not a variable).
var confVar = regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`)

// unquoted returns the parts of one line of a nats-server configuration outside quoted
// strings ("..." or '...') and before a comment (# outside quotes, or a line that starts
// with //); each quoted string becomes a space.
func unquoted(line string) string {
	if strings.HasPrefix(strings.TrimSpace(line), "//") {
		return ""
	}
	var b strings.Builder
	var quote byte
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case quote != 0:
			if ch == '\\' && quote == '"' && i+1 < len(line) {
				i++
			} else if ch == quote {
				quote = 0
				b.WriteByte(' ')
			}
		case ch == '"' || ch == '\'':
			quote = ch
		case ch == '#':
			return b.String()
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

var httpPort = regexp.MustCompile(`(?m)^\s*http_port\s*[:=]\s*(\d+)`)

func (c *checker) workload(w workload) {
	spec := w.template.Spec
	if len(w.template.Labels) == 0 {
		c.fail("%s: spec.template.metadata.labels: empty", w.id)
	}
	if !selects(w.selector, w.template.Labels) {
		c.fail("%s: spec.selector does not select spec.template.metadata.labels %v", w.id, w.template.Labels)
	}
	// A PodDisruptionBudget that selects the pods and can let one go.
	var pdbs []string
	for _, p := range c.s.PDBs {
		if p.Namespace != w.ns || !selects(p.Spec.Selector, w.template.Labels) {
			continue
		}
		pdbs = append(pdbs, p.Name)
		if p.Spec.MinAvailable != nil && p.Spec.MinAvailable.Type == intstr.Int && p.Spec.MinAvailable.IntVal >= w.replicas {
			c.fail("%s: PodDisruptionBudget/%s: minAvailable %d with %d replicas blocks every drain", w.id, p.Name, p.Spec.MinAvailable.IntVal, w.replicas)
		}
	}
	if len(pdbs) == 0 {
		c.fail("%s: no PodDisruptionBudget selects its pods", w.id)
	}
	mounted := c.mountedFiles(w)
	podNonRoot := spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot
	podUser := spec.SecurityContext != nil && spec.SecurityContext.RunAsUser != nil && *spec.SecurityContext.RunAsUser > 0
	for i, ctr := range spec.Containers {
		at := fmt.Sprintf("%s: spec.template.spec.containers[%d] (%s)", w.id, i, ctr.Name)
		if !c.f.Images[ctr.Image] {
			c.fail("%s: image %q is not one `make images` builds (%s)", at, ctr.Image, strings.Join(sortedKeys(c.f.Images), ", "))
		}
		if ctr.ImagePullPolicy == corev1.PullAlways {
			c.fail("%s: imagePullPolicy Always: the images are loaded into the cluster, not pulled", at)
		}
		c.security(at, ctr, podNonRoot, podUser)
		c.resources(at, ctr.Resources)
		env := c.env(at, w.ns, ctr)
		c.knobs(at, ctr, env, mounted)
		admin := c.adminPort(at, ctr, env, mounted)
		c.probe(at, "livenessProbe", ctr, ctr.LivenessProbe, LivenessPath, admin)
		ready := ReadinessPath
		if ctr.Image == c.f.NATSImage {
			ready = LivenessPath // nats-server's /healthz is its readiness too
		}
		c.probe(at, "readinessProbe", ctr, ctr.ReadinessProbe, ready, admin)
		if ctr.StartupProbe != nil {
			c.probe(at, "startupProbe", ctr, ctr.StartupProbe, LivenessPath, admin)
		}
	}
	if strings.HasPrefix(w.id, "StatefulSet/") {
		for _, st := range c.s.StatefulSets {
			if "StatefulSet/"+st.Name == w.id && c.service(w.ns, st.Spec.ServiceName) == nil {
				c.fail("%s: spec.serviceName %q: no such Service", w.id, st.Spec.ServiceName)
			}
		}
	}
}

func (c *checker) security(at string, ctr corev1.Container, podNonRoot, podUser bool) {
	sc := ctr.SecurityContext
	nonRoot := podNonRoot || (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)
	user := podUser || (sc != nil && sc.RunAsUser != nil && *sc.RunAsUser > 0)
	if !nonRoot || !user {
		// A scratch image names no user: runAsNonRoot needs a numeric runAsUser to start.
		c.fail("%s: securityContext: want runAsNonRoot and a non-zero runAsUser (pod or container)", at)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.fail("%s: securityContext.readOnlyRootFilesystem: want true", at)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.fail("%s: securityContext.allowPrivilegeEscalation: want false", at)
	}
}

func (c *checker) resources(at string, r corev1.ResourceRequirements) {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := r.Requests[name]
		lim, okLim := r.Limits[name]
		if !okReq || req.IsZero() {
			c.fail("%s: resources.requests.%s: missing", at, name)
		}
		if !okLim || lim.IsZero() {
			c.fail("%s: resources.limits.%s: missing", at, name)
		}
		if okReq && okLim && req.Cmp(lim) > 0 {
			c.fail("%s: resources.requests.%s %s above the limit %s", at, name, req.String(), lim.String())
		}
	}
}

// env resolves the container's environment (values of literals and ConfigMap keys;
// Secrets and fields as placeholders) and checks every reference it makes.
func (c *checker) env(at, ns string, ctr corev1.Container) map[string]string {
	env := map[string]string{}
	for j, from := range ctr.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			m := c.configMap(ns, from.ConfigMapRef.Name)
			if m == nil {
				c.fail("%s: envFrom[%d].configMapRef %q: no such ConfigMap", at, j, from.ConfigMapRef.Name)
				continue
			}
			for k, v := range m.Data {
				env[from.Prefix+k] = v
			}
		case from.SecretRef != nil:
			sec := c.secret(ns, from.SecretRef.Name)
			if sec == nil {
				c.fail("%s: envFrom[%d].secretRef %q: no such Secret", at, j, from.SecretRef.Name)
				continue
			}
			for k := range sec.Data {
				env[from.Prefix+k] = "<secret>"
			}
			for k := range sec.StringData {
				env[from.Prefix+k] = "<secret>"
			}
		}
	}
	for j, e := range ctr.Env {
		where := fmt.Sprintf("%s: env[%d] %s", at, j, e.Name)
		for _, m := range refVar.FindAllStringSubmatch(e.Value, -1) {
			if _, ok := env[m[1]]; !ok {
				c.fail("%s: value refers to $(%s), which is not defined before it", where, m[1])
			}
		}
		switch vf := e.ValueFrom; {
		case vf == nil:
			env[e.Name] = refVar.ReplaceAllStringFunc(e.Value, func(s string) string { return env[s[2:len(s)-1]] })
		case vf.ConfigMapKeyRef != nil:
			m := c.configMap(ns, vf.ConfigMapKeyRef.Name)
			switch {
			case m == nil:
				c.fail("%s: configMapKeyRef %q: no such ConfigMap", where, vf.ConfigMapKeyRef.Name)
			default:
				v, ok := m.Data[vf.ConfigMapKeyRef.Key]
				if !ok {
					c.fail("%s: configMapKeyRef %s: no key %q", where, m.Name, vf.ConfigMapKeyRef.Key)
				}
				env[e.Name] = v
			}
		case vf.SecretKeyRef != nil:
			sec := c.secret(ns, vf.SecretKeyRef.Name)
			switch {
			case sec == nil:
				c.fail("%s: secretKeyRef %q: no such Secret", where, vf.SecretKeyRef.Name)
			case !c.secretHas(sec, vf.SecretKeyRef.Key):
				c.fail("%s: secretKeyRef %s: no key %q", where, sec.Name, vf.SecretKeyRef.Key)
			}
			env[e.Name] = "<secret>"
		default:
			env[e.Name] = "<field>"
		}
	}
	return env
}

// mountedFiles returns the ConfigMap files mounted into the pod, by key.
func (c *checker) mountedFiles(w workload) map[string]string {
	files := map[string]string{}
	add := func(name string) {
		if m := c.configMap(w.ns, name); m != nil {
			for k, v := range m.Data {
				files[k] = v
			}
		} else {
			c.fail("%s: volume ConfigMap %q: no such ConfigMap", w.id, name)
		}
	}
	for _, v := range w.template.Spec.Volumes {
		if v.ConfigMap != nil {
			add(v.ConfigMap.Name)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil {
					add(src.ConfigMap.Name)
				}
				if src.Secret != nil && c.secret(w.ns, src.Secret.Name) == nil {
					c.fail("%s: projected Secret %q: no such Secret", w.id, src.Secret.Name)
				}
			}
		}
		if v.Secret != nil && c.secret(w.ns, v.Secret.SecretName) == nil {
			c.fail("%s: volume Secret %q: no such Secret", w.id, v.Secret.SecretName)
		}
	}
	return files
}

// runtimeEnv are read by the Go runtime of every binary.
var runtimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GODEBUG": true, "GOGC": true}

func (c *checker) knobs(at string, ctr corev1.Container, env map[string]string, mounted map[string]string) {
	// Variables other env values or the args use are consumed by Kubernetes itself.
	used := map[string]bool{}
	for _, s := range append(append(append([]string{}, ctr.Command...), ctr.Args...), envValues(ctr)...) {
		for _, m := range refVar.FindAllStringSubmatch(s, -1) {
			used[m[1]] = true
		}
	}
	if ctr.Image == c.f.NATSImage {
		refs := map[string]bool{}
		for name, text := range mounted {
			c.inboxes(at, name, text)
			for _, line := range strings.Split(text, "\n") {
				for _, m := range confVar.FindAllStringSubmatch(unquoted(line), -1) {
					refs[m[1]] = true
					if _, ok := env[m[1]]; !ok {
						c.fail("%s: mounted %s refers to $%s, which the container's env does not set", at, name, m[1])
					}
				}
			}
		}
		for name := range env {
			if !refs[name] && !used[name] {
				c.fail("%s: env %s: nats-server's configuration does not use it", at, name)
			}
		}
		return
	}
	known, err := c.f.Knobs(ctr)
	if err != nil {
		c.fail("%s: %v", at, err)
		return
	}
	for _, name := range sortedKeys(env) {
		if !known[name] && !runtimeEnv[name] && !used[name] {
			c.fail("%s: env %s: the program reads no such variable", at, name)
		}
	}
}

var (
	confUser  = regexp.MustCompile(`^\s*user\s*[:=]\s*"([^"]+)"`)
	confInbox = regexp.MustCompile(`"(_INBOX[^"]*)"`)
)

// inboxes checks that every user of a mounted nats-server configuration may read only
// its own replies: the one inbox subject it names is _INBOX_<user>.> (each identity
// connects with that inbox prefix), never _INBOX.> or another identity's.
func (c *checker) inboxes(at, name, text string) {
	user := ""
	for _, line := range strings.Split(text, "\n") {
		if m := confUser.FindStringSubmatch(line); m != nil {
			user = m[1]
			continue
		}
		for _, m := range confInbox.FindAllStringSubmatch(line, -1) {
			if user != "" && m[1] != "_INBOX_"+user+".>" {
				c.fail("%s: mounted %s: user %q may use %q; want only its own replies, _INBOX_%s.>", at, name, user, m[1], user)
			}
		}
	}
}

func envValues(ctr corev1.Container) []string {
	var out []string
	for _, e := range ctr.Env {
		out = append(out, e.Value)
	}
	return out
}

// adminPort is the port the container serves /healthz and /readyz on: nats-server's
// http_port, or the port of an otelfleet binary's ADMIN_ADDR (which must be set: the
// laptop defaults are not on every interface for all programs).
func (c *checker) adminPort(at string, ctr corev1.Container, env map[string]string, mounted map[string]string) int {
	if ctr.Image == c.f.NATSImage {
		for _, text := range mounted {
			if m := httpPort.FindStringSubmatch(text); m != nil {
				p, _ := strconv.Atoi(m[1])
				return p
			}
		}
		c.fail("%s: no http_port in the mounted nats-server configuration", at)
		return 0
	}
	addr, ok := env["ADMIN_ADDR"]
	if !ok {
		c.fail("%s: env ADMIN_ADDR: not set", at)
		return 0
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		c.fail("%s: env ADMIN_ADDR %q: %v", at, addr, err)
		return 0
	}
	if host == "127.0.0.1" || host == "localhost" || host == "::1" {
		c.fail("%s: env ADMIN_ADDR %q: loopback, the kubelet cannot probe it", at, addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		c.fail("%s: env ADMIN_ADDR %q: port: %v", at, addr, err)
	}
	return p
}

func (c *checker) probe(at, field string, ctr corev1.Container, p *corev1.Probe, path string, admin int) {
	if p == nil {
		c.fail("%s: %s: missing", at, field)
		return
	}
	if p.HTTPGet == nil {
		c.fail("%s: %s: want httpGet on %s", at, field, path)
		return
	}
	got, _, _ := strings.Cut(p.HTTPGet.Path, "?")
	if got != path {
		c.fail("%s: %s.httpGet.path %q: want %s", at, field, p.HTTPGet.Path, path)
	}
	port, ok := containerPort(ctr, p.HTTPGet.Port)
	switch {
	case !ok:
		c.fail("%s: %s.httpGet.port %s: the container has no such port", at, field, p.HTTPGet.Port.String())
	case admin != 0 && port != admin:
		c.fail("%s: %s.httpGet.port %s is %d, the admin server listens on %d", at, field, p.HTTPGet.Port.String(), port, admin)
	}
}

// containerPort resolves a port name or number against the container's ports.
func containerPort(ctr corev1.Container, p intstr.IntOrString) (int, bool) {
	for _, cp := range ctr.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

func (c *checker) service(ns, name string) *corev1.Service {
	for _, s := range c.s.Services {
		if s.Namespace == ns && s.Name == name {
			return s
		}
	}
	return nil
}

func (c *checker) services() {
	for _, svc := range c.s.Services {
		at := "Service/" + svc.Name
		if len(svc.Spec.Selector) == 0 {
			c.fail("%s: spec.selector: empty", at)
			continue
		}
		var pods []corev1.PodTemplateSpec
		for _, w := range c.s.workloads() {
			if w.ns == svc.Namespace && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.template.Labels)) {
				pods = append(pods, w.template)
			}
		}
		if len(pods) == 0 {
			c.fail("%s: spec.selector %v selects no pods", at, svc.Spec.Selector)
			continue
		}
		for i, sp := range svc.Spec.Ports {
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port)
			}
			for _, pod := range pods {
				found := false
				for _, ctr := range pod.Spec.Containers {
					if _, ok := containerPort(ctr, target); ok {
						found = true
					}
				}
				if !found {
					c.fail("%s: spec.ports[%d].targetPort %s: the selected pods (%s) have no such port", at, i, target.String(), pod.Labels)
				}
			}
		}
	}
}

func (c *checker) hpas() {
	for _, h := range c.s.HPAs {
		at := "HorizontalPodAutoscaler/" + h.Name
		ref := h.Spec.ScaleTargetRef
		var target *appsv1.Deployment
		for _, d := range c.s.Deployments {
			if d.Namespace == h.Namespace && d.Name == ref.Name {
				target = d
			}
		}
		if ref.Kind != "Deployment" || target == nil {
			c.fail("%s: spec.scaleTargetRef %s/%s: no such Deployment", at, ref.Kind, ref.Name)
			continue
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			c.fail("%s: spec.minReplicas: want 2..maxReplicas (%d)", at, h.Spec.MaxReplicas)
		}
		cpu := false
		for _, m := range h.Spec.Metrics {
			if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU {
				cpu = true
			}
		}
		if !cpu {
			c.fail("%s: spec.metrics: no CPU resource metric", at)
		}
	}
}

// Peer is one end of a connection for the NetworkPolicy check: a pod of the build (by
// its labels, in the namespace of the target) or something outside the cluster.
type Peer struct {
	Labels   map[string]string
	External bool
}

// Allowed reports whether the NetworkPolicies of s let from reach port (name or number)
// of a pod with the given template, as a NetworkPolicy implementation would.
func (s *Set) Allowed(from Peer, to corev1.PodTemplateSpec, ns string, port intstr.IntOrString) bool {
	selected := false
	for _, np := range s.NetworkPolicies {
		if np.Namespace != ns || !hasIngress(np) || !selects(&np.Spec.PodSelector, to.Labels) {
			continue
		}
		selected = true
		for _, rule := range np.Spec.Ingress {
			if portMatches(rule.Ports, to, port) && peerMatches(rule.From, from) {
				return true
			}
		}
	}
	return !selected
}

func hasIngress(np *networkingv1.NetworkPolicy) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return true
	}
	for _, t := range np.Spec.PolicyTypes {
		if t == networkingv1.PolicyTypeIngress {
			return true
		}
	}
	return false
}

func portMatches(ports []networkingv1.NetworkPolicyPort, to corev1.PodTemplateSpec, port intstr.IntOrString) bool {
	if len(ports) == 0 {
		return true
	}
	want := resolve(to, port)
	for _, p := range ports {
		if p.Port == nil || (want != 0 && resolve(to, *p.Port) == want) {
			return true
		}
	}
	return false
}

func resolve(pod corev1.PodTemplateSpec, p intstr.IntOrString) int {
	for _, ctr := range pod.Spec.Containers {
		if n, ok := containerPort(ctr, p); ok {
			return n
		}
	}
	return 0
}

func peerMatches(peers []networkingv1.NetworkPolicyPeer, from Peer) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		switch {
		case p.IPBlock != nil:
			if from.External {
				return true
			}
		case from.External:
		case p.NamespaceSelector != nil && p.PodSelector == nil:
			return true // a namespace selector: the pod's namespace is labelled or {} selects all
		case p.PodSelector != nil && (p.NamespaceSelector == nil || len(p.NamespaceSelector.MatchLabels)+len(p.NamespaceSelector.MatchExpressions) == 0):
			if selects(p.PodSelector, from.Labels) {
				return true
			}
		}
	}
	return false
}

// NATSClientLabel marks the pods that NetworkPolicy nats-clients lets reach NATS.
const NATSClientLabel = "otelfleet.io/nats-client"

func (c *checker) networkPolicies() {
	var natsPods []workload
	for _, w := range c.s.workloads() {
		for _, ctr := range w.template.Spec.Containers {
			if ctr.Image == c.f.NATSImage {
				natsPods = append(natsPods, w)
			}
		}
	}
	if len(natsPods) == 0 {
		return
	}
	client := intstr.FromString("client")
	for _, w := range c.s.workloads() {
		talks := false
		for _, ctr := range w.template.Spec.Containers {
			for _, e := range ctr.Env {
				talks = talks || e.Name == "NATS_URL"
			}
			for _, from := range ctr.EnvFrom {
				if from.ConfigMapRef != nil {
					if m := c.configMap(w.ns, from.ConfigMapRef.Name); m != nil {
						_, ok := m.Data["NATS_URL"]
						talks = talks || ok
					}
				}
			}
		}
		for _, n := range natsPods {
			if n.id == w.id {
				if !c.s.Allowed(Peer{Labels: w.template.Labels}, n.template, n.ns, intstr.FromString("cluster")) {
					c.fail("%s: NetworkPolicy: the NATS servers cannot reach each other on the cluster port", w.id)
				}
				continue
			}
			allowed := c.s.Allowed(Peer{Labels: w.template.Labels}, n.template, n.ns, client)
			switch {
			case talks && !allowed:
				c.fail("%s: NetworkPolicy: reads NATS_URL but may not reach %s on the client port (label %s=true?)", w.id, n.id, NATSClientLabel)
			case !talks && allowed:
				c.fail("%s: NetworkPolicy: does not talk to NATS but may reach %s on the client port", w.id, n.id)
			}
		}
	}
	for _, n := range natsPods {
		if c.s.Allowed(Peer{Labels: map[string]string{"app.kubernetes.io/name": "intruder"}}, n.template, n.ns, client) {
			c.fail("%s: NetworkPolicy: an unlabelled pod may reach the client port", n.id)
		}
		if c.s.Allowed(Peer{External: true}, n.template, n.ns, client) {
			c.fail("%s: NetworkPolicy: the client port is open outside the cluster", n.id)
		}
	}
}

func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(l))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
