package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/depharness/depharness/api"
)

// readObject reads the request body, at most api.MaxBodyBytes (413 beyond,
// BODY-1), as one JSON object of raw member values. An empty body is the
// empty object (the historical body parser's behaviour); anything else that
// is not one JSON object is 400 Malformed JSON body.
func (h *Handler) readObject(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, error) {
	body := r.Body
	if !h.v.On("body-no-limit") {
		limit := int64(api.MaxBodyBytes)
		if h.v.On("body-limit-1mib") {
			limit = 1 << 20
		}
		if r.ContentLength > limit {
			return nil, errBodyTooLarge
		}
		body = http.MaxBytesReader(w, r.Body, limit)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return nil, errBodyTooLarge
		}
		return nil, &Error{Status: http.StatusBadRequest, Text: api.ErrTextMalformedJSON, Cause: err}
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return map[string]json.RawMessage{}, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		if err == nil {
			err = errors.New("body is null")
		}
		if h.v.On("malformed-json-503") {
			return nil, unavailable(err)
		}
		return nil, &Error{Status: http.StatusBadRequest, Text: api.ErrTextMalformedJSON, Cause: err}
	}
	return m, nil
}

// The JSON type checks of request members. raw is a member's value as
// json.Unmarshal into map[string]json.RawMessage gives it: valid JSON, no
// surrounding whitespace.

// jsonBool returns raw as a bool; ok is false for anything but true/false
// (null included).
func jsonBool(raw json.RawMessage) (v, ok bool) {
	switch string(raw) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// jsonString returns raw as a string; ok is false for anything but a JSON
// string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonObject reports whether raw is a JSON object (arrays are not).
func jsonObject(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '{' }

// jsonInteger returns raw as an int64 if it is a JSON number with an
// integral value in range (5, 5.0 and 5e0 alike); strings are not numbers.
func jsonInteger(raw json.RawMessage) (int64, bool) {
	n, integral, ok := jsonNumber(raw)
	return n, ok && integral
}

// jsonNumberMillis returns raw as a timestamp: any JSON number, truncated
// to an integer, that fits in an int64.
func jsonNumberMillis(raw json.RawMessage) (int64, bool) {
	n, _, ok := jsonNumber(raw)
	return n, ok
}

// jsonNumber returns raw, a JSON number (strings are not numbers) whose
// value fits in an int64, truncated toward zero, and whether that value
// was integral already.
func jsonNumber(raw json.RawMessage) (n int64, integral, ok bool) {
	if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return 0, false, false
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return n, true, true
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false, false
	}
	whole := math.Trunc(f)
	return int64(whole), whole == f, true
}

// marshal is json.Marshal without HTML escaping and without a trailing
// newline.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
