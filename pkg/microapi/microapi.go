// Package microapi is the request/reply convention of otelfleet's NATS micro services:
// JSON in, JSON out, and errors carried in the micro error headers with an HTTP-like code,
// so the CLI (and `nats req`) can tell a refusal from a conflict from a server fault.
package microapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Codes carried in the Nats-Service-Error-Code header.
const (
	CodeBadRequest  = 400
	CodeNotFound    = 404
	CodeConflict    = 409
	CodeUnavailable = 503
	CodeInternal    = 500
)

// Error is a failed request as seen by a client: the service's code, its message and,
// for some errors, a JSON body with details (such as every validation problem).
type Error struct {
	Code    int
	Message string
	Body    []byte
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with code and a formatted message, to return from a handler.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err if it is (or wraps) an *Error, else CodeInternal.
func CodeOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// HandlerFunc handles one request. A returned error becomes a micro error reply: an *Error
// keeps its code and body; any other error is a 500 with its message.
type HandlerFunc func(ctx context.Context, req micro.Request) (any, error)

// Handler adapts h to a micro.Handler, marshalling the result as JSON. A panic in h is
// answered as a 500 naming the subject, and never takes the service down.
func Handler(h HandlerFunc) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		defer func() {
			if r := recover(); r != nil {
				_ = req.Error(strconv.Itoa(CodeInternal), fmt.Sprintf("internal error handling %s: %v", req.Subject(), r), nil)
			}
		}()
		out, err := h(context.Background(), req)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				e = &Error{Code: CodeInternal, Message: err.Error()}
			}
			_ = req.Error(strconv.Itoa(e.Code), e.Message, e.Body)
			return
		}
		_ = req.RespondJSON(out)
	})
}

// DecodeRequest unmarshals a request body into v; an empty body leaves v unchanged. The
// error is an *Error with code 400 that says what was wrong.
func DecodeRequest(req micro.Request, v any) error {
	if len(req.Data()) == 0 {
		return nil
	}
	if err := json.Unmarshal(req.Data(), v); err != nil {
		return Errorf(CodeBadRequest, "request body is not valid JSON for %s: %v", req.Subject(), err)
	}
	return nil
}

// Request sends in (JSON, or nothing when nil) to subject and decodes the reply into out.
// A micro error reply comes back as an *Error. No responders is reported as an
// *Error with CodeUnavailable naming the subject.
func Request(ctx context.Context, nc *nats.Conn, subject string, in, out any) error {
	var data []byte
	if in != nil {
		var err error
		if data, err = json.Marshal(in); err != nil {
			return err
		}
	}
	msg, err := nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return Errorf(CodeUnavailable, "no service answers on %s (is it running?)", subject)
		}
		return fmt.Errorf("request %s: %w", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		n, _ := strconv.Atoi(code)
		return &Error{Code: n, Message: msg.Header.Get(micro.ErrorHeader), Body: msg.Data}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		return fmt.Errorf("reply from %s is not the expected JSON: %w", subject, err)
	}
	return nil
}
