package cloud

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func statePath(uuid string) string { return fmt.Sprintf(cloudapi.PathStateFmt, uuid) }
func logsPath(uuid string) string  { return fmt.Sprintf(cloudapi.PathLogStreamFmt, uuid) }
func getPath(uuid string) string {
	return cloudapi.PathDevices + "?" + strings.ReplaceAll(url.Values{"$filter": {"uuid eq '" + uuid + "'"}}.Encode(), "+", "%20")
}

func provisionBody(appID, gwID int64, uuid string) io.Reader {
	b, _ := json.Marshal(cloudapi.ProvisionRequest{BelongsToApplication: appID, DeviceType: "generic-amd64", IsManagedByDevice: gwID, UUID: uuid, RegisteredAt: 1700000000})
	return strings.NewReader(string(b))
}

func TestStateDocumentHoldsAppsAndDevicesWithMergedVariables(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	bare, err := c.CreateApp(AppSpec{Gateway: f.gw.UUID, Name: "bare", Config: map[string]string{"C": "1"}})
	mustNoErr(t, err)
	img := fakeImage("apps/x", 'a')
	rel, err := c.PushRelease(testCtx(t), f.app.ID, ReleaseSpec{Image: img})
	mustNoErr(t, err)
	mustNoErr(t, c.SetAppConfig(f.app.ID, map[string]string{"RATE": "10", "MODE": "a"}))
	mustNoErr(t, c.SetAppEnv(f.app.ID, map[string]string{"LEVEL": "info", "TZ": "UTC"}))
	d1, err := c.CreateDevice(DeviceSpec{AppID: f.app.ID, UUID: hexOf('1'), Name: "first",
		Environment: map[string]string{"LEVEL": "debug"}, Config: map[string]string{"MODE": "b"}})
	mustNoErr(t, err)
	_, err = c.CreateDevice(DeviceSpec{AppID: bare.ID, UUID: hexOf('2'), Name: "second \"quoted\" \u2028"})
	mustNoErr(t, err)
	_, err = c.RestartDevice(d1.UUID)
	mustNoErr(t, err)
	_, err = c.RestartDevice(d1.UUID)
	mustNoErr(t, err)

	r := c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil)
	if r.status != 200 {
		t.Fatalf("got status %d (%s), want 200", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("got Content-Type %q, want application/json", ct)
	}
	var got cloudapi.TargetState
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("state is not JSON: %v\n%s", err, r.body)
	}
	want := cloudapi.TargetState{
		Local: json.RawMessage(`{}`),
		Dependent: cloudapi.Dependent{
			Apps: map[string]cloudapi.DependentApp{
				fmt.Sprint(f.app.ID): {Name: "sensors", ParentApp: f.gw.AppID, Config: map[string]string{"RATE": "10", "MODE": "a"},
					Commit: rel.Commit, ReleaseID: rel.ID, Image: img},
				fmt.Sprint(bare.ID): {Name: "bare", ParentApp: f.gw.AppID, Config: map[string]string{"C": "1"}},
			},
			Devices: map[string]cloudapi.DependentDevice{
				hexOf('1'): {Name: "first", Restart: 2, Apps: map[string]cloudapi.DeviceAppTarget{
					fmt.Sprint(f.app.ID): {Config: map[string]string{"RATE": "10", "MODE": "b"}, Environment: map[string]string{"LEVEL": "debug", "TZ": "UTC"}}}},
				hexOf('2'): {Name: "second \"quoted\" \u2028", Apps: map[string]cloudapi.DeviceAppTarget{
					fmt.Sprint(bare.ID): {Config: map[string]string{"C": "1"}, Environment: map[string]string{}}}},
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got state\n%+v\nwant\n%+v", got, want)
	}
	// Absent fields are absent, not empty.
	var raw struct {
		Dependent struct {
			Apps    map[string]map[string]json.RawMessage
			Devices map[string]map[string]json.RawMessage
		}
	}
	mustNoErr(t, json.Unmarshal([]byte(r.body), &raw))
	for _, k := range []string{"commit", "releaseId", "image"} {
		if _, ok := raw.Dependent.Apps[fmt.Sprint(bare.ID)][k]; ok {
			t.Errorf("app without a release has %q, want it absent", k)
		}
	}
	if _, ok := raw.Dependent.Devices[hexOf('2')]["restart"]; ok {
		t.Errorf("device never restarted has \"restart\", want it absent")
	}
}

// The target state is written as encoding/json writes it with HTML
// escaping off: <, > and & stay as they are (the state file, by contrast,
// escapes them as json.Marshal does). Device variables override the app's,
// keys sorted, with more keys than fit the encoder's small buffer.
func TestStateDocumentKeepsHTMLCharactersUnescaped(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	appEnv := map[string]string{"A": "<a&b>"}
	devEnv := map[string]string{"Z": "&z"}
	for i := range 10 {
		appEnv[fmt.Sprintf("K%d", i)] = fmt.Sprintf("app<%d>", i)
		devEnv[fmt.Sprintf("K%d", i*2)] = fmt.Sprintf("dev&%d", i)
	}
	mustNoErr(t, c.SetAppEnv(f.app.ID, appEnv))
	d, err := c.CreateDevice(DeviceSpec{AppID: f.app.ID, Environment: devEnv})
	mustNoErr(t, err)
	body, _, err := c.State(f.gw.UUID)
	mustNoErr(t, err)

	merged := map[string]string{}
	maps.Copy(merged, appEnv)
	maps.Copy(merged, devEnv)
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	mustNoErr(t, enc.Encode(merged))
	wantEnv := `"environment":` + strings.TrimSuffix(want.String(), "\n")
	if !strings.Contains(string(body), wantEnv) {
		t.Errorf("state of device %s lacks %s:\n%s", d.UUID, wantEnv, body)
	}
	if strings.Contains(string(body), `\u0026`) || strings.Contains(string(body), `\u003c`) {
		t.Errorf("got HTML characters escaped in the state, want them as they are:\n%s", body)
	}
}

func TestStateAnswers304WhileUnchangedAndRendersOnce(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	first := c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil)
	etag := first.header.Get("ETag")
	if first.status != 200 || !strings.HasPrefix(etag, `"`) {
		t.Fatalf("got status %d ETag %q, want 200 and a strong ETag", first.status, etag)
	}
	renders := testutil.ToFloat64(c.metrics.stateRenders)
	for _, inm := range []string{etag, "W/" + etag, `"nope", ` + etag, "*"} {
		r := c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil, "If-None-Match", inm)
		if r.status != http.StatusNotModified || r.body != "" {
			t.Errorf("If-None-Match %s: got %d with %d body bytes, want 304 without a body", inm, r.status, len(r.body))
		}
		if got := r.header.Get("ETag"); got != etag {
			t.Errorf("304 ETag: got %q, want %q", got, etag)
		}
	}
	if got := testutil.ToFloat64(c.metrics.stateRenders); got != renders {
		t.Errorf("renders after unchanged polls: got %v, want %v", got, renders)
	}
	r := c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil, "If-None-Match", `"other"`)
	if r.status != 200 || r.body != first.body {
		t.Errorf("non-matching If-None-Match: got %d, want 200 with the same body", r.status)
	}
	// A PATCH of the reported state does not change the target.
	d := c.device(t, f.app.ID)
	r = c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil, "If-None-Match", etag)
	if r.status != 200 || r.header.Get("ETag") == etag {
		t.Fatalf("after a new device: got %d ETag %s, want 200 and a new ETag", r.status, r.header.Get("ETag"))
	}
	etag = r.header.Get("ETag")
	p := c.call(t, "PATCH", fmt.Sprintf(cloudapi.PathDeviceFmt, d.ID), f.gw.APIKey, strings.NewReader(`{"status":"Idle","is_online":true}`))
	if p.status != 200 {
		t.Fatalf("PATCH: got %d (%s), want 200", p.status, p.body)
	}
	r = c.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil, "If-None-Match", etag)
	if r.status != http.StatusNotModified {
		t.Errorf("after a PATCH of reported state: got %d, want 304", r.status)
	}
}

func TestEveryRouteNeedsTheGatewayKey(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	other := c.gateway(t)
	routes := []struct{ method, path string }{
		{"GET", statePath(f.gw.UUID)},
		{"POST", cloudapi.PathDevices},
		{"PATCH", fmt.Sprintf(cloudapi.PathDeviceFmt, 1)},
		{"GET", getPath(hexOf('1'))},
		{"POST", logsPath(f.gw.UUID)},
	}
	auths := []struct {
		name, header string
	}{
		{"no header", ""},
		{"unknown key", "Bearer not-a-key"},
		{"wrong scheme", "Basic " + f.gw.APIKey},
		{"empty bearer", "Bearer "},
	}
	for _, rt := range routes {
		for _, a := range auths {
			t.Run(rt.method+" "+rt.path+" with "+a.name+" answers 401", func(t *testing.T) {
				r := c.call(t, rt.method, rt.path, "", strings.NewReader("{}"), "Authorization", a.header)
				if r.status != http.StatusUnauthorized {
					t.Errorf("got %d, want 401", r.status)
				}
			})
		}
	}
	t.Run("another gateway's state answers 403", func(t *testing.T) {
		if r := c.call(t, "GET", statePath(f.gw.UUID), other.APIKey, nil); r.status != http.StatusForbidden {
			t.Errorf("got %d, want 403", r.status)
		}
	})
	t.Run("another gateway's log stream answers 403", func(t *testing.T) {
		if r := c.call(t, "POST", logsPath(f.gw.UUID), other.APIKey, strings.NewReader("")); r.status != http.StatusForbidden {
			t.Errorf("got %d, want 403", r.status)
		}
	})
	t.Run("bearer scheme is case-insensitive", func(t *testing.T) {
		if r := c.call(t, "GET", statePath(f.gw.UUID), "", nil, "Authorization", "bearer "+f.gw.APIKey); r.status != 200 {
			t.Errorf("got %d, want 200", r.status)
		}
	})
}

func TestProvisionStatuses(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	other := c.gateway(t)
	otherApp, err := c.CreateApp(AppSpec{Gateway: other.UUID})
	mustNoErr(t, err)
	taken := hexOf('9')
	if r := c.call(t, "POST", cloudapi.PathDevices, f.gw.APIKey, provisionBody(f.app.ID, f.gw.DeviceID, taken)); r.status != 201 {
		t.Fatalf("first provisioning: got %d (%s), want 201", r.status, r.body)
	}
	tests := []struct {
		name string
		body io.Reader
		want int
	}{
		{"a new device of a dependent app is created", provisionBody(f.app.ID, f.gw.DeviceID, hexOf('a')), 201},
		{"an uppercase uuid is refused", provisionBody(f.app.ID, f.gw.DeviceID, strings.ToUpper(hexOf('b'))), 400},
		{"a short uuid is refused", provisionBody(f.app.ID, f.gw.DeviceID, "abc"), 400},
		{"a 62-char uuid is refused", provisionBody(f.app.ID, f.gw.DeviceID, strings.Repeat("c", 62)), 400},
		{"an unknown app is refused", provisionBody(9999, f.gw.DeviceID, hexOf('d')), 400},
		{"the gateway app itself is refused", provisionBody(f.gw.AppID, f.gw.DeviceID, hexOf('d')), 400},
		{"another gateway's app is refused", provisionBody(otherApp.ID, f.gw.DeviceID, hexOf('d')), 400},
		{"a foreign managing device is refused", provisionBody(f.app.ID, other.DeviceID, hexOf('d')), 400},
		{"malformed JSON is refused", strings.NewReader(`{"uuid":`), 400},
		{"a wrongly typed field is refused", strings.NewReader(`{"belongs_to__application":"1"}`), 400},
		{"a missing device type is refused", strings.NewReader(fmt.Sprintf(`{"belongs_to__application":%d,"is_managed_by__device":%d,"uuid":"%s"}`, f.app.ID, f.gw.DeviceID, hexOf('e'))), 400},
		{"a duplicate uuid conflicts", provisionBody(f.app.ID, f.gw.DeviceID, taken), 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(c.Devices(DeviceFilter{}))
			r := c.call(t, "POST", cloudapi.PathDevices, f.gw.APIKey, tt.body)
			if r.status != tt.want {
				t.Fatalf("got %d (%s), want %d", r.status, r.body, tt.want)
			}
			after := len(c.Devices(DeviceFilter{}))
			if tt.want != 201 && after != before {
				t.Errorf("refused provisioning changed the device count from %d to %d", before, after)
			}
			if tt.want == 201 {
				var d cloudapi.Device
				mustNoErr(t, json.Unmarshal([]byte(r.body), &d))
				if d.ID <= 0 || d.UUID != hexOf('a') || d.DeviceType != "generic-amd64" || d.BelongsToApplication.ID != f.app.ID ||
					d.IsManagedByDevice == nil || d.IsManagedByDevice.ID != f.gw.DeviceID || !nameRe.MatchString(d.DeviceName) {
					t.Errorf("got device %+v, want id>0, the uuid, app %d, managed by %d, an adjective-noun name", d, f.app.ID, f.gw.DeviceID)
				}
				info, err := c.Device(d.UUID)
				mustNoErr(t, err)
				if info.Origin != OriginProvisioned || !info.RegisteredAt.Equal(time.Unix(1700000000, 0)) {
					t.Errorf("got origin %q registered %v, want provisioned at 1700000000", info.Origin, info.RegisteredAt)
				}
			}
		})
	}
}

func TestGeneratedNamesFollowTheSeed(t *testing.T) {
	names := func(seed uint64) []string {
		c := newTestCloud(t, Options{Seed: seed})
		f := c.fixture(t)
		var out []string
		for i := range 5 {
			r := c.call(t, "POST", cloudapi.PathDevices, f.gw.APIKey, provisionBody(f.app.ID, f.gw.DeviceID, fmt.Sprintf("%032x", i+1)))
			var d cloudapi.Device
			mustNoErr(t, json.Unmarshal([]byte(r.body), &d))
			out = append(out, d.DeviceName)
		}
		return out
	}
	a, b, other := names(7), names(7), names(8)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("same seed: got %v and %v, want equal", a, b)
	}
	if reflect.DeepEqual(a, other) {
		t.Errorf("different seeds gave the same names %v", a)
	}
}

func TestPatchStoresTheCloudView(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	d := c.device(t, f.app.ID)
	other := c.gateway(t)
	path := fmt.Sprintf(cloudapi.PathDeviceFmt, d.ID)
	tests := []struct {
		name, path, key, body string
		want                  int
	}{
		{"status and online are stored", path, f.gw.APIKey, `{"status":"Updating","is_online":true}`, 200},
		{"the commit is stored", path, f.gw.APIKey, `{"is_on__commit":"abc"}`, 200},
		{"a device of another gateway is not found", path, other.APIKey, `{"status":"x"}`, 404},
		{"an unknown id is not found", fmt.Sprintf(cloudapi.PathDeviceFmt, 987654), f.gw.APIKey, `{"status":"x"}`, 404},
		{"the gateway itself is not a dependent device", fmt.Sprintf(cloudapi.PathDeviceFmt, f.gw.DeviceID), f.gw.APIKey, `{"status":"x"}`, 404},
		{"a wrongly typed field is refused", path, f.gw.APIKey, `{"is_online":"yes"}`, 400},
		{"an empty patch is refused", path, f.gw.APIKey, `{}`, 400},
		{"an empty status is refused", path, f.gw.APIKey, `{"status":""}`, 400},
		{"malformed JSON is refused", path, f.gw.APIKey, `{`, 400},
		{"a bad id is refused", "/v6/device(abc)", f.gw.APIKey, `{"status":"x"}`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := c.call(t, "PATCH", tt.path, tt.key, strings.NewReader(tt.body)); r.status != tt.want {
				t.Errorf("got %d (%s), want %d", r.status, r.body, tt.want)
			}
		})
	}
	got, err := c.Device(d.UUID)
	mustNoErr(t, err)
	if got.Status != "Updating" || !got.IsOnline || got.IsOnCommit == nil || *got.IsOnCommit != "abc" {
		t.Errorf("got cloud view status %q online %v commit %v, want Updating true abc", got.Status, got.IsOnline, got.IsOnCommit)
	}
}

func TestGetByUUIDFilter(t *testing.T) {
	c := newTestCloud(t, Options{})
	f, d, od := c.ownAndForeignDevice(t)
	tests := []struct {
		name, path string
		want       int
		wantUUIDs  []string
	}{
		{"an own device is found", getPath(d.UUID), 200, []string{d.UUID}},
		{"an unknown uuid gives an empty list", getPath(hexOf('f')), 200, []string{}},
		{"another gateway's device is not visible", getPath(od.UUID), 200, []string{}},
		{"a quote-escaped uuid is parsed", getPath("it''s"), 200, []string{}},
		{"a missing filter is refused", cloudapi.PathDevices, 400, nil},
		{"a filter on another field is refused", cloudapi.PathDevices + "?$filter=" + url.QueryEscape("name eq 'x'"), 400, nil},
		{"an unknown query parameter is refused", getPath(d.UUID) + "&$expand=x", 400, nil},
		{"$select is accepted", getPath(d.UUID) + "&$select=id,uuid", 200, []string{d.UUID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.call(t, "GET", tt.path, f.gw.APIKey, nil)
			if r.status != tt.want {
				t.Fatalf("got %d (%s), want %d", r.status, r.body, tt.want)
			}
			if tt.want != 200 {
				return
			}
			var list cloudapi.DeviceList
			mustNoErr(t, json.Unmarshal([]byte(r.body), &list))
			if list.D == nil {
				t.Fatalf("got %s, want a \"d\" array", r.body)
			}
			got := []string{}
			for _, x := range list.D {
				got = append(got, x.UUID)
			}
			if !reflect.DeepEqual(got, tt.wantUUIDs) {
				t.Errorf("got uuids %v, want %v", got, tt.wantUUIDs)
			}
		})
	}
}

func logLine(uuid, msg string, ts int64) string {
	b, _ := json.Marshal(cloudapi.LogLine{UUID: uuid, Message: msg, Timestamp: ts})
	return string(b) + "\n"
}

func TestLogStreamStoresLinesOfOwnDevicesAndDropsOthers(t *testing.T) {
	c := newTestCloud(t, Options{})
	f, d, od := c.ownAndForeignDevice(t)
	body := logLine(d.UUID, "one", 1) + "\n" + logLine(od.UUID, "not mine", 2) + logLine(hexOf('e'), "unknown", 3) + logLine(d.UUID, "two", 4)
	r := c.call(t, "POST", logsPath(f.gw.UUID), f.gw.APIKey, strings.NewReader(body), "Content-Type", "application/x-ndjson")
	if r.status != 200 {
		t.Fatalf("got %d (%s), want 200", r.status, r.body)
	}
	got, err := c.Logs(d.UUID)
	mustNoErr(t, err)
	want := []cloudapi.LogLine{{UUID: d.UUID, Message: "one", Timestamp: 1}, {UUID: d.UUID, Message: "two", Timestamp: 4}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got logs %+v, want %+v", got, want)
	}
	if l, _ := c.Logs(od.UUID); len(l) != 0 {
		t.Errorf("another gateway's device got %d lines, want 0", len(l))
	}
	gw, _ := c.Gateway(f.gw.UUID)
	if gw.DroppedLogs != 2 {
		t.Errorf("got %d dropped lines, want 2", gw.DroppedLogs)
	}
	if got := testutil.ToFloat64(c.metrics.logLines.WithLabelValues("unknown_device")); got != 2 {
		t.Errorf("unknown_device metric: got %v, want 2", got)
	}

	t.Run("a malformed line answers 400 and stores no line of the request", func(t *testing.T) {
		r := c.call(t, "POST", logsPath(f.gw.UUID), f.gw.APIKey, strings.NewReader(logLine(d.UUID, "three", 5)+"{nope\n"+logLine(d.UUID, "never", 6)))
		if r.status != 400 || !strings.Contains(r.body, "line 2") {
			t.Errorf("got %d (%s), want 400 naming line 2", r.status, r.body)
		}
		l, _ := c.Logs(d.UUID)
		if len(l) != 2 || l[1].Message != "two" {
			t.Errorf("got %d lines %+v, want the 2 of the earlier request", len(l), l)
		}
	})
	t.Run("a JSON array instead of lines answers 400 and stores nothing", func(t *testing.T) {
		r := c.call(t, "POST", logsPath(f.gw.UUID), f.gw.APIKey, strings.NewReader(`[`+strings.TrimSpace(logLine(d.UUID, "in array", 7))+`]`+"\n"))
		if r.status != 400 {
			t.Errorf("got %d (%s), want 400", r.status, r.body)
		}
		if l, _ := c.Logs(d.UUID); len(l) != 2 {
			t.Errorf("got %d lines, want 2", len(l))
		}
	})
	t.Run("a line without uuid answers 400", func(t *testing.T) {
		if r := c.call(t, "POST", logsPath(f.gw.UUID), f.gw.APIKey, strings.NewReader(`{"message":"x"}`+"\n")); r.status != 400 {
			t.Errorf("got %d, want 400", r.status)
		}
	})
}

func TestLogStreamIsStoredWholeWhenItEnds(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	d := c.device(t, f.app.ID)
	pr, pw := io.Pipe()
	ctx := testCtx(t)
	done := statusOf(c.request(ctx, t, "POST", logsPath(f.gw.UUID), f.gw.APIKey, pr))
	for i := 1; i <= 3; i++ {
		if _, err := io.WriteString(pw, logLine(d.UUID, fmt.Sprint("line ", i), int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	// The lines were read (the pipe took them) but the request is open.
	if l, _ := c.Logs(d.UUID); len(l) != 0 {
		t.Fatalf("got %d lines stored before the request ended, want 0", len(l))
	}
	pw.Close()
	wantStatus(ctx, t, done, 200, "the stream request")
	lines, err := c.Logs(d.UUID)
	mustNoErr(t, err)
	if len(lines) != 3 || lines[2].Message != "line 3" {
		t.Errorf("got %+v, want the 3 lines", lines)
	}
}

func TestJournalKeepsRequestBodies(t *testing.T) {
	c := newTestCloud(t, Options{JournalBodyBytes: 8, JournalBodyBudget: 20})
	f := c.fixture(t)
	d := c.device(t, f.app.ID)
	path := fmt.Sprintf(cloudapi.PathDeviceFmt, d.ID)
	for _, body := range []string{`{"status":"a"}`, `{"is_online":false}`, `{"status":"b"}`} {
		if r := c.call(t, "PATCH", path, f.gw.APIKey, strings.NewReader(body)); r.status != 200 {
			t.Fatalf("PATCH %s: got %d (%s)", body, r.status, r.body)
		}
	}
	reqs := c.Requests(0)
	if len(reqs) != 3 {
		t.Fatalf("got %d journal entries, want 3", len(reqs))
	}
	// 8 bytes each, budget 20: the oldest lost its body, the others keep
	// their starts.
	want := []struct {
		body string
		size int64
	}{{"", 14}, {`{"is_onl`, 19}, {`{"status`, 14}}
	for i, w := range want {
		if string(reqs[i].Body) != w.body || reqs[i].BodySize != w.size || reqs[i].WholeBody() {
			t.Errorf("entry %d: got body %q of %d bytes, want %q of %d, not whole", i, reqs[i].Body, reqs[i].BodySize, w.body, w.size)
		}
	}

	c2 := newTestCloud(t, Options{})
	f2 := c2.fixture(t)
	d2, err := c2.CreateDevice(DeviceSpec{AppID: f2.app.ID})
	mustNoErr(t, err)
	body := `{"is_online":false}`
	if r := c2.call(t, "PATCH", fmt.Sprintf(cloudapi.PathDeviceFmt, d2.ID), f2.gw.APIKey, strings.NewReader(body)); r.status != 200 {
		t.Fatalf("got %d", r.status)
	}
	if got := c2.Requests(0); len(got) != 1 || string(got[0].Body) != body || !got[0].WholeBody() {
		t.Errorf("got %+v, want one entry with the whole body %s", got, body)
	}
}

func TestUnknownRoutesAnswer404(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	for _, rt := range []struct{ method, path string }{
		{"GET", "/v5/device"}, {"DELETE", cloudapi.PathDevices}, {"GET", "/v6/application"}, {"POST", statePath(f.gw.UUID)}, {"GET", "/"},
	} {
		if r := c.call(t, rt.method, rt.path, f.gw.APIKey, nil); r.status != 404 {
			t.Errorf("%s %s: got %d, want 404", rt.method, rt.path, r.status)
		}
	}
}

func TestJournalKeepsTheBodiesOfRequestsAnOutageRefused(t *testing.T) {
	for _, mode := range []OutageMode{Outage503, OutageClose} {
		c := newTestCloud(t, Options{})
		f := c.fixture(t)
		d := c.device(t, f.app.ID)
		mustNoErr(t, c.Outage(mode))
		body := `{"status":"Idle"}`
		_, _ = send(c.request(testCtx(t), t, "PATCH", fmt.Sprintf(cloudapi.PathDeviceFmt, d.ID), f.gw.APIKey, strings.NewReader(body)))
		got := c.Requests(0)
		if len(got) != 1 || got[0].Fault != "outage" || string(got[0].Body) != body {
			t.Errorf("outage %v: got %+v, want one entry refused by the outage with the body %s", mode, got, body)
		}
	}
}

// Devices reporting the same commit and status share one copy of each (a
// million devices on one release); a device reporting another changes no
// other's, and the shared values stay right after the table of them was
// forgotten (more than maxReported distinct values).
func TestPatchedValuesAreSharedAndStayRight(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	d1, d2 := c.device(t, f.app.ID), c.device(t, f.app.ID)
	patch := func(id int64, body string) {
		t.Helper()
		if r := c.call(t, "PATCH", fmt.Sprintf(cloudapi.PathDeviceFmt, id), f.gw.APIKey, strings.NewReader(body)); r.status != 200 {
			t.Fatalf("PATCH %s: got %d (%s)", body, r.status, r.body)
		}
	}
	patch(d1.ID, `{"status":"Idle","is_on__commit":"c1"}`)
	patch(d2.ID, `{"status":"Idle","is_on__commit":"c1"}`)
	c.mu.Lock()
	m1, m2 := c.devices[d1.UUID], c.devices[d2.UUID]
	shared := m1.isOnCommit == m2.isOnCommit && unsafe.StringData(m1.status) == unsafe.StringData(m2.status)
	c.mu.Unlock()
	if !shared {
		t.Error("two devices reporting the same commit and status hold copies of their own")
	}
	for i := range maxReported + 10 {
		patch(d2.ID, fmt.Sprintf(`{"status":"s%d","is_on__commit":"c%d"}`, i, i+2))
	}
	patch(d2.ID, `{"is_on__commit":"c1"}`)
	for _, d := range []DeviceInfo{d1, d2} {
		got, err := c.Device(d.UUID)
		mustNoErr(t, err)
		if got.IsOnCommit == nil || *got.IsOnCommit != "c1" {
			t.Errorf("device %s: commit %v, want c1", d.UUID, got.IsOnCommit)
		}
	}
	if got, _ := c.Device(d1.UUID); got.Status != "Idle" {
		t.Errorf("device 1: status %q, want Idle", got.Status)
	}
}
