package features

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// refDevice is a device object as the reference proxy answers it.
const refDevice = `{"id":1,"uuid":"u1","appId":5,"device_type":"generic-amd64","logs_channel":null,` +
	`"deviceId":"1001","is_online":null,"name":"fresh-name","status":"","download_progress":null,` +
	`"commit":null,"targetCommit":"c1","environment":{},"targetEnvironment":{},"config":{},"targetConfig":{}}`

func withFields(t *testing.T, base string, set map[string]any, drop ...string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		m[k] = v
	}
	for _, k := range drop {
		delete(m, k)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestDeviceCheckJudgesEveryDeviceAnswerByTier(t *testing.T) {
	for _, tc := range []struct {
		name      string
		method    string
		path      string
		body      string
		exact     bool
		wantProbs []string // substrings; none means no problem
	}{
		{name: "the reference object passes the contract tier", method: "GET", path: "/v1/devices/u1", body: refDevice},
		{name: "the reference object passes the reference tier", method: "GET", path: "/v1/devices/u1", body: refDevice, exact: true},
		{name: "a fresh device may be offline, unnamed, without status, half downloaded, with a logs channel",
			method: "GET", path: "/v1/devices/u1",
			body: withFields(t, refDevice, map[string]any{"is_online": false, "name": nil, "status": nil, "download_progress": 0.5, "logs_channel": "lc"})},
		{name: "extra fields pass the contract tier", method: "PUT", path: "/v1/devices/u1",
			body: withFields(t, refDevice, map[string]any{"device_name": "x", "note": nil})},
		{name: "extra fields fail the reference tier", method: "PUT", path: "/v1/devices/u1", exact: true,
			body: withFields(t, refDevice, map[string]any{"device_name": "x"}), wantProbs: []string{"unexpected field device_name"}},
		{name: "is_online as 0/1 fails", method: "GET", path: "/v1/devices/u1",
			body: withFields(t, refDevice, map[string]any{"is_online": 1}), wantProbs: []string{"field is_online: got integer 1, want boolean or null"}},
		{name: "a missing field fails", method: "GET", path: "/v1/devices/u1",
			body: withFields(t, refDevice, nil, "targetConfig"), wantProbs: []string{"missing field targetConfig"}},
		{name: "null environment fails", method: "PUT", path: "/v1/devices/u1",
			body: withFields(t, refDevice, map[string]any{"environment": nil}), wantProbs: []string{"field environment: got null"}},
		{name: "another device's object fails", method: "GET", path: "/v1/devices/u2", body: refDevice,
			wantProbs: []string{`field uuid: got "u1", want the requested device's "u2"`}},
		{name: "a list element with deviceId as a number fails", method: "GET", path: "/v1/devices",
			body:      "[" + refDevice + "," + withFields(t, refDevice, map[string]any{"deviceId": 1001}) + "]",
			wantProbs: []string{"element 1 (uuid u1): field deviceId: got integer 1001, want string"}},
		{name: "a list that is not an array fails", method: "GET", path: "/v1/devices", body: `{}`,
			wantProbs: []string{"want an array of device objects"}},
		{name: "other routes are not device answers", method: "GET", path: "/v1/dependent-apps", body: `[{"id":1}]`},
		{name: "log answers are not device answers", method: "POST", path: "/v1/devices/u1/logs", body: `nonsense`},
		{name: "provisioning answers are not device objects", method: "POST", path: "/v1/devices", body: `{"id":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			var got []string
			c := &http.Client{Transport: &deviceCheck{base: http.DefaultTransport, exact: tc.exact,
				report: func(format string, a ...any) { got = append(got, fmt.Sprintf(format, a...)) }}}
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != tc.body {
				t.Errorf("the step got body %q, want the answer's %q", b, tc.body)
			}
			all := strings.Join(got, "\n")
			if len(tc.wantProbs) == 0 && len(got) > 0 {
				t.Errorf("got problems %s, want none", all)
			}
			for _, w := range tc.wantProbs {
				if !strings.Contains(all, w) {
					t.Errorf("problems %q lack %q", all, w)
				}
			}
		})
	}
}
