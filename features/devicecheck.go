package features

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
)

// The one validator of device objects (CONTRACT.md, "Dependent devices"):
// every answer of the supervisor that carries device objects — GET
// /v1/devices, GET /v1/devices/:uuid and the reply to PUT
// /v1/devices/:uuid — is checked by the HTTP client of every step, as it
// arrives, so that no scenario can skip it. In the contract tier a device
// object must have every field of the contract with a type the contract
// allows, and may have more; in @reference scenarios it has exactly these
// fields (the reference proxy's object).

// deviceFieldKinds is the device object of CONTRACT.md: field → allowed
// JSON kinds in the contract tier. The contract leaves the types of name
// and status open; they are text, and a fresh device may have none yet.
var deviceFieldKinds = map[string][]string{
	"id": {"integer"}, "uuid": {"string"}, "appId": {"integer"}, "device_type": {"string"},
	"logs_channel": {"string", "null"}, "deviceId": {"string"}, "is_online": {"boolean", "null"},
	"name": {"string", "null"}, "status": {"string", "null"}, "download_progress": {"number", "null"},
	"commit": {"string", "null"}, "targetCommit": {"string", "null"},
	"environment": {"object"}, "targetEnvironment": {"object"}, "config": {"object"}, "targetConfig": {"object"},
}

// referenceFieldKinds narrows deviceFieldKinds to what the reference proxy
// answers.
var referenceFieldKinds = map[string][]string{"name": {"string"}, "status": {"string"}}

func jsonKind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64:
		if x == float64(int64(x)) {
			return "integer"
		}
		return "number"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "integer"
		}
		if f, err := x.Float64(); err == nil && f == float64(int64(f)) {
			return "integer"
		}
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

// checkDeviceShape returns the ways obj differs from a device object: in
// the contract tier (exact false) missing fields and wrong types; in the
// reference tier (exact true) also fields the contract does not list.
func checkDeviceShape(obj map[string]any, exact bool) []string {
	var probs []string
	for k, kinds := range deviceFieldKinds {
		if exact && referenceFieldKinds[k] != nil {
			kinds = referenceFieldKinds[k]
		}
		v, ok := obj[k]
		if !ok {
			probs = append(probs, "missing field "+k)
			continue
		}
		kind := jsonKind(v)
		okKind := false
		for _, want := range kinds {
			if kind == want || (want == "number" && kind == "integer") {
				okKind = true
			}
		}
		if !okKind {
			probs = append(probs, fmt.Sprintf("field %s: got %s %s, want %s", k, kind, compactJSON(v), strings.Join(kinds, " or ")))
		}
	}
	if exact {
		for k := range obj {
			if _, ok := deviceFieldKinds[k]; !ok {
				probs = append(probs, "unexpected field "+k+" (the reference proxy's device object has exactly the contract's fields)")
			}
		}
	}
	sort.Strings(probs)
	return probs
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// deviceAnswer tells whether a 200 answer to method and path carries
// device objects: "list" (an array of them), "one" (the device of uuid),
// or "" (none).
func deviceAnswer(method, path string) (kind, uuid string) {
	rest, ok := strings.CutPrefix(path, "/v1/devices")
	switch {
	case !ok:
		return "", ""
	case rest == "" || rest == "/":
		if method == http.MethodGet {
			return "list", ""
		}
	case rest[0] == '/' && !strings.Contains(rest[1:], "/"):
		if method == http.MethodGet || method == http.MethodPut {
			return "one", rest[1:]
		}
	}
	return "", ""
}

// checkDeviceAnswer returns the problems of body, the 200 answer of kind
// (see deviceAnswer).
func checkDeviceAnswer(kind, uuid string, body []byte, exact bool) []string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{fmt.Sprintf("the answer is not JSON: %v", err)}
	}
	if kind == "one" {
		m, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("got %s, want a device object", jsonKind(v))}
		}
		probs := checkDeviceShape(m, exact)
		if got, ok := m["uuid"].(string); ok && got != uuid {
			probs = append(probs, fmt.Sprintf("field uuid: got %q, want the requested device's %q", got, uuid))
		}
		return probs
	}
	arr, ok := v.([]any)
	if !ok {
		return []string{fmt.Sprintf("got %s, want an array of device objects", jsonKind(v))}
	}
	var probs []string
	for i, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			probs = append(probs, fmt.Sprintf("element %d: got %s, want a device object", i, jsonKind(e)))
			continue
		}
		for _, p := range checkDeviceShape(m, exact) {
			probs = append(probs, fmt.Sprintf("element %d (uuid %v): %s", i, m["uuid"], p))
		}
	}
	return probs
}

// deviceCheck is the HTTP transport of the steps' clients: it checks every
// device-bearing answer of the supervisor and reports its problems to
// report, leaving the answer as it was for the step.
type deviceCheck struct {
	base   http.RoundTripper
	exact  bool
	report func(format string, a ...any)
}

func (c *deviceCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	kind, uuid := deviceAnswer(req.Method, req.URL.Path)
	if kind == "" {
		return resp, nil
	}
	b, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{rerr}))
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if probs := checkDeviceAnswer(kind, uuid, b, c.exact); len(probs) > 0 {
		c.report("%s %s: device object: %s", req.Method, req.URL.Path, strings.Join(probs, "; "))
	}
	return resp, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
