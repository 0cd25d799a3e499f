package topologysvc

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

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

// collectorFromKey splits a registry key collector.<region>.<id>; ok is false for any
// other key.
func collectorFromKey(key string) (collectorKey, bool) {
	rest, ok := strings.CutPrefix(key, events.KindCollector+".")
	if !ok {
		return collectorKey{}, false
	}
	region, id, ok := strings.Cut(rest, ".")
	if !ok || events.CheckToken("region", region) != nil || events.CheckToken("collector id", id) != nil {
		return collectorKey{}, false
	}
	return collectorKey{region, id}, true
}

// decodeRegistration decodes a registry value stored at key (a collector key) and
// checks it describes that collector.
func decodeRegistration(k collectorKey, data []byte) (events.Registration, error) {
	r, err := events.DecodeRegistration(data)
	if err != nil {
		return r, err
	}
	if r.InstanceKind != events.KindCollector || r.Region != k.region || r.ID != k.id {
		return r, fmt.Errorf("registration of %s %s/%s stored at key collector.%s.%s", r.InstanceKind, r.Region, r.ID, k.region, k.id)
	}
	return r, nil
}

// SamplingRate extracts the global sampling rate from the sampler's decision (KV
// otlp_sampling key "decision"). It is deliberately tolerant of the decision's exact
// schema: it takes the first number in [0, 1] among the top-level fields
// effective_rate, global_rate, rate and sampling_rate, then the same fields inside an
// object "global". ok is false when there is none.
func SamplingRate(data []byte) (rate float64, ok bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return 0, false
	}
	fields := []string{"effective_rate", "global_rate", "rate", "sampling_rate"}
	pick := func(m map[string]json.RawMessage) (float64, bool) {
		for _, f := range fields {
			var v float64
			if raw, ok := m[f]; ok && json.Unmarshal(raw, &v) == nil && v >= 0 && v <= 1 {
				return v, true
			}
		}
		return 0, false
	}
	if v, ok := pick(top); ok {
		return v, true
	}
	var global map[string]json.RawMessage
	if raw, ok := top["global"]; ok && json.Unmarshal(raw, &global) == nil {
		return pick(global)
	}
	return 0, false
}
