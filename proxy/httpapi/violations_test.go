package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/store"
	"github.com/depharness/depharness/proxy/violation"
)

// Each violation this package implements changes an observable outcome,
// and is off unless enabled: the same scenario passes without it.
func TestViolations(t *testing.T) {
	const unknown = "0123456789abcdef0123456789abcdef"
	type check func(t *testing.T, f deviceFixture) (ok bool, got string)
	status := func(method string, path func(f deviceFixture) string, body string, want int) check {
		return func(t *testing.T, f deviceFixture) (bool, string) {
			code, b := f.do(method, path(f), body)
			return code == want, fmt.Sprintf("%d %q", code, b)
		}
	}
	fixed := func(p string) func(deviceFixture) string { return func(deviceFixture) string { return p } }
	plainPath := func(suffix string) func(deviceFixture) string {
		return func(f deviceFixture) string { return "/v1/devices/" + f.plain + suffix }
	}
	markedPath := func(f deviceFixture) string { return "/v1/devices/" + f.marked }

	for _, tc := range []struct {
		name string
		// contract holds when the scenario behaves as the contract says.
		contract check
	}{
		{"auth-open", func(t *testing.T, f deviceFixture) (bool, string) {
			code, b := f.raw("GET", "/v1/devices", "", nil)
			return code == 401, fmt.Sprintf("%d %q", code, b)
		}},
		{"auth-unknown-path-404", func(t *testing.T, f deviceFixture) (bool, string) {
			code, b := f.raw("GET", "/", "", nil)
			return code == 401, fmt.Sprintf("%d %q", code, b)
		}},
		{"ping-needs-key", func(t *testing.T, f deviceFixture) (bool, string) {
			code, b := f.raw("GET", "/ping", "", nil)
			return code == 200, fmt.Sprintf("%d %q", code, b)
		}},
		{"error-500", func(t *testing.T, f deviceFixture) (bool, string) {
			f.assets.fail = errors.New("down")
			code, b := f.do("GET", "/v1/dependent-apps/5/assets/c5", "")
			return code == 503, fmt.Sprintf("%d %q", code, b)
		}},
		{"malformed-json-503", status("PUT", plainPath(""), `{"status":`, 400)},
		{"body-no-limit", status("PUT", plainPath(""), `{"status":"x"}`+strings.Repeat(" ", 11<<20), 413)},
		{"apps-list-config-null", func(t *testing.T, f deviceFixture) (bool, string) {
			f.applyTarget(map[int64]map[string]string{5: nil}, map[string]int64{f.plain: 5}, nil)
			_, b := f.do("GET", "/v1/dependent-apps", "")
			return strings.Contains(b, `"config":{}`), b
		}},
		{"assets-any-commit", status("GET", fixed("/v1/dependent-apps/5/assets/old"), "", 404)},
		{"list-hides-marked", func(t *testing.T, f deviceFixture) (bool, string) {
			b := f.listBody()
			return strings.Contains(b, f.marked), b
		}},
		{"provision-default-generic", func(t *testing.T, f deviceFixture) (bool, string) {
			_, b := f.do("POST", "/v1/devices", `{"appId":5}`)
			return strings.Contains(b, `"device_type":"generic-amd64"`), b
		}},
		{"provision-appid-zero-ok", status("POST", fixed("/v1/devices"), `{"appId":0}`, 400)},
		{"provision-appid-string-ok", status("POST", fixed("/v1/devices"), `{"appId":"5"}`, 400)},
		{"provision-cloud-error-503", func(t *testing.T, f deviceFixture) (bool, string) {
			f.cloud.setFail(rejected)
			code, b := f.do("POST", "/v1/devices", `{"appId":99}`)
			return code == 400, fmt.Sprintf("%d %q", code, b)
		}},
		{"provision-no-device-name", func(t *testing.T, f deviceFixture) (bool, string) {
			_, b := f.do("POST", "/v1/devices", `{"appId":5}`)
			return strings.Contains(b, `"device_name":`), b
		}},
		{"get-marked-200", status("GET", markedPath, "", 410)},
		{"error-body-empty", func(t *testing.T, f deviceFixture) (bool, string) {
			code, b := f.do("GET", "/v1/devices/"+unknown, "")
			return code == 404 && b != "", fmt.Sprintf("%d %q", code, b)
		}},
		{"error-text-device-not-found", func(t *testing.T, f deviceFixture) (bool, string) {
			code, b := f.do("GET", "/v1/devices/"+unknown, "")
			return code == 404 && b == "Device not found", fmt.Sprintf("%d %q", code, b)
		}},
		{"put-isonline-number", func(t *testing.T, f deviceFixture) (bool, string) {
			_, b := f.do("PUT", "/v1/devices/"+f.plain, `{"is_online":true}`)
			return strings.Contains(b, `"is_online":true`), b
		}},
		{"put-no-attr-200", status("PUT", plainPath(""), `{}`, 400)},
		{"put-marked-200", status("PUT", markedPath, `{"status":"x"}`, 410)},
		{"put-array-env-ok", status("PUT", plainPath(""), `{"environment":[]}`, 400)},
		{"put-lookup-first", status("PUT", fixed("/v1/devices/"+unknown), `{"environment":[]}`, 400)},
		{"logs-200", status("POST", plainPath("/logs"), `{"message":"m"}`, 202)},
		{"logs-marked-202", func(t *testing.T, f deviceFixture) (bool, string) {
			code, b := f.do("POST", "/v1/devices/"+f.marked+"/logs", `{"message":"m"}`)
			return code == 410, fmt.Sprintf("%d %q", code, b)
		}},
		{"logs-no-default-timestamp", func(t *testing.T, f deviceFixture) (bool, string) {
			f.do("POST", "/v1/devices/"+f.plain+"/logs", `{"message":"m"}`)
			rows := f.outbox(store.OutboxLog)
			if len(rows) != 1 {
				return false, fmt.Sprint(len(rows), " rows")
			}
			var l cloud.LogLine
			json.Unmarshal(rows[0].Payload, &l)
			return l.Timestamp == testNow.UnixMilli(), string(rows[0].Payload)
		}},
		{"list-reported-online-number", func(t *testing.T, f deviceFixture) (bool, string) {
			f.do("PUT", "/v1/devices/"+f.plain, `{"is_online":true}`)
			b := f.listBody()
			return strings.Contains(b, `"is_online":true`) && !strings.Contains(b, `"is_online":1`), b
		}},
		{"put-reply-appid-string", func(t *testing.T, f deviceFixture) (bool, string) {
			_, b := f.do("PUT", "/v1/devices/"+f.plain, `{"status":"x"}`)
			var m map[string]any
			json.Unmarshal([]byte(b), &m)
			_, isNum := m["appId"].(float64)
			return isNum, b
		}},
		{"put-cloud-fail-500", func(t *testing.T, f deviceFixture) (bool, string) {
			f.cloud.setFail(&cloudclient.StatusError{Call: cloudclient.CallPatch, Code: 500})
			code, b := f.do("PUT", "/v1/devices/"+f.plain, `{"status":"x"}`)
			return code == 200, fmt.Sprintf("%d %q", code, b)
		}},
		{"body-limit-1mib", status("PUT", plainPath(""), `{"status":"x"}`+strings.Repeat(" ", 2<<20), 200)},
		{"auth-apikey-any-key", func(t *testing.T, f deviceFixture) (bool, string) {
			code, b := f.raw("GET", "/v1/devices", "", http.Header{"Authorization": {"ApiKey not-the-key"}})
			return code == 401, fmt.Sprintf("%d %q", code, b)
		}},
	} {
		if _, ok := violation.Known[tc.name]; !ok {
			t.Fatalf("violation %q is not registered", tc.name)
		}
		t.Run(tc.name+" breaks "+violation.Known[tc.name].Clause, func(t *testing.T) {
			t.Parallel()
			if ok, got := tc.contract(t, newDeviceFixture(t)); !ok {
				t.Fatalf("without the violation: contract broken: %s", got)
			}
			if ok, got := tc.contract(t, newDeviceFixture(t, withViolations(tc.name))); ok {
				t.Fatalf("with the violation: contract still holds: %s", got)
			}
		})
	}
}

// The 500 of error-500 also covers a panic.
func TestErrorViolationTurnsPanicInto500(t *testing.T) {
	f := newDeviceFixture(t, withViolations("error-500"))
	f.assets.panic = true
	if code, _ := f.do("GET", "/v1/dependent-apps/5/assets/c5", ""); code != http.StatusInternalServerError {
		t.Fatalf("got %d, want 500", code)
	}
}
