package cloudclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/promreg/promtest"
	"github.com/depharness/depharness/proxy/violation"
	"github.com/jarcoal/httpmock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	testBase = "http://cloud.test"
	testUUID = "gwuuid0123456789abcdef0123456789"
	testKey  = "s3cret-cloud-key"
)

// newMockClient returns a client on its own mock transport (never the
// global one) and a per-test registry.
func newMockClient(t *testing.T) (*Client, *httpmock.MockTransport, *prometheus.Registry) {
	t.Helper()
	mt := httpmock.NewMockTransport()
	reg := prometheus.NewRegistry()
	c, err := New(Options{
		BaseURL: testBase + "/", GatewayUUID: testUUID, GatewayID: 7, APIKey: testKey,
		HTTPClient: &http.Client{Transport: mt, Timeout: 5 * time.Second},
		Registerer: reg,
		Now:        func() time.Time { return time.Unix(1700000000, 0) },
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, mt, reg
}

// authed wraps a responder with a check of the Authorization header.
func authed(t *testing.T, r httpmock.Responder) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		if got, want := req.Header.Get("Authorization"), "Bearer "+testKey; got != want {
			t.Errorf("Authorization = %q, want %q", got, want)
		}
		return r(req)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"a relative base URL is refused", Options{BaseURL: "cloud.test", GatewayUUID: testUUID}},
		{"a non-http scheme is refused", Options{BaseURL: "ftp://cloud.test", GatewayUUID: testUUID}},
		{"a missing gateway uuid is refused", Options{BaseURL: testBase}},
		{"a negative state bound is refused", Options{BaseURL: testBase, GatewayUUID: testUUID, MaxStateBytes: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil {
				t.Fatal("New succeeded, want error")
			}
		})
	}
}

func TestGetState(t *testing.T) {
	statePath := "GET " + testBase + "/device/v2/" + testUUID + "/state"
	body := `{"local":{},"dependent":{"apps":{"5":{"name":"a","parentApp":1,"config":{"K":"v"},"commit":"abc","releaseId":3,"image":"h:1/r@sha256:00"}},"devices":{"d1":{"name":"n","restart":2,"apps":{"5":{"config":{},"environment":{"E":"1"}}}}}}}`

	t.Run("a 200 answer gives the state and its ETag", func(t *testing.T) {
		c, mt, _ := newMockClient(t)
		on(mt, statePath, authed(t, func(req *http.Request) (*http.Response, error) {
			if got := req.Header.Get("If-None-Match"); got != "" {
				t.Errorf("If-None-Match = %q, want none", got)
			}
			r := httpmock.NewStringResponse(200, body)
			r.Header.Set("ETag", `"v2"`)
			return r, nil
		}))
		st, etag, nm, err := c.GetState(context.Background(), "")
		if err != nil {
			t.Fatalf("GetState: %v", err)
		}
		if nm {
			t.Fatal("notModified = true, want false")
		}
		if etag != `"v2"` {
			t.Errorf("etag = %q, want %q", etag, `"v2"`)
		}
		app := st.Dependent.Apps["5"]
		if app.Commit != "abc" || app.Image != "h:1/r@sha256:00" || app.Config["K"] != "v" {
			t.Errorf("app = %+v, want commit abc, image, config K=v", app)
		}
		if d := st.Dependent.Devices["d1"]; d.Restart != 2 || d.Apps["5"].Environment["E"] != "1" {
			t.Errorf("device = %+v, want restart 2 and E=1", d)
		}
	})

	t.Run("a state larger than MaxStateBytes fails the poll, one within it is read", func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		on(mt, statePath, authed(t, func(*http.Request) (*http.Response, error) {
			return httpmock.NewStringResponse(200, body), nil
		}))
		for _, tc := range []struct {
			limit   int64
			wantErr bool
		}{{int64(len(body)) - 1, true}, {int64(len(body)), false}, {0, false}} {
			c, err := New(Options{BaseURL: testBase, GatewayUUID: testUUID, APIKey: testKey,
				HTTPClient: &http.Client{Transport: mt}, MaxStateBytes: tc.limit})
			if err != nil {
				t.Fatal(err)
			}
			_, _, _, err = c.GetState(context.Background(), "")
			if gotErr := err != nil; gotErr != tc.wantErr || (gotErr && !strings.Contains(err.Error(), "larger than")) {
				t.Errorf("MaxStateBytes %d with a %d-byte state: err = %v, want an error: %v", tc.limit, len(body), err, tc.wantErr)
			}
		}
	})

	t.Run("a 304 answer to If-None-Match is not modified and keeps the ETag", func(t *testing.T) {
		c, mt, _ := newMockClient(t)
		on(mt, statePath, authed(t, func(req *http.Request) (*http.Response, error) {
			if got := req.Header.Get("If-None-Match"); got != `"v2"` {
				t.Errorf("If-None-Match = %q, want %q", got, `"v2"`)
			}
			return httpmock.NewStringResponse(304, ""), nil
		}))
		st, etag, nm, err := c.GetState(context.Background(), `"v2"`)
		if err != nil || !nm || st != nil || etag != `"v2"` {
			t.Fatalf("GetState = (%v, %q, %v, %v), want (nil, \"v2\", true, nil)", st, etag, nm, err)
		}
	})

	for _, tc := range []failure{
		{"a 500 answer is unavailable", httpmock.NewStringResponder(500, "boom"), true, false},
		{"a 503 answer is unavailable", httpmock.NewStringResponder(503, ""), true, false},
		{"a 429 answer is unavailable", httpmock.NewStringResponder(429, ""), true, false},
		{"a 401 answer is rejected", httpmock.NewStringResponder(401, "Unauthorized"), false, true},
		{"a connection failure is unavailable", httpmock.ConnectionFailure, true, false},
		{"an undecodable body is unavailable", httpmock.NewStringResponder(200, "{not json"), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mt, _ := newMockClient(t)
			on(mt, statePath, tc.responder)
			_, _, _, err := c.GetState(context.Background(), "")
			tc.check(t, "GetState", err)
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("error %q contains the key", err)
			}
		})
	}
}

func TestProvision(t *testing.T) {
	const path = "POST " + testBase + "/v6/device"

	t.Run("a 201 answer gives the cloud device and the request carries the gateway and uuid", func(t *testing.T) {
		c, mt, _ := newMockClient(t)
		on(mt, path, authed(t, func(req *http.Request) (*http.Response, error) {
			var pr cloud.ProvisionRequest
			if err := json.NewDecoder(req.Body).Decode(&pr); err != nil {
				t.Errorf("decode request: %v", err)
			}
			want := cloud.ProvisionRequest{BelongsToApplication: 42, DeviceType: "edge", IsManagedByDevice: 7, UUID: "u1", RegisteredAt: 1700000000}
			if pr != want {
				t.Errorf("request = %+v, want %+v", pr, want)
			}
			if ct := req.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			return httpmock.NewStringResponse(201, `{"id":99,"uuid":"u1","device_name":"wild-paper","device_type":"edge","note":null,"belongs_to__application":{"__id":42}}`), nil
		}))
		d, err := c.Provision(context.Background(), 42, "edge", "u1")
		if err != nil {
			t.Fatalf("Provision: %v", err)
		}
		if d.ID != 99 || d.UUID != "u1" || d.DeviceName != "wild-paper" || d.BelongsToApplication.ID != 42 {
			t.Errorf("device = %+v, want id 99, uuid u1, name wild-paper, app 42", d)
		}
	})

	for _, tc := range []failure{
		{"a 400 answer for an app that is not dependent is rejected", httpmock.NewStringResponder(400, "not a dependent app"), false, true},
		{"a 403 answer is rejected", httpmock.NewStringResponder(403, ""), false, true},
		{"a 502 answer is unavailable", httpmock.NewStringResponder(502, ""), true, false},
		{"a connection failure is unavailable", httpmock.ConnectionFailure, true, false},
		{"a 201 answer without a device id is unavailable", httpmock.NewStringResponder(201, `{"uuid":"u1"}`), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mt, _ := newMockClient(t)
			on(mt, path, tc.responder)
			_, err := c.Provision(context.Background(), 42, "edge", "u1")
			tc.check(t, "Provision", err)
		})
	}

	t.Run("a status error carries the code and the start of the body", func(t *testing.T) {
		c, mt, _ := newMockClient(t)
		on(mt, path, httpmock.NewStringResponder(400, strings.Repeat("x", 2000)))
		_, err := c.Provision(context.Background(), 42, "edge", "u1")
		var se *StatusError
		if !errors.As(err, &se) {
			t.Fatalf("err = %v, want *StatusError", err)
		}
		if se.Code != 400 || se.Call != CallProvision || len(se.Body) != maxErrorBody {
			t.Errorf("StatusError = {%q %d len(body)=%d}, want {provision 400 %d}", se.Call, se.Code, len(se.Body), maxErrorBody)
		}
	})
}

func TestPatchDevice(t *testing.T) {
	t.Run("the patch goes to the device's id with only the set fields", func(t *testing.T) {
		c, mt, _ := newMockClient(t)
		on(mt, "PATCH "+testBase+"/v6/device(31)", authed(t, func(req *http.Request) (*http.Response, error) {
			b, _ := io.ReadAll(req.Body)
			if got, want := string(b), `{"status":"Idle","is_on__commit":"c1"}`; got != want {
				t.Errorf("body = %s, want %s", got, want)
			}
			return httpmock.NewStringResponse(200, "OK"), nil
		}))
		st, commit := "Idle", "c1"
		if err := c.PatchDevice(context.Background(), 31, cloud.DevicePatch{Status: &st, IsOnCommit: &commit}); err != nil {
			t.Fatalf("PatchDevice: %v", err)
		}
		if n := mt.GetTotalCallCount(); n != 1 {
			t.Errorf("calls = %d, want 1", n)
		}
	})
	t.Run("a 404 for a deleted device is rejected", func(t *testing.T) {
		c, mt, _ := newMockClient(t)
		on(mt, "PATCH "+testBase+"/v6/device(31)", httpmock.NewStringResponder(404, ""))
		on := true
		err := c.PatchDevice(context.Background(), 31, cloud.DevicePatch{IsOnline: &on})
		if !IsRejected(err) || IsUnavailable(err) {
			t.Fatalf("err = %v, want rejected and not unavailable", err)
		}
	})
}

func TestGetDeviceByUUID(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		wantFound bool
	}{
		{"a device in the list is found", `{"d":[{"id":5,"uuid":"dev'1","device_name":"n","device_type":"t"}]}`, true},
		{"an empty list is not found", `{"d":[]}`, false},
		{"a list with another uuid is not found", `{"d":[{"id":5,"uuid":"other"}]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, mt, _ := newMockClient(t)
			on(mt, "GET "+testBase+"/v6/device", authed(t, func(req *http.Request) (*http.Response, error) {
				if got, want := req.URL.Query().Get("$filter"), "uuid eq 'dev''1'"; got != want {
					t.Errorf("$filter = %q, want %q", got, want)
				}
				if strings.Contains(req.URL.RawQuery, "+") {
					t.Errorf("raw query %q encodes spaces as +, want %%20", req.URL.RawQuery)
				}
				return httpmock.NewStringResponse(200, tc.body), nil
			}))
			d, found, err := c.GetDeviceByUUID(context.Background(), "dev'1")
			if err != nil {
				t.Fatalf("GetDeviceByUUID: %v", err)
			}
			if found != tc.wantFound {
				t.Fatalf("found = %v, want %v", found, tc.wantFound)
			}
			if found && d.ID != 5 {
				t.Errorf("id = %d, want 5", d.ID)
			}
		})
	}
}

func TestSendLogs(t *testing.T) {
	t.Run("lines are sent as newline-delimited JSON in order", func(t *testing.T) {
		c, mt, _ := newMockClient(t)
		var got []cloud.LogLine
		on(mt, "POST "+testBase+"/device/v2/"+testUUID+"/log-stream", authed(t, func(req *http.Request) (*http.Response, error) {
			if ct := req.Header.Get("Content-Type"); ct != "application/x-ndjson" {
				t.Errorf("Content-Type = %q, want application/x-ndjson", ct)
			}
			sc := bufio.NewScanner(req.Body)
			for sc.Scan() {
				var l cloud.LogLine
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Errorf("line %q: %v", sc.Text(), err)
				}
				got = append(got, l)
			}
			return httpmock.NewStringResponse(200, ""), nil
		}))
		want := []cloud.LogLine{
			{UUID: "a", Message: "one <b>", Timestamp: 1, IsSystem: false},
			{UUID: "b", Message: "two\nlines", Timestamp: 2, IsSystem: true},
		}
		if err := c.SendLogs(context.Background(), want); err != nil {
			t.Fatalf("SendLogs: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("got %d lines, want %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("line %d = %+v, want %+v", i, got[i], want[i])
			}
		}
	})
	t.Run("an empty batch sends nothing", func(t *testing.T) {
		c, mt, _ := newMockClient(t)
		if err := c.SendLogs(context.Background(), nil); err != nil {
			t.Fatalf("SendLogs: %v", err)
		}
		if n := mt.GetTotalCallCount(); n != 0 {
			t.Errorf("calls = %d, want 0", n)
		}
	})
}

func TestCancelledContextIsUnavailableTransportError(t *testing.T) {
	c, mt, _ := newMockClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	// The cloud hangs until the caller gives up.
	on(mt, "PATCH "+testBase+"/v6/device(1)", func(req *http.Request) (*http.Response, error) {
		cancel()
		<-req.Context().Done()
		return nil, req.Context().Err()
	})
	err := c.PatchDevice(ctx, 1, cloud.DevicePatch{})
	if !errors.As(err, new(*TransportError)) || !IsUnavailable(err) {
		t.Fatalf("err = %v, want an unavailable *TransportError", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want it to wrap context.Canceled", err)
	}
}

func TestAgainstRealServerWithDefaultClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testKey {
			http.Error(w, "Unauthorized", 401)
			return
		}
		w.WriteHeader(200)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Options{BaseURL: srv.URL, GatewayUUID: testUUID, APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PatchDevice(context.Background(), 3, cloud.DevicePatch{}); err != nil {
		t.Fatalf("PatchDevice: %v", err)
	}
	srv.Close()
	err = c.PatchDevice(context.Background(), 3, cloud.DevicePatch{})
	if !IsUnavailable(err) {
		t.Fatalf("after close: err = %v, want unavailable", err)
	}
}

func TestTimeoutEndsACallToACloudThatStopsAnswering(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // accepts the request, then never answers
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	c, err := New(Options{BaseURL: srv.URL, GatewayUUID: testUUID, APIKey: testKey, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The caller's own deadline (10 s) comes before DefaultTimeout (30 s):
	// the call ends with the client's timeout only if Options.Timeout holds.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.PatchDevice(ctx, 3, cloud.DevicePatch{})
	var ne interface{ Timeout() bool }
	if !IsUnavailable(err) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want an unavailable timeout", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the caller's context ended first: %v", ctx.Err())
	}
}

func TestMetricsCountCallsByCodeAndLintClean(t *testing.T) {
	c, mt, reg := newMockClient(t)
	on(mt, "PATCH "+testBase+"/v6/device(1)", httpmock.NewStringResponder(200, ""))
	on(mt, "PATCH "+testBase+"/v6/device(2)", httpmock.NewStringResponder(404, ""))
	on(mt, "PATCH "+testBase+"/v6/device(3)", httpmock.ConnectionFailure)
	for _, id := range []int64{1, 1, 2, 3} {
		c.PatchDevice(context.Background(), id, cloud.DevicePatch{})
	}
	for _, tc := range []struct {
		code string
		want float64
	}{{"200", 2}, {"404", 1}, {"error", 1}} {
		if got := testutil.ToFloat64(c.metrics.requests.Count.WithLabelValues(CallPatch, tc.code)); got != tc.want {
			t.Errorf("requests{patch,%s} = %v, want %v", tc.code, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(c.metrics.requests.Duration); n != 1 {
		t.Errorf("duration series = %d, want 1", n)
	}
	promtest.CheckHygiene(t, reg, testKey)
}

func TestMetricsAreSharedAcrossClientsOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i := 0; i < 2; i++ {
		if _, err := New(Options{BaseURL: testBase, GatewayUUID: testUUID, Registerer: reg}); err != nil {
			t.Fatalf("New #%d: %v", i+1, err)
		}
	}
}

// failure is a failing answer of the cloud and how the error the client
// returns for it is classed.
type failure struct {
	name            string
	responder       httpmock.Responder
	unavail, reject bool
}

// check fails the test unless err, what call returned for f's answer, is
// an error that IsUnavailable and IsRejected class as f says.
func (f failure) check(t *testing.T, call string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want error", call)
	}
	if got := IsUnavailable(err); got != f.unavail {
		t.Errorf("IsUnavailable(%v) = %v, want %v", err, got, f.unavail)
	}
	if got := IsRejected(err); got != f.reject {
		t.Errorf("IsRejected(%v) = %v, want %v", err, got, f.reject)
	}
}

// on registers r for "METHOD url" on mt.
func on(mt *httpmock.MockTransport, methodURL string, r httpmock.Responder) {
	method, u, _ := strings.Cut(methodURL, " ")
	mt.RegisterResponder(method, u, r)
}

func TestViolationsBreakTheWireFormat(t *testing.T) {
	const (
		provisionRoute = "POST " + testBase + "/v6/device"
		patchRoute     = "PATCH " + testBase + "/v6/device(31)"
		logsRoute      = "POST " + testBase + "/device/v2/" + testUUID + "/log-stream"
	)
	// broken returns a client with violation v on whose requests to route
	// leave their body in *body.
	broken := func(t *testing.T, v, route string) (c *Client, body *string) {
		c, mt, _ := newMockClient(t)
		c.v = violation.Set{v: true}
		body = new(string)
		on(mt, route, func(req *http.Request) (*http.Response, error) {
			b, _ := io.ReadAll(req.Body)
			*body = string(b)
			return httpmock.NewStringResponse(201, `{"id":1,"uuid":"u"}`), nil
		})
		return c, body
	}
	provision := func(c *Client) error {
		_, err := c.Provision(context.Background(), 3, "generic-amd64", "u")
		return err
	}
	patch := func(p cloud.DevicePatch) func(*Client) error {
		return func(c *Client) error { return c.PatchDevice(context.Background(), 31, p) }
	}
	sendLogs := func(lines ...cloud.LogLine) func(*Client) error {
		return func(c *Client) error { return c.SendLogs(context.Background(), lines) }
	}
	commit, status := "c1", "Idle"
	for _, tc := range []struct {
		violation, does, route string
		call                   func(*Client) error
		ok                     func(body string) bool
		want                   string // what ok holds, for the message
	}{
		{"cloud-prov-unmanaged", "drops is_managed_by__device", provisionRoute, provision,
			func(b string) bool { return strings.Contains(b, `"is_managed_by__device":0`) },
			"is_managed_by__device 0"},
		{"cloud-patch-commit-field", "sends commit, not is_on__commit", patchRoute, patch(cloud.DevicePatch{IsOnCommit: &commit}),
			func(b string) bool {
				return !strings.Contains(b, "is_on__commit") && strings.Contains(b, `"commit":"c1"`)
			},
			"commit without is_on__commit"},
		{"cloud-prov-no-registered-at", "leaves registered_at out", provisionRoute, provision,
			func(b string) bool {
				return !strings.Contains(b, "registered_at") && strings.Contains(b, `"is_managed_by__device"`)
			},
			"the fields but registered_at"},
		{"cloud-patch-environment", "adds an environment field", patchRoute, patch(cloud.DevicePatch{Status: &status}),
			func(b string) bool { return b == `{"environment":{},"status":"Idle"}` },
			"status and an environment"},
		{"cloud-logs-omit-false", "leaves isSystem false out", logsRoute,
			sendLogs(cloud.LogLine{UUID: "a", Message: "m"}, cloud.LogLine{UUID: "b", IsSystem: true}),
			func(b string) bool {
				return b == `{"uuid":"a","message":"m","timestamp":0}`+"\n"+`{"uuid":"b","message":"","timestamp":0,"isSystem":true}`+"\n"
			},
			"one line each, isSystem only where true"},
		{"cloud-logs-json-array", "sends one array", logsRoute, sendLogs(cloud.LogLine{UUID: "a"}, cloud.LogLine{UUID: "b"}),
			func(b string) bool { return strings.HasPrefix(b, "[") && strings.Count(b, "\n") == 1 },
			"a single JSON array line"},
	} {
		t.Run(tc.violation+" "+tc.does, func(t *testing.T) {
			c, body := broken(t, tc.violation, tc.route)
			if err := tc.call(c); err != nil {
				t.Fatal(err)
			}
			if !tc.ok(*body) {
				t.Errorf("body = %q, want %s", *body, tc.want)
			}
		})
	}
	t.Run("cloud-patch-drop-offline leaves is_online false out", func(t *testing.T) {
		c, body := broken(t, "cloud-patch-drop-offline", patchRoute)
		off := false
		if err := patch(cloud.DevicePatch{Status: &status, IsOnline: &off})(c); err != nil {
			t.Fatal(err)
		}
		if *body != `{"status":"Idle"}` {
			t.Errorf("body = %s, want status alone", *body)
		}
		*body = "none"
		if err := patch(cloud.DevicePatch{IsOnline: &off})(c); err != nil {
			t.Fatal(err)
		}
		if *body != "none" {
			t.Errorf("a patch of is_online false alone was sent: %s", *body)
		}
	})
}
