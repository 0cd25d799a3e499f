package fleetconfig

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in YAML and JSON as a Go duration
// string such as "200ms" or "5s". A bare number is rejected on decoding,
// because its unit would be a guess.
type Duration time.Duration

var (
	_ yaml.Marshaler   = Duration(0)
	_ yaml.Unmarshaler = (*Duration)(nil)
	_ json.Marshaler   = Duration(0)
	_ json.Unmarshaler = (*Duration)(nil)
)

// durationHint is appended to every duration decoding error.
const durationHint = `write a Go duration with a unit, e.g. "200ms" or "5s"`

// String returns the duration in Go syntax, e.g. "1.5s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML encodes d as its String form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML decodes a duration string. A bare number, a non-scalar or a
// string time.ParseDuration rejects is a *yaml.TypeError naming the line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return yamlTypeError(n, "expected a duration, "+durationHint)
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		return yamlTypeError(n, fmt.Sprintf("bare number %s is not a duration: %s", n.Value, durationHint))
	case "!!str":
		v, err := time.ParseDuration(n.Value)
		if err != nil {
			return yamlTypeError(n, fmt.Sprintf("%q is not a duration: %s", n.Value, durationHint))
		}
		*d = Duration(v)
		return nil
	default:
		return yamlTypeError(n, fmt.Sprintf("%s %q is not a duration: %s", n.ShortTag(), n.Value, durationHint))
	}
}

// MarshalJSON encodes d as a JSON string in its String form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON decodes a JSON duration string; null leaves d unchanged. Any
// other value, notably a bare number, is a *json.UnmarshalTypeError that the
// decoders report with the field path.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return jsonTypeError[Duration](fmt.Sprintf("%s (%s)", jsonValue(b), durationHint))
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return jsonTypeError[Duration](fmt.Sprintf("string %q (%s)", s, durationHint))
	}
	*d = Duration(v)
	return nil
}

// yamlTypeError reports a problem at node n the way the YAML decoder reports
// its own type errors, so that it is collected with them and keeps the line.
func yamlTypeError(n *yaml.Node, msg string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
}

// jsonTypeError returns an UnmarshalTypeError for a value of type T;
// encoding/json adds the field path to it.
func jsonTypeError[T any](value string) error {
	return &json.UnmarshalTypeError{Value: value, Type: reflect.TypeFor[T]()}
}

// jsonValue describes the JSON value b for error messages the way
// encoding/json does: "number 200", "bool", "string", "object", "array".
func jsonValue(b []byte) string {
	switch {
	case len(b) == 0:
		return "empty value"
	case b[0] == '"':
		return "string"
	case b[0] == '{':
		return "object"
	case b[0] == '[':
		return "array"
	case b[0] == 't' || b[0] == 'f':
		return "bool"
	case b[0] == 'n':
		return "null"
	default:
		return "number " + string(b)
	}
}
