package events

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// LoadReport is what a collector publishes on <root>.load.<region>.<collector> every
// interval (default 1 s): its current load, capacity and per-service span rates.
type LoadReport struct {
	V int `json:"v"`
	// Region and Collector identify the reporter; they match the subject tokens.
	Region    string    `json:"region"`
	Collector string    `json:"collector"`
	At        time.Time `json:"at"`
	// IntervalMS is the length of the interval the rates cover, in milliseconds.
	IntervalMS int64 `json:"interval_ms"`
	// QPS is spans received per second.
	QPS float64 `json:"qps"`
	// BytesPerSec is payload bytes received per second.
	BytesPerSec float64 `json:"bytes_per_sec"`
	// QueueDepth is spans waiting to be exported.
	QueueDepth int64 `json:"queue_depth"`
	// CPU is the collector process's CPU use as a fraction of the machine, in [0, 1].
	CPU float64 `json:"cpu"`
	// Memory is the collector process's resident memory in bytes.
	Memory uint64 `json:"memory"`
	// AvgLatencyMS is the average time a span spends queued (Little's law), in ms.
	AvgLatencyMS float64 `json:"avg_latency_ms"`
	// ErrorRate is refused or failed spans over all spans, in [0, 1].
	ErrorRate float64 `json:"error_rate"`
	// Capacity is the spans per second the collector can take (0 = unknown).
	Capacity float64 `json:"capacity"`
	// Healthy is the collector's own view of its health.
	Healthy bool `json:"healthy"`
	// Services are the top services by span rate.
	Services []ServiceRate `json:"services,omitempty"`
	// Role is RoleRouter when an OTLP router reports (QPS and Services are then the
	// spans it received, before sampling); empty for a collector.
	Role string `json:"role,omitempty"`
	// ForwardedQPS is the spans per second a router handed to its backends (after
	// sampling and rate limiting); 0 for a collector.
	ForwardedQPS float64 `json:"forwarded_qps,omitempty"`
	// Forwarded are the per-service rates of those forwarded spans, for services listed
	// in Services; a router only.
	Forwarded []ServiceRate `json:"forwarded,omitempty"`
}

// RoleRouter is the LoadReport.Role of an OTLP router's report.
const RoleRouter = "router"

// ServiceRate is one service's span rate at one collector.
type ServiceRate struct {
	Name        string  `json:"name"`
	SpansPerSec float64 `json:"spans_per_sec"`
}

// LoadReportVersion is the schema version of LoadReport.
const LoadReportVersion = 1

// Limits that reject absurd load reports.
const (
	// MaxReportedQPS bounds qps, capacity and per-service rates (spans/s of one collector).
	MaxReportedQPS = 1e9
	// MaxReportedServices bounds the services list.
	MaxReportedServices = 1000
)

// Kind implements Payload.
func (LoadReport) Kind() string { return "load.report" }

// SchemaVersion implements Payload.
func (LoadReport) SchemaVersion() int { return LoadReportVersion }

// Validate implements Payload: ids are valid tokens, every number is finite, non-negative
// and within sane bounds.
func (r LoadReport) Validate() error {
	var errs []error
	if err := CheckToken("region", r.Region); err != nil {
		errs = append(errs, fmt.Errorf("region: %w", err))
	}
	if err := CheckToken("collector", r.Collector); err != nil {
		errs = append(errs, fmt.Errorf("collector: %w", err))
	}
	if r.At.IsZero() {
		errs = append(errs, errors.New("at: missing"))
	}
	num := func(field string, v, hi float64) {
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			errs = append(errs, fmt.Errorf("%s: %v is not a finite number", field, v))
		case v < 0:
			errs = append(errs, fmt.Errorf("%s: %v is negative", field, v))
		case v > hi:
			errs = append(errs, fmt.Errorf("%s: %v is above the limit %v", field, v, hi))
		}
	}
	num("qps", r.QPS, MaxReportedQPS)
	num("bytes_per_sec", r.BytesPerSec, 1e13)
	num("queue_depth", float64(r.QueueDepth), 1e12)
	num("cpu", r.CPU, 1)
	num("avg_latency_ms", r.AvgLatencyMS, 1e8)
	num("error_rate", r.ErrorRate, 1)
	num("capacity", r.Capacity, MaxReportedQPS)
	if r.IntervalMS < 0 || r.IntervalMS > 3_600_000 {
		errs = append(errs, fmt.Errorf("interval_ms: %d is outside [0, 3600000]", r.IntervalMS))
	}
	rates := func(field string, list []ServiceRate) {
		if len(list) > MaxReportedServices {
			errs = append(errs, fmt.Errorf("%s: %d entries, at most %d", field, len(list), MaxReportedServices))
		}
		for i, s := range list {
			if s.Name == "" || len(s.Name) > 256 {
				errs = append(errs, fmt.Errorf("%s[%d].name: must be 1..256 bytes", field, i))
			}
			num(fmt.Sprintf("%s[%d].spans_per_sec", field, i), s.SpansPerSec, MaxReportedQPS)
		}
	}
	rates("services", r.Services)
	switch r.Role {
	case RoleRouter:
		num("forwarded_qps", r.ForwardedQPS, MaxReportedQPS)
		rates("forwarded", r.Forwarded)
	case "":
		if r.ForwardedQPS != 0 || len(r.Forwarded) > 0 {
			errs = append(errs, fmt.Errorf("forwarded_qps, forwarded: set on a report whose role is not %q", RoleRouter))
		}
	default:
		errs = append(errs, fmt.Errorf("role: %q, want %q or empty (a collector)", r.Role, RoleRouter))
	}
	return errors.Join(errs...)
}
