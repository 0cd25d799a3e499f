package topologysvc

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// DecodeLoad decodes and validates a load report received on subject, which must be
// <root>.load.<region>.<collector> with the payload's region and collector. On error it
// also returns the rejection reason (one of the Reject* constants).
func DecodeLoad(ns events.Namespace, subject string, data []byte) (events.LoadReport, string, error) {
	var r events.LoadReport
	region, collector, ok := loadSubjectTokens(ns, subject)
	if !ok {
		return r, RejectSubject, fmt.Errorf("subject %q is not %s.load.<region>.<collector> with valid tokens", subject, ns.Root())
	}
	if err := events.Decode(data, &r); err != nil {
		switch {
		case errors.Is(err, events.ErrUnsupportedVersion):
			return r, RejectVersion, err
		case !json.Valid(data):
			return r, RejectJSON, err
		default:
			var typ *json.UnmarshalTypeError
			if errors.As(err, &typ) {
				return r, RejectJSON, err
			}
			return r, RejectInvalid, err
		}
	}
	if r.Region != region || r.Collector != collector {
		return r, RejectSubject, fmt.Errorf("subject %q names %s/%s but the report is from %s/%s", subject, region, collector, r.Region, r.Collector)
	}
	return r, "", nil
}

// loadSubjectTokens splits <root>.load.<region>.<collector>.
func loadSubjectTokens(ns events.Namespace, subject string) (region, collector string, ok bool) {
	rest, ok := strings.CutPrefix(subject, ns.Root()+".load.")
	if !ok {
		return "", "", false
	}
	region, collector, ok = strings.Cut(rest, ".")
	if !ok || events.CheckToken("region", region) != nil || events.CheckToken("collector", collector) != nil {
		return "", "", false
	}
	return region, collector, true
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
