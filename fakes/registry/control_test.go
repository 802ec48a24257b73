package registry

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/depharness/depharness/internal/testkit"
)

func TestControlHandlerDrivesTheFaultKnobs(t *testing.T) {
	f := newFixture(t, Options{})
	ref, _ := f.build(t, "apps/1", releaseLayers()...)
	ctl := testkit.Server(t, http.StripPrefix("/control/v1", f.srv.ControlHandler()))
	call := func(method, path, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, ctl.URL+"/control/v1"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ctl.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	pullFails := func() bool {
		_, err := pullImage(t, ref, noRetry()...)
		return err != nil
	}

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		thenPullFails            bool
	}{
		{"a failure of the next manifest pull is armed", "PUT", "/fail/manifest", `{"n":1,"status":503}`, 204, true},
		{"and it was consumed by that pull", "", "", "", 0, false},
		{"a lasting failure is armed without n", "PUT", "/fail/manifest", `{"status":500}`, 204, true},
		{"and it lasts", "", "", "", 0, true},
		{"Unfail disarms it", "DELETE", "/fail/manifest", "", 204, false},
		{"Heal disarms everything", "POST", "/heal", "", 204, false},
		{"an unknown kind is refused", "PUT", "/fail/upload", `{"status":500}`, 400, false},
		{"a non-error status is refused", "PUT", "/fail/blob", `{"status":200}`, 400, false},
		{"an unknown field is refused", "PUT", "/fail/blob", `{"status":500,"x":1}`, 400, false},
		{"a zero throttle is refused", "PUT", "/throttle", `{"bytesPerSec":0}`, 400, false},
		{"a throttle is armed", "PUT", "/throttle", `{"bytesPerSec":1000000}`, 204, false},
		{"Unthrottle", "DELETE", "/throttle", "", 204, false},
		{"corrupt with neither next nor digest is refused", "PUT", "/corrupt", `{}`, 400, false},
		{"corrupt with a bad digest is refused", "PUT", "/corrupt", `{"digest":"md5:x"}`, 400, false},
		{"corrupt next", "PUT", "/corrupt", `{"next":2}`, 204, false},
		{"Uncorrupt", "DELETE", "/corrupt", "", 204, false},
	} {
		if tc.method != "" {
			if got := call(tc.method, tc.path, tc.body); got != tc.status {
				t.Fatalf("%s: %s %s: got %d, want %d", tc.name, tc.method, tc.path, got, tc.status)
			}
		}
		if got := pullFails(); got != tc.thenPullFails {
			t.Fatalf("%s: pull fails: got %v, want %v", tc.name, got, tc.thenPullFails)
		}
	}

	resp, err := ctl.Client().Get(ctl.URL + "/control/v1/requests")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rs []Request
	if err := json.NewDecoder(resp.Body).Decode(&rs); err != nil {
		t.Fatalf("decoding requests: %v", err)
	}
	var failed int
	for _, r := range rs {
		if r.Fault == "fail" {
			failed++
		}
	}
	if failed != 3 {
		t.Errorf("requests with fault \"fail\" in the log: got %d, want 3", failed)
	}
	if got := call("DELETE", "/requests", ""); got != 204 || len(f.srv.Requests()) != 0 {
		t.Errorf("DELETE requests: got %d with %d left, want 204 with none", got, len(f.srv.Requests()))
	}
}
