package features

import (
	"strings"
	"testing"
)

func TestPatchProblems(t *testing.T) {
	for _, tc := range []struct {
		body string
		want string // substring of the problems; "" means none
	}{
		{`{"status":"Idle","is_online":false,"is_on__commit":"c1"}`, ""},
		{`{"is_online":false}`, ""},
		{`{"status":"Idle","environment":{}}`, "field environment (want only"},
		{`{"commit":"c1"}`, "field commit (want only"},
		{`{"is_online":0}`, "field is_online: got integer 0"},
		{`{"status":""}`, `field status: got string ""`},
		{`{}`, "no field"},
		{`[{"status":"Idle"}]`, "not a JSON object"},
		{`{"status":"Idle"}{"status":"x"}`, "not a JSON object"},
	} {
		probs := strings.Join(patchProblems([]byte(tc.body)), "; ")
		if tc.want == "" && probs != "" || !strings.Contains(probs, tc.want) {
			t.Errorf("%s: got problems %q, want %q", tc.body, probs, tc.want)
		}
	}
}

func TestLogStreamProblems(t *testing.T) {
	devices := map[string]bool{"d1": true}
	line := `{"uuid":"d1","message":"m","timestamp":1700000000001,"isSystem":false}`
	for _, tc := range []struct {
		body string
		want string
	}{
		{line + "\n" + line + "\n", ""},
		{line + "\r\n\n" + line, ""},
		{"[" + line + "," + line + "]\n", "line 1"},
		{line + line + "\n", "not one JSON object per line"},
		{`{"uuid":"d1","message":"m","timestamp":"1","isSystem":false}` + "\n", "timestamp: got string"},
		{`{"uuid":"d1","message":"m","timestamp":1}` + "\n", "no isSystem"},
		{`{"uuid":"gw","message":"m","timestamp":1,"isSystem":true}` + "\n", "uuid gw is not a dependent device"},
	} {
		probs := strings.Join(logStreamProblems([]byte(tc.body), devices), "; ")
		if tc.want == "" && probs != "" || !strings.Contains(probs, tc.want) {
			t.Errorf("%q: got problems %q, want %q", tc.body, probs, tc.want)
		}
	}
}

func TestProvisionProblems(t *testing.T) {
	const u = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		body string
		want string
	}{
		{`{"belongs_to__application":5,"device_type":"edge","is_managed_by__device":7,"uuid":"` + u + `","registered_at":1700000000}`, ""},
		{`{"belongs_to__application":5,"device_type":"edge","is_managed_by__device":7,"uuid":"` + u + `","registered_at":1700000000,"extra":1}`, ""},
		{`{"belongs_to__application":5,"device_type":"edge","is_managed_by__device":7,"uuid":"` + u + `"}`, "registered_at: got null"},
		{`{"belongs_to__application":5,"device_type":"edge","is_managed_by__device":0,"uuid":"` + u + `","registered_at":1}`, "is_managed_by__device: got 0"},
		{`{"belongs_to__application":"5","device_type":"edge","is_managed_by__device":7,"uuid":"` + u + `","registered_at":1}`, "belongs_to__application"},
		{`{"belongs_to__application":5,"device_type":"edge","is_managed_by__device":7,"uuid":"U","registered_at":1}`, "uuid: got"},
	} {
		probs := strings.Join(provisionProblems([]byte(tc.body), 7), "; ")
		if tc.want == "" && probs != "" || !strings.Contains(probs, tc.want) {
			t.Errorf("%s: got problems %q, want %q", tc.body, probs, tc.want)
		}
	}
}
