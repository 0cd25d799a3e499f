// Package microapi is the request/reply convention of otelfleet's NATS micro services:
// JSON in, JSON out, and errors carried in the micro error headers with an HTTP-like code,
// so the CLI (and `nats req`) can tell a refusal from a conflict from a server fault. A
// reply too large to send is never dropped: it is logged and answered by a shortened
// error reply (CodeTooLarge for a result; see Handler and Shorten).
package microapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"unicode/utf8"

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
	// CodeTooLarge answers a request whose reply could not be sent as it was (over the
	// connection's max payload): the body is the reply shortened (see Handler).
	CodeTooLarge = 413
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

// Option configures Handler.
type Option func(*handlerOptions)

type handlerOptions struct{ log *slog.Logger }

// WithLog sets the logger of replies that could not be sent; the default is
// slog.Default().
func WithLog(log *slog.Logger) Option {
	return func(o *handlerOptions) {
		if log != nil {
			o.log = log
		}
	}
}

// Handler adapts h to a micro.Handler, marshalling the result as JSON. A panic in h is
// answered as a 500 naming the subject, and never takes the service down.
//
// A reply that cannot be sent (larger than the connection's max payload, or refused by
// the connection) is logged at warn and replaced by a short error reply: the original
// error code (CodeTooLarge for a result), a message saying why, and the JSON body
// shortened (every array cut to its first few items, with a "<name>_total" count beside
// it; long strings cut), smaller and smaller until it fits. The requester always gets an
// answer instead of a timeout.
func Handler(h HandlerFunc, opts ...Option) micro.Handler {
	o := handlerOptions{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	return micro.HandlerFunc(func(req micro.Request) {
		deliver(req, handle(h, req), o.log)
	})
}

// reply is what a handler answers: a result (code 0) or an error.
type reply struct {
	code    int
	message string
	body    []byte
}

func (r reply) send(req micro.Request) error {
	if r.code == 0 {
		return req.Respond(r.body)
	}
	return req.Error(strconv.Itoa(r.code), r.message, r.body)
}

// handle runs h and turns its outcome (or panic) into a reply.
func handle(h HandlerFunc, req micro.Request) (r reply) {
	defer func() {
		if p := recover(); p != nil {
			r = reply{code: CodeInternal, message: fmt.Sprintf("internal error handling %s: %v", req.Subject(), p)}
		}
	}()
	out, err := h(context.Background(), req)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Code: CodeInternal, Message: err.Error()}
		}
		return reply{code: e.Code, message: e.Message, body: e.Body}
	}
	data, err := json.Marshal(out)
	if err != nil {
		return reply{code: CodeInternal, message: fmt.Sprintf("internal error handling %s: reply does not encode as JSON: %v", req.Subject(), err)}
	}
	return reply{body: data}
}

// shortenings are the successive limits tried for a reply that did not go out: items
// kept per array and bytes kept per string (and of the message).
var shortenings = []struct{ items, chars int }{{20, 1000}, {5, 200}, {1, 80}, {0, 40}}

// deliver sends r, or a shortened error reply when r cannot be sent.
func deliver(req micro.Request, r reply, log *slog.Logger) {
	err := r.send(req)
	if err == nil {
		return
	}
	size := len(r.body) + len(r.message)
	code := r.code
	if code == 0 {
		code = CodeTooLarge
	}
	for _, lim := range shortenings {
		short := reply{
			code:    code,
			message: fmt.Sprintf("reply to %s could not be sent (%d bytes: %v); shortened: %s", req.Subject(), size, err, cut(r.message, lim.chars)),
			body:    Shorten(r.body, lim.items, lim.chars),
		}
		if r.message == "" {
			short.message = fmt.Sprintf("reply to %s could not be sent (%d bytes: %v); shortened", req.Subject(), size, err)
		}
		if serr := short.send(req); serr == nil {
			log.Warn("reply could not be sent; sent a shortened error reply", "subject", req.Subject(), "bytes", size, "err", err, "sent_bytes", len(short.body)+len(short.message))
			return
		}
	}
	log.Error("reply could not be sent, nor a shortened one", "subject", req.Subject(), "bytes", size, "err", err)
}

// Shorten returns data (JSON) with every array cut to its first items elements, each cut
// array of an object getting a "<name>_total" sibling with its full length (a cut
// top-level array becomes {"items": [...], "items_total": n}), and every string cut to
// about chars bytes. Data that is not JSON is cut like a string and returned as a JSON
// string. Empty data stays empty.
func Shorten(data []byte, items, chars int) []byte {
	if len(data) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		out, _ := json.Marshal(cut(string(data), chars))
		return out
	}
	if a, ok := v.([]any); ok && len(a) > items {
		v = map[string]any{"items": a, "items_total": len(a)}
	}
	out, err := json.Marshal(shortenValue(v, items, chars))
	if err != nil {
		return nil
	}
	return out
}

func shortenValue(v any, items, chars int) any {
	switch x := v.(type) {
	case string:
		return cut(x, chars)
	case []any:
		x = x[:min(len(x), items)]
		for i := range x {
			x[i] = shortenValue(x[i], items, chars)
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if a, ok := val.([]any); ok && len(a) > items {
				if _, taken := x[k+"_total"]; !taken {
					out[k+"_total"] = len(a)
				}
			}
			out[k] = shortenValue(val, items, chars)
		}
		return out
	}
	return v
}

// cut shortens s to at most n bytes (at a rune boundary), saying how long it was.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + fmt.Sprintf("... (%d bytes)", len(s))
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
