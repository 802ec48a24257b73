// Package latitude reshapes the reference proxy's JSON the ways the
// contract leaves open (CONTRACT.md "Latitude"): additional fields, another
// key order, another formatting. The proxy does so only when an allowance
// asks for it (DEPHARNESS_ALLOWANCES extra-fields, pretty-json), so that the
// suite's self-check can prove its contract tier accepts such a supervisor.
//
// It imports only the standard library.
package latitude

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// ExtraFields are the fields Reshape adds to each top-level object: a
// number, a boolean and an object, so that a client that refuses unknown
// fields of any type is caught.
var ExtraFields = map[string]any{
	"api_port":          48484,
	"is_web_accessible": false,
	"x_supervisor":      map[string]any{"allowance": "extra-fields"},
}

// Reshape returns body, a JSON object or array, with ExtraFields added to
// the top-level object, or to each object of a top-level array (extra), and
// written indented with its keys in reverse order (pretty). Nested objects
// (environment, config) are never given fields. With neither it returns
// body unchanged.
func Reshape(body []byte, extra, pretty bool) ([]byte, error) {
	if !extra && !pretty {
		return body, nil
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("latitude: %w", err)
	}
	if extra {
		switch t := v.(type) {
		case map[string]any:
			addExtra(t)
		case []any:
			for _, e := range t {
				if m, ok := e.(map[string]any); ok {
					addExtra(m)
				}
			}
		}
	}
	if !pretty {
		return json.Marshal(v)
	}
	var b bytes.Buffer
	if err := writeReversed(&b, v, ""); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func addExtra(m map[string]any) {
	for k, v := range ExtraFields {
		if _, taken := m[k]; !taken {
			m[k] = v
		}
	}
}

// writeReversed writes v indented by two spaces, object keys in reverse
// lexical order (encoding/json sorts them: this is another order).
func writeReversed(b *bytes.Buffer, v any, indent string) error {
	inner := indent + "  "
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 {
			b.WriteString("{}")
			return nil
		}
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Sort(sort.Reverse(sort.StringSlice(keys)))
		b.WriteString("{\n")
		for i, k := range keys {
			kb, _ := json.Marshal(k)
			b.WriteString(inner)
			b.Write(kb)
			b.WriteString(": ")
			if err := writeReversed(b, t[k], inner); err != nil {
				return err
			}
			if i < len(keys)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "}")
	case []any:
		if len(t) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteString("[\n")
		for i, e := range t {
			b.WriteString(inner)
			if err := writeReversed(b, e, inner); err != nil {
				return err
			}
			if i < len(t)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "]")
	default:
		vb, err := json.Marshal(t)
		if err != nil {
			return fmt.Errorf("latitude: %w", err)
		}
		b.Write(vb)
	}
	return nil
}
