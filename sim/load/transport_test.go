package load

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/client"
)

func TestAPIRouteLabelsCarryNoIdentifiers(t *testing.T) {
	tests := []struct {
		method, path, route, uuid string
	}{
		{"GET", "/v1/devices", "GET /v1/devices", ""},
		{"POST", "/v1/devices", "POST /v1/devices", ""},
		{"PUT", "/v1/devices/abc", "PUT /v1/devices/{uuid}", "abc"},
		{"POST", "/v1/devices/abc/logs", "POST /v1/devices/{uuid}/logs", "abc"},
		{"GET", "/v1/dependent-apps", "GET /v1/dependent-apps", ""},
		{"GET", "/v1/dependent-apps/12/assets/deadbeef", "GET /v1/dependent-apps/{id}/assets/{commit}", ""},
		{"GET", "/ping", "GET /ping", ""},
		{"GET", "/metrics", "GET other", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			route, uuid := apiRoute(tt.method, tt.path)
			if route != tt.route || uuid != tt.uuid {
				t.Errorf("got %q, %q; want %q, %q", route, uuid, tt.route, tt.uuid)
			}
		})
	}
}

// fakeSupervisor answers PUT /v1/devices/{uuid} with the device, 410 for
// uuid "gone", and counts the bodies it read.
func fakeSupervisor(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/devices/{uuid}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(b), "status") {
			http.Error(w, "body lost", http.StatusBadRequest)
			return
		}
		if r.PathValue("uuid") == "gone" {
			http.Error(w, "Device deleted", http.StatusGone)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"uuid":"`+r.PathValue("uuid")+`"}`)
	})
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") })
	srv := testkit.Server(t, mux)
	return srv
}

func TestAPIRecorderTimesRoutesCountsFailuresAndWatchesSuccessfulReports(t *testing.T) {
	srv := fakeSupervisor(t)
	rec := &APIRecorder{}
	c, err := client.New(client.Options{BaseURL: srv.URL, HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]api.DeviceUpdate{}
	rec.WatchReports(func(uuid string, u api.DeviceUpdate, at time.Time) {
		mu.Lock()
		seen[uuid] = u
		mu.Unlock()
	})
	ctx := context.Background()
	status, commit := "Idle", "c0ffee"
	if _, err := c.UpdateDevice(ctx, "d1", api.DeviceUpdate{Status: &status, Commit: &commit}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateDevice(ctx, "gone", api.DeviceUpdate{Status: &status}); !client.IsGone(err) {
		t.Fatalf("got %v, want a 410", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	lat, errs := rec.Take()
	if got := lat["PUT /v1/devices/{uuid}"].Count; got != 2 {
		t.Errorf("timed %d PUTs, want 2", got)
	}
	if got := lat["GET /ping"].Count; got != 1 {
		t.Errorf("timed %d pings, want 1", got)
	}
	if got := errs["PUT /v1/devices/{uuid} 410"]; got != 1 || len(errs) != 1 {
		t.Errorf("errors = %v, want one PUT answered 410", errs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen["d1"].Commit == nil || *seen["d1"].Commit != commit {
		t.Errorf("watched reports = %+v, want only d1's with commit %s", seen, commit)
	}
	if lat2, errs2 := rec.Take(); len(lat2) != 0 || len(errs2) != 0 {
		t.Errorf("second Take = %v, %v; want nothing", lat2, errs2)
	}
}

func TestHookRecorderTellsKindsAndLeavesTheBodyToTheGateway(t *testing.T) {
	var gotBody string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		if strings.HasSuffix(r.URL.Path, "/unknown") {
			http.Error(w, "Device not found", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	rec := &HookRecorder{Next: next}
	type hook struct {
		kind, uuid, commit string
	}
	var hooks []hook
	rec.WatchHooks(func(kind, uuid string, u *api.UpdateHook, _ time.Time) {
		h := hook{kind: kind, uuid: uuid}
		if u != nil {
			h.commit = u.Commit
		}
		hooks = append(hooks, h)
	})
	body := `{"appId":1,"commit":"abc","environment":{},"config":{}}`
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodPut, "/v1/devices/d1", strings.NewReader(body)),
		httptest.NewRequest(http.MethodPut, "/v1/devices/d2/restart", nil),
		httptest.NewRequest(http.MethodDelete, "/v1/devices/d3", nil),
		httptest.NewRequest(http.MethodDelete, "/v1/devices/unknown", nil),
	} {
		rec.ServeHTTP(httptest.NewRecorder(), r)
		if r.Method == http.MethodPut && r.URL.Path == "/v1/devices/d1" && gotBody != body {
			t.Errorf("gateway read body %q, want %q", gotBody, body)
		}
	}
	want := []hook{{HookUpdate, "d1", "abc"}, {HookRestart, "d2", ""}, {HookDelete, "d3", ""}, {HookDelete, "unknown", ""}}
	if len(hooks) != len(want) {
		t.Fatalf("watched %+v, want %+v", hooks, want)
	}
	for i := range want {
		if hooks[i] != want[i] {
			t.Errorf("hook %d = %+v, want %+v", i, hooks[i], want[i])
		}
	}
	lat, answers := rec.Take()
	if lat["update"].Count != 1 || lat["restart"].Count != 1 || lat["delete"].Count != 2 {
		t.Errorf("latencies = %+v, want 1 update, 1 restart, 2 deletes", lat)
	}
	if answers["update 202"] != 1 || answers["delete 404"] != 1 || answers["delete 202"] != 1 {
		t.Errorf("answers = %v, want update 202, delete 202 and delete 404 once each", answers)
	}
}
