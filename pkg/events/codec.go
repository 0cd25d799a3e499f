package events

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/nats-io/nats.go"
)

// CloudEvents NATS protocol binding headers, and the content type header.
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderID          = "ce-id"
	HeaderTime        = "ce-time"
	HeaderContentType = "Content-Type"

	// SpecVersion is the CloudEvents spec version written in ce-specversion.
	SpecVersion = "1.0"
	// ContentTypeJSON is the content type of every payload.
	ContentTypeJSON = "application/json"
	// TypePrefix starts every ce-type value; the event type and ".v<schema>" follow.
	TypePrefix = "io.otelfleet."
)

// Errors returned by Decode. Every decoding error wraps ErrMalformed.
var (
	// ErrMalformed is returned when a payload is not valid JSON, misses required
	// fields, or fails validation.
	ErrMalformed = errors.New("malformed payload")
	// ErrUnsupportedVersion is returned (wrapped together with ErrMalformed) when the
	// payload's schema version "v" is missing or newer than this build understands.
	ErrUnsupportedVersion = errors.New("unsupported schema version")
)

// MaxPayloadBytes bounds what Decode accepts; larger payloads are rejected unread.
const MaxPayloadBytes = 4 << 20

// Payload is implemented by every type carried on the wire. Validate reports why a
// decoded value must not be used; its error names the offending field.
type Payload interface {
	// Kind is the payload's type name used in ce-type, e.g. "config.changed".
	Kind() string
	// SchemaVersion is the schema version this build writes and the newest it reads.
	SchemaVersion() int
	// Validate checks a decoded (or about to be encoded) value.
	Validate() error
}

// Encode validates p (the caller sets its V field) and marshals it to JSON.
func Encode(p Payload) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("encode %s: %w", p.Kind(), err)
	}
	return json.Marshal(p)
}

// NewMsg builds a NATS message for subject carrying p as JSON, with the CloudEvents
// headers: ce-type is io.otelfleet.<kind>.v<schema>, ce-source is source (for example
// "otelfleet/config/<instance>"), ce-id a random id and ce-time now in RFC 3339.
func NewMsg(subject, source string, p Payload) (*nats.Msg, error) {
	data, err := Encode(p)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(subject)
	m.Data = data
	SetHeaders(m.Header, source, p, time.Now())
	return m, nil
}

// SetHeaders writes the CloudEvents headers for p into h.
func SetHeaders(h nats.Header, source string, p Payload, at time.Time) {
	h.Set(HeaderSpecVersion, SpecVersion)
	h.Set(HeaderType, CEType(p))
	h.Set(HeaderSource, source)
	h.Set(HeaderID, newID())
	h.Set(HeaderTime, at.UTC().Format(time.RFC3339Nano))
	h.Set(HeaderContentType, ContentTypeJSON)
}

// CEType is the ce-type value of p, e.g. "io.otelfleet.config.changed.v1".
func CEType(p Payload) string {
	return fmt.Sprintf("%s%s.v%d", TypePrefix, p.Kind(), p.SchemaVersion())
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Decode parses data into p (a pointer to a payload type) and validates it. It accepts
// unknown fields (newer writers may add them) but requires the schema version field "v"
// to be present and not newer than p.SchemaVersion(). Every error wraps ErrMalformed and
// says what was wrong.
func Decode(data []byte, p Payload) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: %s: empty payload", ErrMalformed, p.Kind())
	}
	if len(data) > MaxPayloadBytes {
		return fmt.Errorf("%w: %s: payload of %d bytes exceeds %d", ErrMalformed, p.Kind(), len(data), MaxPayloadBytes)
	}
	resetSchemaField(p)
	if err := json.Unmarshal(data, p); err != nil {
		// A newer writer may have changed field types: say so rather than naming a field.
		if v, ok := headVersion(data); ok && v > p.SchemaVersion() {
			return fmt.Errorf("%w: %w: %s: v=%d, this build reads 1..%d", ErrMalformed, ErrUnsupportedVersion, p.Kind(), v, p.SchemaVersion())
		}
		return fmt.Errorf("%w: %s: %s", ErrMalformed, p.Kind(), describeJSONError(data, err))
	}
	switch v := schemaField(p); {
	case v == 0:
		if _, present := headVersion(data); present {
			return fmt.Errorf("%w: %w: %s: v=0, this build reads 1..%d", ErrMalformed, ErrUnsupportedVersion, p.Kind(), p.SchemaVersion())
		}
		return fmt.Errorf("%w: %w: %s: field \"v\" is missing", ErrMalformed, ErrUnsupportedVersion, p.Kind())
	case v < 0 || v > p.SchemaVersion():
		return fmt.Errorf("%w: %w: %s: v=%d, this build reads 1..%d", ErrMalformed, ErrUnsupportedVersion, p.Kind(), v, p.SchemaVersion())
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, p.Kind(), err)
	}
	return nil
}

// headVersion reads only the "v" field of data.
func headVersion(data []byte) (int, bool) {
	var head struct {
		V *int `json:"v"`
	}
	if json.Unmarshal(data, &head) != nil || head.V == nil {
		return 0, false
	}
	return *head.V, true
}

// resetSchemaField zeroes the V field, so a value reused for decoding cannot carry an
// old version into a payload that has none.
func resetSchemaField(p Payload) {
	if f := schemaValue(p); f.IsValid() && f.CanSet() {
		f.SetInt(0)
	}
}

// schemaField returns the int field V of the struct p points to (every payload type has
// one), without a second parse of the payload.
func schemaField(p Payload) int {
	if f := schemaValue(p); f.IsValid() {
		return int(f.Int())
	}
	return 0
}

func schemaValue(p Payload) reflect.Value {
	v := reflect.ValueOf(p)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return reflect.Value{}
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return reflect.Value{}
	}
	if f := v.FieldByName("V"); f.IsValid() && f.CanInt() {
		return f
	}
	return reflect.Value{}
}

// describeJSONError turns encoding/json errors into messages that say where.
func describeJSONError(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(top level)"
		}
		return fmt.Sprintf("field %q: got JSON %s, want %s", field, typ.Value, typ.Type)
	default:
		return err.Error()
	}
}
