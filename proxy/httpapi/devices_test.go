package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/promreg/promtest"
	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/store"
)

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

// DEV-PROV-1, DEV-PROV-4.
func TestProvision(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		wantType string
	}{
		{"without device_type the type is generic-amd64", `{"appId":5}`, "generic-amd64"},
		{"a null device_type is the default", `{"appId":5,"device_type":null}`, "generic-amd64"},
		{"a given device_type is used", `{"appId":5,"device_type":"edge"}`, "edge"},
		{"an integral float appId is an integer", `{"appId":5.0}`, "generic-amd64"},
		{"unknown members are ignored", `{"appId":5,"colour":"blue"}`, "generic-amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			code, body := e.do("POST", "/v1/devices", tc.body)
			if code != http.StatusCreated {
				t.Fatalf("got %d %s, want 201", code, body)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			uuid, _ := got["uuid"].(string)
			if !hex32.MatchString(uuid) {
				t.Errorf("uuid = %q, want 32 hex chars", uuid)
			}
			want := map[string]any{"id": 1001.0, "uuid": uuid, "name": "device-1001", "note": nil,
				"device_type": tc.wantType, "device_name": "device-1001"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("body = %v, want %v", got, want)
			}
			if calls := e.cloud.Calls(); len(calls) != 1 || calls[0] != (provisionCall{5, tc.wantType, uuid}) {
				t.Errorf("cloud calls = %+v, want one for app 5, type %s, uuid %s", calls, tc.wantType, uuid)
			}
			d := e.device(uuid)
			if d.AppID != 5 || d.DeviceID != "1001" || d.DeviceType != tc.wantType || d.Name != "device-1001" || d.Status != "Provisioned" {
				t.Errorf("device = %+v, want app 5, deviceId 1001, type %s, name device-1001, status Provisioned", d, tc.wantType)
			}
			if n := e.provisions(); n != 1 {
				t.Errorf("OnProvisioned calls = %d, want 1", n)
			}
		})
	}

	t.Run("every device gets a new uuid", func(t *testing.T) {
		e := newEnv(t)
		seen := map[string]bool{}
		for i := 0; i < 5; i++ {
			u := e.provision(1)
			if seen[u] {
				t.Fatalf("uuid %s handed out twice", u)
			}
			seen[u] = true
		}
		_, body := e.do("GET", "/v1/devices", "")
		var list []api.Device
		json.Unmarshal([]byte(body), &list)
		if len(list) != 5 {
			t.Errorf("list has %d devices, want 5", len(list))
		}
	})
}

// DEV-PROV-2, DEV-PROV-3.
func TestProvisionRefusals(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		cloudErr  error
		wantCode  int
		wantText  string
		wantCalls int
	}{
		{"a missing appId is refused", `{}`, nil, 400, api.ErrTextAppIDInvalid, 0},
		{"an empty body is refused", ``, nil, 400, api.ErrTextAppIDInvalid, 0},
		{"a string appId is refused", `{"appId":"5"}`, nil, 400, api.ErrTextAppIDInvalid, 0},
		{"a fractional appId is refused", `{"appId":1.5}`, nil, 400, api.ErrTextAppIDInvalid, 0},
		{"appId 0 is refused", `{"appId":0}`, nil, 400, api.ErrTextAppIDInvalid, 0},
		{"a negative appId is refused", `{"appId":-3}`, nil, 400, api.ErrTextAppIDInvalid, 0},
		{"a null appId is refused", `{"appId":null}`, nil, 400, api.ErrTextAppIDInvalid, 0},
		{"a boolean appId is refused", `{"appId":true}`, nil, 400, api.ErrTextAppIDInvalid, 0},
		{"an appId beyond int64 is refused", `{"appId":1e30}`, nil, 400, api.ErrTextAppIDInvalid, 0},
		{"a numeric device_type is refused", `{"appId":5,"device_type":7}`, nil, 400, "device_type must be a non-empty string", 0},
		{"an app the cloud refuses is a provisioning failure", `{"appId":5}`, rejected, 400, api.ErrTextProvisioningFailed, 1},
		{"an unreachable cloud is 503", `{"appId":5}`, unreachable, 503, api.ErrTextServiceUnavailable, 1},
		{"a failing cloud is 503", `{"appId":5}`, &cloudclient.StatusError{Call: cloudclient.CallProvision, Code: 500}, 503, api.ErrTextServiceUnavailable, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.cloud.setFail(tc.cloudErr)
			code, body := e.do("POST", "/v1/devices", tc.body)
			if code != tc.wantCode || body != tc.wantText {
				t.Fatalf("got %d %q, want %d %q", code, body, tc.wantCode, tc.wantText)
			}
			if n := len(e.cloud.Calls()); n != tc.wantCalls {
				t.Errorf("cloud calls = %d, want %d", n, tc.wantCalls)
			}
			if _, body := e.do("GET", "/v1/devices", ""); body != "[]" {
				t.Errorf("devices after refusal = %s, want []", body)
			}
			if n := e.provisions(); n != 0 {
				t.Errorf("OnProvisioned calls = %d, want 0", n)
			}
		})
	}
}

// deviceFixture is an API with app 5 downloaded at c5 and two provisioned
// devices: plain (in the target, environment E=1) and marked (left out of
// the target, so awaiting a delete acknowledgement).
type deviceFixture struct {
	*testEnv
	plain, marked string
}

func newDeviceFixture(t testing.TB, mods ...func(*Options)) deviceFixture {
	t.Helper()
	e := newEnv(t, mods...)
	plain, marked := e.provision(5), e.provision(5)
	e.applyTarget(map[int64]map[string]string{5: {"APPCFG": "1"}}, map[string]int64{plain: 5}, map[string]string{"E": "1"})
	e.setCurrent(5, "c5")
	return deviceFixture{testEnv: e, plain: plain, marked: marked}
}

// DEV-GET-1 and the device object's exact shape.
func TestGetDevice(t *testing.T) {
	f := newDeviceFixture(t)
	code, body := f.do("GET", "/v1/devices/"+f.plain, "")
	if code != 200 {
		t.Fatalf("got %d %s, want 200", code, body)
	}
	want := fmt.Sprintf(`{"id":1,"uuid":"%s","appId":5,"device_type":"generic-amd64","logs_channel":null,"deviceId":"1001",`+
		`"is_online":null,"name":"n","status":"Provisioned","download_progress":null,"commit":null,"targetCommit":"c5",`+
		`"environment":{},"targetEnvironment":{"E":"1"},"config":{},"targetConfig":{}}`, f.plain)
	if body != want {
		t.Errorf("body =\n%s\nwant\n%s", body, want)
	}
	for _, tc := range []struct {
		name     string
		uuid     string
		wantCode int
		wantText string
	}{
		{"an unknown uuid is not found", "0123456789abcdef0123456789abcdef", 404, api.ErrTextDeviceNotFound},
		{"a device awaiting a delete acknowledgement is gone", f.marked, 410, api.ErrTextDeviceDeleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := f.do("GET", "/v1/devices/"+tc.uuid, "")
			if code != tc.wantCode || body != tc.wantText {
				t.Fatalf("got %d %q, want %d %q", code, body, tc.wantCode, tc.wantText)
			}
		})
	}
}

// DEV-LIST-1.
func TestListDevicesIncludesDevicesAwaitingDelete(t *testing.T) {
	f := newDeviceFixture(t)
	code, body := f.do("GET", "/v1/devices", "")
	if code != 200 {
		t.Fatalf("got %d, want 200", code)
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	var list []api.Device
	json.Unmarshal([]byte(body), &list)
	if len(list) != 2 || list[0].UUID != f.plain || list[1].UUID != f.marked {
		t.Fatalf("list = %s, want %s then %s", body, f.plain, f.marked)
	}
	wantKeys := "appId commit config deviceId device_type download_progress environment id is_online logs_channel name status targetCommit targetConfig targetEnvironment uuid"
	for i, m := range raw {
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if got := strings.Join(keys, " "); got != wantKeys {
			t.Errorf("device %d keys = %s, want %s", i, got, wantKeys)
		}
		for _, k := range []string{"environment", "targetEnvironment", "config", "targetConfig"} {
			if string(m[k]) == "null" {
				t.Errorf("device %d %s is null, want an object", i, k)
			}
		}
	}
}

// DEV-PUT-1, DEV-PUT-4, DEV-PUT-6.
func TestPutDevice(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		check     func(t *testing.T, d api.Device)
		wantPatch string // the outbox row for the cloud; "" for none
	}{
		{
			name: "status, is_online and commit are stored and queued for the cloud",
			body: `{"status":"Updating","is_online":true,"commit":"abc"}`,
			check: func(t *testing.T, d api.Device) {
				if d.Status != "Updating" || d.IsOnline == nil || !*d.IsOnline || d.Commit == nil || *d.Commit != "abc" {
					t.Errorf("device = %+v, want Updating, online, commit abc", d)
				}
			},
			wantPatch: `{"status":"Updating","is_online":true,"is_on__commit":"abc"}`,
		},
		{
			name: "is_online false is false, not 0",
			body: `{"is_online":false}`,
			check: func(t *testing.T, d api.Device) {
				if d.IsOnline == nil || *d.IsOnline {
					t.Errorf("is_online = %v, want false", d.IsOnline)
				}
			},
			wantPatch: `{"is_online":false}`,
		},
		{
			name: "environment and config are kept locally only",
			body: `{"environment":{"A":"1","n":2},"config":{"C":"x"}}`,
			check: func(t *testing.T, d api.Device) {
				if fmt.Sprint(d.Environment) != "map[A:1 n:2]" || fmt.Sprint(d.Config) != "map[C:x]" {
					t.Errorf("environment, config = %v, %v; want {A:1 n:2}, {C:x}", d.Environment, d.Config)
				}
			},
		},
		{
			name: "unknown members are ignored",
			body: `{"status":"Idle","env":{"x":1},"download_progress":50}`,
			check: func(t *testing.T, d api.Device) {
				if d.Status != "Idle" || len(d.Environment) != 0 || d.DownloadProgress != nil {
					t.Errorf("device = %+v, want status Idle and nothing else changed", d)
				}
			},
			wantPatch: `{"status":"Idle"}`,
		},
		{
			name: "whitespace around members is fine",
			body: " {\n \"status\" : \"Idle\" ,\t\"is_online\" : true }\n",
			check: func(t *testing.T, d api.Device) {
				if d.Status != "Idle" || d.IsOnline == nil || !*d.IsOnline {
					t.Errorf("device = %+v, want Idle, online", d)
				}
			},
			wantPatch: `{"status":"Idle","is_online":true}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newDeviceFixture(t)
			f.cloud.setFail(unreachable) // the cloud being down changes nothing
			code, body := f.do("PUT", "/v1/devices/"+f.plain, tc.body)
			if code != 200 {
				t.Fatalf("got %d %s, want 200", code, body)
			}
			tc.check(t, decodeDevice(t, body))
			tc.check(t, f.device(f.plain))
			rows := f.outbox(store.OutboxPatch)
			switch {
			case tc.wantPatch == "" && len(rows) > 0:
				t.Errorf("outbox = %s, want nothing", rows[0].Payload)
			case tc.wantPatch != "" && (len(rows) != 1 || string(rows[0].Payload) != tc.wantPatch || rows[0].CloudID != 1001):
				t.Errorf("outbox = %+v, want one row %s for cloud device 1001", rows, tc.wantPatch)
			}
			if got := fmt.Sprint(f.reports()); got != "["+f.plain+"]" {
				t.Errorf("OnDeviceReported calls = %s, want [%s]", got, f.plain)
			}
			// Only commit, environment and config change the hooks owed.
			wantTarget := strings.Contains(tc.body, `"commit"`) || strings.Contains(tc.body, `"environment"`) || strings.Contains(tc.body, `"config"`)
			if got := f.targetFieldsReported(); len(got) != 1 || got[0] != wantTarget {
				t.Errorf("OnDeviceReported targetFields = %v, want [%v]", got, wantTarget)
			}
		})
	}
}

// A PUT whose reported state equals the target acknowledges the update hook.
func TestPutMatchingTheTargetAcknowledgesTheUpdate(t *testing.T) {
	f := newDeviceFixture(t)
	ctx := context.Background()
	w, err := f.store.HookWorkFor(ctx, f.plain)
	if err != nil || w.Update == nil {
		t.Fatalf("before: update owed = %v (%v), want owed", w.Update != nil, err)
	}
	if code, body := f.do("PUT", "/v1/devices/"+f.plain, `{"commit":"c5","environment":{"E":"1"},"config":{}}`); code != 200 {
		t.Fatalf("got %d %s", code, body)
	}
	w, err = f.store.HookWorkFor(ctx, f.plain)
	if err != nil || w.Update != nil {
		t.Fatalf("after: update owed = %v (%v), want none", w.Update != nil, err)
	}
}

// DEV-PUT-2, DEV-PUT-3, DEV-PUT-5.
func TestPutDeviceRefusals(t *testing.T) {
	const unknown = "0123456789abcdef0123456789abcdef"
	type target int
	const (
		plain target = iota
		marked
		missing
	)
	for _, tc := range []struct {
		name     string
		who      target
		body     string
		wantCode int
		wantText string
	}{
		{"is_online as a string is refused", plain, `{"is_online":"true"}`, 400, api.ErrTextIsOnlineInvalid},
		{"is_online as a number is refused", plain, `{"is_online":1}`, 400, api.ErrTextIsOnlineInvalid},
		{"is_online null is refused", plain, `{"is_online":null}`, 400, api.ErrTextIsOnlineInvalid},
		{"an empty status is refused", plain, `{"status":""}`, 400, api.ErrTextStatusInvalid},
		{"a numeric status is refused", plain, `{"status":3}`, 400, api.ErrTextStatusInvalid},
		{"a null status is refused", plain, `{"status":null}`, 400, api.ErrTextStatusInvalid},
		{"an empty commit is refused", plain, `{"commit":""}`, 400, api.ErrTextCommitInvalid},
		{"an object commit is refused", plain, `{"commit":{}}`, 400, api.ErrTextCommitInvalid},
		{"an array environment is refused", plain, `{"environment":[]}`, 400, api.ErrTextEnvironmentInvalid},
		{"a string environment is refused", plain, `{"environment":"A=1"}`, 400, api.ErrTextEnvironmentInvalid},
		{"a null environment is refused", plain, `{"environment":null}`, 400, api.ErrTextEnvironmentInvalid},
		{"an array config is refused", plain, `{"config":["x"]}`, 400, api.ErrTextConfigInvalid},
		{"a valid field beside an invalid one changes nothing", plain, `{"status":"ok","config":1}`, 400, api.ErrTextConfigInvalid},
		{"an empty object has no attribute", plain, `{}`, 400, api.ErrTextNoAttributes},
		{"only unknown members have no attribute", plain, `{"foo":1}`, 400, api.ErrTextNoAttributes},
		{"an empty body has no attribute", plain, ``, 400, api.ErrTextNoAttributes},
		{"an unknown device is not found", missing, `{"status":"x"}`, 404, api.ErrTextDeviceNotFound},
		{"a device awaiting a delete acknowledgement is gone", marked, `{"status":"x"}`, 410, api.ErrTextDeviceDeleted},
		{"a bad body on an unknown device is 400: validation comes first", missing, `{"environment":[]}`, 400, api.ErrTextEnvironmentInvalid},
		{"a bad body on a marked device is 400", marked, `{"is_online":null}`, 400, api.ErrTextIsOnlineInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newDeviceFixture(t)
			uuid := map[target]string{plain: f.plain, marked: f.marked, missing: unknown}[tc.who]
			before := f.listBody()
			code, body := f.do("PUT", "/v1/devices/"+uuid, tc.body)
			if code != tc.wantCode || body != tc.wantText {
				t.Fatalf("got %d %q, want %d %q", code, body, tc.wantCode, tc.wantText)
			}
			if after := f.listBody(); after != before {
				t.Errorf("devices changed by a refused PUT:\nbefore %s\nafter  %s", before, after)
			}
			if rows := f.outbox(store.OutboxPatch); len(rows) != 0 {
				t.Errorf("outbox has %d rows after a refused PUT, want 0", len(rows))
			}
			if r := f.reports(); len(r) != 0 {
				t.Errorf("OnDeviceReported calls = %v, want none", r)
			}
		})
	}
}

func (e *testEnv) listBody() string {
	e.t.Helper()
	code, body := e.do("GET", "/v1/devices", "")
	if code != 200 {
		e.t.Fatalf("list: got %d %s", code, body)
	}
	return body
}

// DEV-LOG-1, DEV-LOG-2.
func TestPostLog(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want cloud.LogLine
	}{
		{"a message without timestamp gets the receive time in ms", `{"message":"hello"}`,
			cloud.LogLine{Message: "hello", Timestamp: testNow.UnixMilli()}},
		{"a given timestamp is kept", `{"message":"m","timestamp":1472142960}`,
			cloud.LogLine{Message: "m", Timestamp: 1472142960}},
		{"a fractional timestamp is truncated", `{"message":"m","timestamp":12.9}`,
			cloud.LogLine{Message: "m", Timestamp: 12}},
		{"isSystem is kept", `{"message":"m","timestamp":1,"isSystem":true}`,
			cloud.LogLine{Message: "m", Timestamp: 1, IsSystem: true}},
		{"an empty message is a message", `{"message":"","timestamp":1}`,
			cloud.LogLine{Message: "", Timestamp: 1}},
		{"unknown members are ignored", `{"message":"m","timestamp":1,"level":"info"}`,
			cloud.LogLine{Message: "m", Timestamp: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newDeviceFixture(t)
			code, body := f.do("POST", "/v1/devices/"+f.plain+"/logs", tc.body)
			if code != http.StatusAccepted || body != "" {
				t.Fatalf("got %d %q, want 202 and no body", code, body)
			}
			rows := f.outbox(store.OutboxLog)
			if len(rows) != 1 {
				t.Fatalf("outbox has %d log rows, want 1", len(rows))
			}
			var got cloud.LogLine
			if err := json.Unmarshal(rows[0].Payload, &got); err != nil {
				t.Fatal(err)
			}
			want := tc.want
			want.UUID = f.plain
			if got != want {
				t.Errorf("log line = %+v, want %+v", got, want)
			}
			f.mu.Lock()
			logged := fmt.Sprint(f.logged)
			f.mu.Unlock()
			if logged != "["+f.plain+"]" {
				t.Errorf("OnLogAccepted calls = %s, want [%s]", logged, f.plain)
			}
		})
	}
}

func TestPostLogRefusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		who      string // "plain", "marked" or a uuid
		body     string
		wantCode int
		wantText string
	}{
		{"a missing message is refused", "plain", `{"timestamp":1}`, 400, api.ErrTextMessageInvalid},
		{"a numeric message is refused", "plain", `{"message":5}`, 400, api.ErrTextMessageInvalid},
		{"a string timestamp is refused", "plain", `{"message":"m","timestamp":"1"}`, 400, api.ErrTextTimestampInvalid},
		{"a null timestamp is refused", "plain", `{"message":"m","timestamp":null}`, 400, api.ErrTextTimestampInvalid},
		{"a timestamp beyond int64 is refused", "plain", `{"message":"m","timestamp":1e300}`, 400, api.ErrTextTimestampInvalid},
		{"a string isSystem is refused", "plain", `{"message":"m","isSystem":"yes"}`, 400, api.ErrTextIsSystemInvalid},
		{"an unknown device is not found", "0123456789abcdef0123456789abcdef", `{"message":"m"}`, 404, api.ErrTextDeviceNotFound},
		{"a device awaiting a delete acknowledgement is gone", "marked", `{"message":"m"}`, 410, api.ErrTextDeviceDeleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newDeviceFixture(t)
			uuid := map[string]string{"plain": f.plain, "marked": f.marked}[tc.who]
			if uuid == "" {
				uuid = tc.who
			}
			code, body := f.do("POST", "/v1/devices/"+uuid+"/logs", tc.body)
			if code != tc.wantCode || body != tc.wantText {
				t.Fatalf("got %d %q, want %d %q", code, body, tc.wantCode, tc.wantText)
			}
			if rows := f.outbox(store.OutboxLog); len(rows) != 0 {
				t.Errorf("outbox has %d log rows, want 0", len(rows))
			}
		})
	}
}

func TestLogBufferDropsOldestAndCounts(t *testing.T) {
	f := newDeviceFixture(t, func(o *Options) { o.MaxLogLines = 2 })
	for i := 0; i < 5; i++ {
		if code, body := f.do("POST", "/v1/devices/"+f.plain+"/logs", fmt.Sprintf(`{"message":"m%d","timestamp":%d}`, i, i)); code != 202 {
			t.Fatalf("log %d: got %d %s", i, code, body)
		}
	}
	var msgs []string
	for _, r := range f.outbox(store.OutboxLog) {
		var l cloud.LogLine
		json.Unmarshal(r.Payload, &l)
		msgs = append(msgs, l.Message)
	}
	if got := fmt.Sprint(msgs); got != "[m3 m4]" {
		t.Errorf("buffered = %s, want [m3 m4]", got)
	}
	promtest.WantValue(t, "dropped counter", f.h.metrics.logsDropped, 3)
}
