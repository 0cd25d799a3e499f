package otlpwire

import (
	"fmt"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// JSONToProto converts an OTLP/JSON request body of signal sig into the protobuf
// encoding (so the rest of the router handles one format). Errors wrap ErrMalformed.
func JSONToProto(sig Signal, body []byte) ([]byte, error) {
	var out []byte
	var err error
	switch sig {
	case Traces:
		var td ptrace.Traces
		if td, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(body); err == nil {
			out, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
		}
	case Logs:
		var ld plog.Logs
		if ld, err = (&plog.JSONUnmarshaler{}).UnmarshalLogs(body); err == nil {
			out, err = (&plog.ProtoMarshaler{}).MarshalLogs(ld)
		}
	case Metrics:
		var md pmetric.Metrics
		if md, err = (&pmetric.JSONUnmarshaler{}).UnmarshalMetrics(body); err == nil {
			out, err = (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
		}
	default:
		return nil, fmt.Errorf("otlpwire: unknown signal %d", sig)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s JSON: %w", ErrMalformed, sig, err)
	}
	return out, nil
}

// Response encodes the Export*ServiceResponse for sig: empty when rejected is 0, else with
// partial_success {rejected_spans|rejected_log_records|rejected_data_points: rejected,
// error_message: msg}. json selects the OTLP/JSON encoding. An empty response is zero
// bytes in protobuf and {} in JSON; an unknown signal gives an empty response.
func Response(sig Signal, rejected int64, msg string, json bool) []byte {
	type marshaler interface {
		MarshalProto() ([]byte, error)
		MarshalJSON() ([]byte, error)
	}
	if rejected <= 0 {
		return emptyResponse(json)
	}
	var m marshaler
	switch sig {
	case Traces:
		r := ptraceotlp.NewExportResponse()
		r.PartialSuccess().SetRejectedSpans(rejected)
		r.PartialSuccess().SetErrorMessage(msg)
		m = r
	case Logs:
		r := plogotlp.NewExportResponse()
		r.PartialSuccess().SetRejectedLogRecords(rejected)
		r.PartialSuccess().SetErrorMessage(msg)
		m = r
	case Metrics:
		r := pmetricotlp.NewExportResponse()
		r.PartialSuccess().SetRejectedDataPoints(rejected)
		r.PartialSuccess().SetErrorMessage(msg)
		m = r
	default:
		return emptyResponse(json)
	}
	var b []byte
	var err error
	if json {
		b, err = m.MarshalJSON()
	} else {
		b, err = m.MarshalProto()
	}
	if err != nil { // a message of two scalars; not expected to fail
		return emptyResponse(json)
	}
	return b
}

func emptyResponse(json bool) []byte {
	if json {
		return []byte("{}")
	}
	return []byte{}
}
