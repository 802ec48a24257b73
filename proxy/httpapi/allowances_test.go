package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/depharness/depharness/proxy/internal/latitude"
	"github.com/depharness/depharness/proxy/violation"
)

func withAllowances(names ...string) func(*Options) {
	return func(o *Options) {
		s := violation.Set{}
		for _, n := range names {
			if _, ok := violation.KnownAllowances[n]; !ok {
				panic("unknown allowance " + n)
			}
			s[n] = true
		}
		o.Violations = o.Violations.Union(s)
	}
}

// Each allowance of this package changes the answers only in what the
// contract leaves open: the same values, other forms.
func TestAllowancesChangeOnlyWhatTheContractLeavesOpen(t *testing.T) {
	plain := newDeviceFixture(t)
	_, want := plain.do("GET", "/v1/devices/"+plain.plain, "")

	t.Run("extra-fields and pretty-json reshape JSON answers", func(t *testing.T) {
		f := newDeviceFixture(t, withAllowances("extra-fields", "pretty-json"))
		for _, path := range []string{"/v1/devices/" + f.plain, "/v1/devices", "/v1/dependent-apps"} {
			code, body := f.do("GET", path, "")
			var v any
			if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil {
				t.Fatalf("GET %s: %d %q (%v), want 200 and JSON", path, code, body, err)
			}
			if !strings.Contains(body, "\n  ") {
				t.Errorf("GET %s: body %q is not indented", path, body)
			}
			for k := range latitude.ExtraFields {
				if strings.Count(body, `"`+k+`"`) == 0 && body != "[]" {
					t.Errorf("GET %s: body lacks the extra field %q: %s", path, k, body)
				}
			}
		}
		_, got := f.do("GET", "/v1/devices/"+f.plain, "")
		var g, w map[string]any
		json.Unmarshal([]byte(got), &g)
		json.Unmarshal([]byte(want), &w)
		for k, v := range w {
			if k == "uuid" {
				continue
			}
			if gb, wb := mustJSON(g[k]), mustJSON(v); gb != wb {
				t.Errorf("field %s = %s, want %s as without the allowances", k, gb, wb)
			}
		}
		if code, body := f.do("GET", "/v1/devices/0123456789abcdef0123456789abcdef", ""); code != 404 || body != "Device not found" {
			t.Errorf("an error answer: %d %q, want it untouched", code, body)
		}
	})

	t.Run("other-texts rewords every error, same status", func(t *testing.T) {
		f := newDeviceFixture(t, withAllowances("other-texts"))
		for path, code := range map[string]int{"/v1/devices/0123456789abcdef0123456789abcdef": 404, "/v1/devices/" + f.marked: 410} {
			got, body := f.do("GET", path, "")
			if got != code || body == "" || body == "Device not found" || body == "Device deleted" {
				t.Errorf("GET %s: %d %q, want %d with another non-empty text", path, got, body, code)
			}
		}
		if got, body := f.do("PUT", "/v1/devices/"+f.plain, `{"status":""}`); got != 400 || body == "status must be a non-empty string" || body == "" {
			t.Errorf("bad PUT: %d %q, want 400 with another non-empty text", got, body)
		}
	})

	t.Run("online-from-cloud sets other initial values within their types", func(t *testing.T) {
		f := newDeviceFixture(t, withAllowances("online-from-cloud"))
		_, body := f.do("POST", "/v1/devices", `{"appId":5}`)
		var p struct{ UUID string }
		json.Unmarshal([]byte(body), &p)
		_, body = f.do("GET", "/v1/devices/"+p.UUID, "")
		for _, want := range []string{`"is_online":false`, `"download_progress":0`, `"logs_channel":"`, `"status":"Idle"`, `"name":"device-`} {
			if !strings.Contains(body, want) {
				t.Errorf("new device %s: want %s", body, want)
			}
		}
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
