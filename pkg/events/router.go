package events

import (
	"errors"
	"fmt"
	"time"
)

// Router request/reply bodies (micro service otlp-router). Endpoint names: RouterOpRoute
// and RouterOpStatus under EndpointGroup(ServiceRouter).

// Router endpoint operations.
const (
	// RouterOpRoute answers a RouteQuery with a RouteAnswer: where a trace goes now.
	RouterOpRoute = "route"
	// RouterOpStatus answers with a RouterStatus: this router's backends and counters.
	RouterOpStatus = "status"
)

// RouteQuery asks a router where a trace would go now.
type RouteQuery struct {
	// TraceID is the trace ID as 32 hex digits.
	TraceID string `json:"trace_id"`
	// Service is the trace's service.name (selects the sampling rate and routing rules).
	Service string `json:"service,omitempty"`
	// Region is the client's region (default: the router's).
	Region string `json:"region,omitempty"`
}

// RouteAnswer says where a trace goes and why.
type RouteAnswer struct {
	V int `json:"v"`
	// Router is the instance that answered.
	Router string `json:"router"`
	// TraceID echoes the query, normalised to 32 lowercase hex digits.
	TraceID string `json:"trace_id"`
	Service string `json:"service,omitempty"`
	// Rate is the sampling probability applied to the service in the region, Threshold
	// its OpenTelemetry th value, Kept whether this trace ID is kept at that rate (without
	// an incoming tracestate).
	Rate      float64 `json:"rate"`
	Threshold string  `json:"threshold"`
	Kept      bool    `json:"kept"`
	// Backend is the chosen backend's registration key and Addr its OTLP endpoint; empty
	// when no backend can take the trace.
	Backend string `json:"backend,omitempty"`
	Addr    string `json:"addr,omitempty"`
	// Region is the region the backend was chosen in; Strategy the table's strategy.
	Region   string `json:"region,omitempty"`
	Strategy string `json:"strategy"`
	// Fallbacks are the next backends for this trace, in fail-over order.
	Fallbacks []string `json:"fallbacks,omitempty"`
	// Why explains each step (rate source, routing rule, region preference, placement).
	Why []string `json:"why"`
}

// RouterBackend is one backend as a router sees it.
type RouterBackend struct {
	Key        string  `json:"key"`
	Addr       string  `json:"addr"`
	Region     string  `json:"region"`
	Share      float64 `json:"share"` // fraction of the key space in its region's table
	Sent       int64   `json:"sent"`
	Failed     int64   `json:"failed"`
	Retried    int64   `json:"retried"`
	Rerouted   int64   `json:"rerouted"`
	Dropped    int64   `json:"dropped"`
	QueueBytes int64   `json:"queue_bytes"`
	InFlight   int64   `json:"in_flight"`
	Leaving    bool    `json:"leaving,omitempty"`
}

// RouterStatus is a router's state: its backends and traffic.
type RouterStatus struct {
	V        int             `json:"v"`
	Router   string          `json:"router"`
	Region   string          `json:"region"`
	Strategy string          `json:"strategy"`
	GRPCAddr string          `json:"grpc_addr"`
	HTTPAddr string          `json:"http_addr"`
	Backends []RouterBackend `json:"backends"`
	// Received, Kept, Sampled, RateLimited count spans since start.
	Received    int64 `json:"received"`
	Kept        int64 `json:"kept"`
	Sampled     int64 `json:"sampled_out"`
	RateLimited int64 `json:"rate_limited"`
	// MemoryBytes is the bytes the router holds for requests in flight and queues;
	// MemoryLimit its limit.
	MemoryBytes int64 `json:"memory_bytes"`
	MemoryLimit int64 `json:"memory_limit"`
	// At is when the status was taken; set on the copies published on
	// RouterStatusSubject, so a reader can turn two of them into rates.
	At time.Time `json:"at,omitzero"`
}

// MaxRouterBackends bounds the backends a RouterStatus lists.
const MaxRouterBackends = 10_000

// Kind implements Payload.
func (RouterStatus) Kind() string { return "router.status" }

// SchemaVersion implements Payload.
func (RouterStatus) SchemaVersion() int { return RouterVersion }

// Validate implements Payload: the router and region are valid tokens (the region may
// be empty), every counter is non-negative, and the backends are at most
// MaxRouterBackends, each with a key, counters >= 0 and a share in [0, 1].
func (s RouterStatus) Validate() error {
	var errs []error
	if err := CheckToken("router id", s.Router); err != nil {
		errs = append(errs, fmt.Errorf("router: %w", err))
	}
	if s.Region != "" {
		if err := CheckToken("region", s.Region); err != nil {
			errs = append(errs, fmt.Errorf("region: %w", err))
		}
	}
	count := func(field string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s: %d is negative", field, v))
		}
	}
	count("received", s.Received)
	count("kept", s.Kept)
	count("sampled_out", s.Sampled)
	count("rate_limited", s.RateLimited)
	count("memory_bytes", s.MemoryBytes)
	count("memory_limit", s.MemoryLimit)
	if len(s.Backends) > MaxRouterBackends {
		errs = append(errs, fmt.Errorf("backends: %d entries, at most %d", len(s.Backends), MaxRouterBackends))
		return errors.Join(errs...)
	}
	for i, b := range s.Backends {
		if b.Key == "" || len(b.Key) > 512 {
			errs = append(errs, fmt.Errorf("backends[%d].key: must be 1..512 bytes", i))
		}
		if !(b.Share >= 0 && b.Share <= 1) {
			errs = append(errs, fmt.Errorf("backends[%d].share: %v is outside [0, 1]", i, b.Share))
		}
		f := func(name string) string { return fmt.Sprintf("backends[%d].%s", i, name) }
		count(f("sent"), b.Sent)
		count(f("failed"), b.Failed)
		count(f("retried"), b.Retried)
		count(f("rerouted"), b.Rerouted)
		count(f("dropped"), b.Dropped)
		count(f("queue_bytes"), b.QueueBytes)
		count(f("in_flight"), b.InFlight)
	}
	return errors.Join(errs...)
}

// RouterVersion is the schema version of RouteAnswer and RouterStatus.
const RouterVersion = 1
