// Package otlpwire reads and splits OTLP export requests (ExportTraceServiceRequest,
// ExportLogsServiceRequest, ExportMetricsServiceRequest) at the protobuf wire level.
//
// A request is never decoded into objects: Split walks resources, scopes and items
// (spans, log records, or whole ResourceMetrics), asks the caller where each item goes,
// and writes one request per destination that copies the resource and scope bytes as they
// were and carries only that destination's items. Because every Export*ServiceRequest has
// a single repeated field, concatenating two encoded requests of the same signal is a
// valid request holding both: batching is appending bytes.
package otlpwire

import "errors"

// Signal is a kind of OTLP data.
type Signal uint8

// The signals.
const (
	Traces Signal = iota + 1
	Logs
	Metrics
)

// String returns "traces", "logs" or "metrics".
func (s Signal) String() string {
	switch s {
	case Traces:
		return "traces"
	case Logs:
		return "logs"
	case Metrics:
		return "metrics"
	}
	return "unknown"
}

// ErrMalformed is wrapped by every error about a request that is not valid OTLP
// protobuf; the message names where (e.g. "resource_spans[2].scope_spans[0].spans[5]:
// trace_id is 3 bytes, want 16").
var ErrMalformed = errors.New("malformed OTLP request")

// Item is what Split shows the router for each routable item: a span (traces), a log
// record (logs), or a whole ResourceMetrics (metrics). Its byte slices alias the request
// and are valid only during the route call.
type Item struct {
	// Resource is the index of the item's resource in the request (for per-resource
	// caching by the caller: every item of one resource has the same Service).
	Resource int
	// Service is the resource's service.name attribute (nil when absent).
	Service []byte
	// TraceID is the item's trace ID; HasTraceID is false for metrics and for log records
	// without one (absent or all zero).
	TraceID    [16]byte
	HasTraceID bool
	// TraceState is the span's W3C trace_state (traces only; nil when empty).
	TraceState []byte
	// Count is how many telemetry items this is: 1 for a span or log record, the number of
	// data points for a ResourceMetrics.
	Count int
}

// Special destinations a route function may return.
const (
	// DestSampled drops the item as sampled out: accepted, not forwarded, not an error.
	DestSampled = -1
	// DestRejected refuses the item (rate limited): it is counted in the response's
	// partial_success as rejected.
	DestRejected = -2
)

// Verdict is where one item goes.
type Verdict struct {
	// Dest is a destination index in [0, n) or DestSampled / DestRejected.
	Dest int
	// TraceState, when non-nil, replaces the span's trace_state in the output (traces
	// only); nil keeps it as it was.
	TraceState []byte
}

// Part is one destination's share of a split request.
type Part struct {
	Dest int
	// Payload is an encoded Export*ServiceRequest of the split's signal. It is owned by
	// the caller once Split returns (the Splitter never reuses it). It comes from a
	// buffer pool: a caller done with it (e.g. after copying it into a batch) may call
	// Release to hand it back, which saves an allocation on a later Split; a caller
	// that never calls Release just leaves it to the garbage collector.
	Payload []byte
	// Items counts the telemetry items in Payload (Item.Count summed).
	Items int

	pooled *payloadBuf
}

// Result is what Split did.
type Result struct {
	// Parts has one entry per destination that received items, in destination order.
	// The slice (not the Payloads) is reused by the Splitter's next Split.
	Parts []Part
	// Total, Sampled and Rejected count telemetry items (Item.Count summed).
	Total, Sampled, Rejected int
}
