package export

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/otelfleet/otelfleet/services/router/internal/otlpwire"
)

// client sends one encoded Export*ServiceRequest to one backend.
type client interface {
	// export sends payload and returns the backend's verdict.
	export(ctx context.Context, sig otlpwire.Signal, payload []byte) outcome
	close() error
}

// outcome is what one export call came to.
type outcome struct {
	// rejected items the backend refused in partial_success (its verdict: not retried).
	rejected int64
	// message is partial_success.error_message, or the error's text.
	message string
	// err is nil when the backend took the request (perhaps in part).
	err error
	// retryable says whether err may succeed when tried again.
	retryable bool
	// throttle is the delay the backend asked for (RetryInfo, Retry-After), 0 if none.
	throttle time.Duration
}

// errMalformedResponse is wrapped when a backend's response is not an OTLP response.
var errMalformedResponse = errors.New("malformed OTLP export response")

// decodePartialSuccess reads an Export*ServiceResponse: field 1 is partial_success, whose
// field 1 is the rejected count (rejected_spans / rejected_log_records /
// rejected_data_points) and field 2 error_message, the same for every signal.
func decodePartialSuccess(b []byte) (rejected int64, msg string, err error) {
	err = walkFields(b, "response", func(num protowire.Number, _ uint64, ps []byte) error {
		if num != 1 || ps == nil {
			return nil
		}
		return walkFields(ps, "partial_success", func(num protowire.Number, v uint64, s []byte) error {
			switch {
			case num == 1 && s == nil:
				rejected = int64(v)
			case num == 2 && s != nil:
				msg = string(s)
			}
			return nil
		})
	})
	if err == nil && rejected < 0 {
		err = fmt.Errorf("%w: partial_success.rejected %d is negative", errMalformedResponse, rejected)
	}
	if err != nil {
		return 0, "", err
	}
	return rejected, msg, nil
}

// walkFields calls fn for each varint field (v) and length-delimited field (s, non-nil)
// of message b; other wire types are skipped. where names b in errors.
func walkFields(b []byte, where string, fn func(num protowire.Number, v uint64, s []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %s: tag: %w", errMalformedResponse, where, protowire.ParseError(n))
		}
		b = b[n:]
		var (
			v uint64
			s []byte
		)
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			s, n = protowire.ConsumeBytes(b)
			if s == nil {
				s = []byte{}
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: %s field %d: %w", errMalformedResponse, where, num, protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.VarintType || typ == protowire.BytesType {
			if err := fn(num, v, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// tookResponse turns a successful call's response body into an outcome.
func tookResponse(body []byte) outcome {
	rejected, msg, err := decodePartialSuccess(body)
	if err != nil {
		// The backend said OK; an unreadable body does not undo that.
		return outcome{message: err.Error()}
	}
	return outcome{rejected: rejected, message: msg}
}
