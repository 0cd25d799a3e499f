package fleetconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrDecode is wrapped by every error ParseYAML, LoadFile, DecodeGlobalJSON
// and DecodeRegionJSON return when the input cannot be decoded: empty input,
// malformed YAML or JSON, an unknown field, a type mismatch, a bare number
// where a duration is expected, an unknown strategy type, or more than one
// document. The message says where (YAML line, JSON field and offset).
var ErrDecode = errors.New("cannot decode config")

var (
	_ yaml.Unmarshaler = (*StrategyType)(nil)
	_ json.Unmarshaler = (*StrategyType)(nil)
)

// ParseYAML decodes a configuration file strictly: unknown fields, type
// mismatches, bare-number durations and unknown strategy types are errors
// wrapping ErrDecode that name the line, as are empty input and more than one
// document. An absent degradation.keep_high_priority decodes as true. It does
// not validate (see LoadFile and File.Validate) and applies no other defaults.
// On error the returned File is the zero value.
func ParseYAML(data []byte) (File, error) {
	return guard(func() (File, error) {
		if err := checkYAMLDocument(data); err != nil {
			return File{}, err
		}
		f := File{Global: newGlobal()}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			return File{}, yamlError(err)
		}
		return f, nil
	})
}

// LoadFile parses a configuration file with ParseYAML and validates it with
// File.Validate. A decoding error wraps ErrDecode; a validation error is a
// *ValidationError matching ErrInvalid. On error the File is the zero value.
func LoadFile(data []byte) (File, error) {
	f, err := ParseYAML(data)
	if err != nil {
		return File{}, err
	}
	if err := f.Validate(); err != nil {
		return File{}, err
	}
	return f, nil
}

// DecodeGlobalJSON decodes a Global as stored in KV, strictly: unknown fields,
// type mismatches, bare-number durations, unknown strategy types, empty input,
// anything but one JSON object are errors wrapping ErrDecode. An absent
// degradation.keep_high_priority decodes as true. It does not validate. On
// error the Global is the zero value.
func DecodeGlobalJSON(data []byte) (Global, error) {
	return guard(func() (Global, error) {
		g := newGlobal()
		if err := decodeJSON(data, &g); err != nil {
			return Global{}, err
		}
		return g, nil
	})
}

// DecodeRegionJSON decodes a Region as stored in KV, as strictly as
// DecodeGlobalJSON. It applies no defaults and does not validate. On error the
// Region is the zero value.
func DecodeRegionJSON(data []byte) (Region, error) {
	return guard(func() (Region, error) {
		var r Region
		if err := decodeJSON(data, &r); err != nil {
			return Region{}, err
		}
		return r, nil
	})
}

// ToYAML encodes f as a configuration file that ParseYAML reads back: snake_case
// names, empty optional fields omitted, two-space indentation.
func (f File) ToYAML() ([]byte, error) { return toYAML(f) }

// ToYAML encodes g as YAML with the field names of the file format (without
// the enclosing "global:" key), for display such as `config get -o yaml`.
func (g Global) ToYAML() ([]byte, error) { return toYAML(g) }

// ToYAML encodes r as YAML with the field names of the file format (without
// the enclosing "regions.<name>:" keys).
func (r Region) ToYAML() ([]byte, error) { return toYAML(r) }

// UnmarshalYAML accepts only the known strategy types; anything else is a
// *yaml.TypeError naming the line and listing the known types.
func (t *StrategyType) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	if !StrategyType(s).Known() {
		return yamlTypeError(n, unknownStrategyType(s))
	}
	*t = StrategyType(s)
	return nil
}

// UnmarshalJSON accepts only the known strategy types, as a JSON string; null
// leaves t unchanged.
func (t *StrategyType) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return jsonTypeError[StrategyType](jsonValue(b))
	}
	if !StrategyType(s).Known() {
		return errors.New(unknownStrategyType(s))
	}
	*t = StrategyType(s)
	return nil
}

// unknownStrategyType is the message for a strategy type that is not known.
func unknownStrategyType(s string) string {
	return fmt.Sprintf("unknown sampling strategy type %q; known types: %s", s, knownStrategyTypes())
}

// newGlobal is the value decoding starts from: zero but for the fields whose
// absence means true.
func newGlobal() Global {
	return Global{Degradation: Degradation{KeepHighPriority: true}}
}

// guard runs decode and turns a panic in a third-party decoder into an
// ErrDecode error, so that no input can crash a service.
func guard[T any](decode func() (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			v, err = zero, fmt.Errorf("%w: malformed input (%v)", ErrDecode, r)
		}
	}()
	return decode()
}

// checkYAMLDocument rejects input that is not exactly one YAML document whose
// root is a mapping, with a clearer message than decoding into File gives.
func checkYAMLDocument(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: empty input", ErrDecode)
		}
		return yamlError(err)
	}
	switch err := dec.Decode(new(yaml.Node)); {
	case err == nil:
		return fmt.Errorf("%w: more than one YAML document; give exactly one", ErrDecode)
	case !errors.Is(err, io.EOF):
		return yamlError(err)
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	switch {
	case root.Kind == yaml.MappingNode:
		return nil
	case root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null":
		return fmt.Errorf("%w: empty document", ErrDecode)
	default:
		return fmt.Errorf("%w: line %d: expected a mapping with a \"global\" key", ErrDecode, root.Line)
	}
}

// yamlError wraps a YAML decoding error in ErrDecode, keeping its line
// numbers and dropping the "yaml: " prefix.
func yamlError(err error) error {
	if te, ok := errors.AsType[*yaml.TypeError](err); ok {
		return fmt.Errorf("%w: %s", ErrDecode, strings.Join(te.Errors, "; "))
	}
	return fmt.Errorf("%w: %s", ErrDecode, strings.TrimPrefix(err.Error(), "yaml: "))
}

// decodeJSON decodes exactly one JSON object from data into v, rejecting
// unknown fields.
func decodeJSON[T any](data []byte, v *T) error {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return fmt.Errorf("%w: empty input", ErrDecode)
	}
	if trimmed[0] != '{' {
		return fmt.Errorf("%w: expected a JSON object starting with '{'", ErrDecode)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: offset %d: unexpected data after the JSON object", ErrDecode, dec.InputOffset())
	}
	return nil
}

// jsonError wraps a JSON decoding error in ErrDecode with the offset and,
// for type mismatches, the field path.
func jsonError(err error) error {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Errorf("%w: offset %d: %v", ErrDecode, se.Offset, se)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		field := te.Field
		if field == "" {
			field = "value"
		}
		msg := fmt.Sprintf("%s: cannot use %s as %v", field, te.Value, te.Type)
		if te.Offset > 0 {
			msg = fmt.Sprintf("offset %d: %s", te.Offset, msg)
		}
		return fmt.Errorf("%w: %s", ErrDecode, msg)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: unexpected end of input", ErrDecode)
	}
	return fmt.Errorf("%w: %s", ErrDecode, strings.TrimPrefix(err.Error(), "json: "))
}

// toYAML encodes v with two-space indentation.
func toYAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	return buf.Bytes(), nil
}
