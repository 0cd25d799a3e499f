package loadreport

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/otelfleet/otelfleet/pkg/events"
)

// ErrInvalid is wrapped (together with events.ErrMalformed) by every error Decode,
// DecodeJetStream, DecodeData and ParseSubject return: the message is not a load report
// this build can use. The message says what was wrong and where.
var ErrInvalid = errors.New("invalid load report")

// ceTypePrefix starts the ce-type of every version of the load report schema.
var ceTypePrefix = events.TypePrefix + events.LoadReport{}.Kind() + ".v"

func invalid(subject, format string, args ...any) error {
	return fmt.Errorf("%w: %w: subject %q: %s", ErrInvalid, events.ErrMalformed, subject, fmt.Sprintf(format, args...))
}

// ParseSubject splits a load report subject, <root>.load.<region>.<collector>, into its
// tokens. It does not check the root against a namespace, so a consumer of any root can
// use it; the tokens must be valid name tokens (events.CheckToken).
func ParseSubject(subject string) (root, region, collector string, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 || parts[1] != "load" {
		return "", "", "", invalid(subject, "want <root>.load.<region>.<collector>")
	}
	for i, what := range []string{"root", "region", "collector id"} {
		tok := parts[[]int{0, 2, 3}[i]]
		if err := events.CheckToken(what, tok); err != nil {
			return "", "", "", invalid(subject, "%v", err)
		}
	}
	return parts[0], parts[2], parts[3], nil
}

// Decode turns a core NATS message into a validated load report. Besides what
// DecodeData checks, a ce-type header, when present, must name a load report
// (io.otelfleet.load.report.v<N>).
func Decode(msg *nats.Msg) (events.LoadReport, error) {
	if msg == nil {
		return events.LoadReport{}, invalid("", "nil message")
	}
	if err := checkType(msg.Subject, msg.Header); err != nil {
		return events.LoadReport{}, err
	}
	return DecodeData(msg.Subject, msg.Data)
}

// DecodeJetStream is Decode for a message read from a JetStream consumer.
func DecodeJetStream(msg jetstream.Msg) (events.LoadReport, error) {
	if msg == nil {
		return events.LoadReport{}, invalid("", "nil message")
	}
	if err := checkType(msg.Subject(), msg.Headers()); err != nil {
		return events.LoadReport{}, err
	}
	return DecodeData(msg.Subject(), msg.Data())
}

func checkType(subject string, h nats.Header) error {
	if h == nil {
		return nil
	}
	if t := h.Get(events.HeaderType); t != "" && !strings.HasPrefix(t, ceTypePrefix) {
		return invalid(subject, "ce-type %q is not a load report (want %s<version>)", t, ceTypePrefix)
	}
	return nil
}

// DecodeData decodes and validates the payload data received on subject: the subject
// must be <root>.load.<region>.<collector>, the payload a LoadReport whose schema version
// this build reads, whose numbers are finite, non-negative and within the limits of
// events.LoadReport.Validate, and whose region and collector equal the subject's tokens.
func DecodeData(subject string, data []byte) (events.LoadReport, error) {
	_, region, collector, err := ParseSubject(subject)
	if err != nil {
		return events.LoadReport{}, err
	}
	var r events.LoadReport
	if err := events.Decode(data, &r); err != nil {
		return events.LoadReport{}, fmt.Errorf("%w: subject %q: %w", ErrInvalid, subject, err)
	}
	if r.Region != region {
		return events.LoadReport{}, invalid(subject, "payload region %q does not match the subject's region %q", r.Region, region)
	}
	if r.Collector != collector {
		return events.LoadReport{}, invalid(subject, "payload collector %q does not match the subject's collector %q", r.Collector, collector)
	}
	return r, nil
}
