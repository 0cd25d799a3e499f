package validate

import (
	"fmt"
	"net/url"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PrometheusRule is the part of the Prometheus Operator's monitoring.coreos.com/v1
// PrometheusRule that otelfleet uses, decoded strictly (an unknown field is an error).
type PrometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              RuleSpec `json:"spec"`
}

// RuleSpec is a rule file's content: the same groups as a Prometheus rule file.
type RuleSpec struct {
	Groups []RuleGroup `json:"groups"`
}

// RuleGroup is one group of rules.
type RuleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []Rule `json:"rules"`
}

// Rule is one alerting or recording rule.
type Rule struct {
	Alert         string            `json:"alert,omitempty"`
	Record        string            `json:"record,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// PodMonitor is the part of monitoring.coreos.com/v1 PodMonitor that otelfleet uses.
type PodMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              PodMonitorSpec `json:"spec"`
}

// PodMonitorSpec selects the pods and the ports to scrape.
type PodMonitorSpec struct {
	Selector            metav1.LabelSelector `json:"selector"`
	PodMetricsEndpoints []PodMetricsEndpoint `json:"podMetricsEndpoints"`
}

// PodMetricsEndpoint is one scraped port.
type PodMetricsEndpoint struct {
	Port     string `json:"port"`
	Path     string `json:"path,omitempty"`
	Interval string `json:"interval,omitempty"`
}

// MetricsPath is where every otelfleet admin server serves its metrics.
const MetricsPath = "/metrics"

// monitoring checks the PodMonitors (each scrapes /metrics on a port the pods it selects
// have, and every pod with an admin port is scraped) and the PrometheusRules (every
// alert has an expression, a severity, a summary, a description and a runbook_url).
func (c *checker) monitoring() {
	if len(c.s.PodMonitors) > 0 {
		scraped := map[string]bool{}
		for _, pm := range c.s.PodMonitors {
			at := "PodMonitor/" + pm.Name
			for i, ep := range pm.Spec.PodMetricsEndpoints {
				if ep.Path != MetricsPath {
					c.fail("%s: spec.podMetricsEndpoints[%d].path %q: want %s", at, i, ep.Path, MetricsPath)
				}
				n := 0
				for _, w := range c.s.workloads() {
					if w.ns != pm.Namespace || !selects(&pm.Spec.Selector, w.template.Labels) {
						continue
					}
					for _, ctr := range w.template.Spec.Containers {
						for _, p := range ctr.Ports {
							if p.Name == ep.Port {
								scraped[w.id] = true
								n++
							}
						}
					}
				}
				if n == 0 {
					c.fail("%s: spec.podMetricsEndpoints[%d].port %q: no selected pod has such a port", at, i, ep.Port)
				}
			}
		}
		for _, w := range c.s.workloads() {
			for _, ctr := range w.template.Spec.Containers {
				for _, p := range ctr.Ports {
					if p.Name == "admin" && !scraped[w.id] {
						c.fail("%s: its admin port (/metrics) is scraped by no PodMonitor", w.id)
					}
				}
			}
		}
	}
	for _, pr := range c.s.PrometheusRules {
		for gi, g := range pr.Spec.Groups {
			for ri, r := range g.Rules {
				at := fmt.Sprintf("PrometheusRule/%s: spec.groups[%d].rules[%d] (%s%s)", pr.Name, gi, ri, r.Alert, r.Record)
				if strings.TrimSpace(r.Expr) == "" {
					c.fail("%s: expr: empty", at)
				}
				if r.Alert == "" {
					continue
				}
				if r.Labels["severity"] == "" {
					c.fail("%s: labels.severity: missing", at)
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						c.fail("%s: annotations.%s: missing", at, a)
					}
				}
				if u, err := url.Parse(r.Annotations["runbook_url"]); err == nil && !strings.EqualFold(u.Fragment, r.Alert) {
					c.fail("%s: annotations.runbook_url %q: want the anchor #%s", at, r.Annotations["runbook_url"], strings.ToLower(r.Alert))
				}
			}
		}
	}
}
