package topologysvc

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/otelfleet/otelfleet/pkg/events"
	"github.com/otelfleet/otelfleet/pkg/loadreport"
)

// DecodeLoad decodes and validates a load report received on subject with header h
// (loadreport.Decode: the subject is <root>.load.<region>.<collector> with valid tokens
// equal to the payload's region and collector, the payload is a valid LoadReport of a
// schema version this build reads), and checks the subject's root is ns's. On error it
// also returns the rejection reason, one of the Reject* constants.
func DecodeLoad(ns events.Namespace, subject string, h nats.Header, data []byte) (events.LoadReport, string, error) {
	root, region, collector, err := loadreport.ParseSubject(subject)
	if err != nil {
		return events.LoadReport{}, RejectSubject, err
	}
	if root != ns.Root() {
		return events.LoadReport{}, RejectSubject, fmt.Errorf("subject %q: root %q, want %q", subject, root, ns.Root())
	}
	r, err := loadreport.Decode(&nats.Msg{Subject: subject, Header: h, Data: data})
	if err == nil {
		return r, "", nil
	}
	return r, rejectReason(data, region, collector, err), err
}

// rejectReason classifies why data (received on a subject naming region and collector)
// failed to decode with err.
func rejectReason(data []byte, region, collector string, err error) string {
	if errors.Is(err, events.ErrUnsupportedVersion) {
		return RejectVersion
	}
	var probe events.LoadReport
	if json.Unmarshal(data, &probe) != nil {
		// Not JSON, or a field of the wrong JSON type or out of range (1e400).
		return RejectJSON
	}
	if events.CheckToken("region", probe.Region) == nil && events.CheckToken("collector", probe.Collector) == nil &&
		(probe.Region != region || probe.Collector != collector) {
		return RejectSubject
	}
	return RejectInvalid
}
