package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/syncbuf"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/store"
	"github.com/depharness/depharness/proxy/violation"
	"github.com/prometheus/client_golang/prometheus"
)

const testKey = "sup3r-secret-api-key"

// testNow is the API clock in tests.
var testNow = time.Date(2026, 5, 6, 7, 8, 9, 123e6, time.UTC)

// fakeCloud provisions devices with sequential ids, or fails as told.
type fakeCloud struct {
	mu     sync.Mutex
	nextID int64
	fail   error // returned by Provision when set
	calls  []provisionCall
}

type provisionCall struct {
	AppID      int64
	DeviceType string
	UUID       string
}

func (c *fakeCloud) Provision(ctx context.Context, appID int64, deviceType, uuid string) (cloud.Device, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, provisionCall{appID, deviceType, uuid})
	if c.fail != nil {
		return cloud.Device{}, c.fail
	}
	c.nextID++
	id := 1000 + c.nextID
	return cloud.Device{ID: id, UUID: uuid, DeviceName: fmt.Sprintf("device-%d", id), DeviceType: deviceType,
		BelongsToApplication: cloud.Ref{ID: appID}}, nil
}

// PatchDevice fails as told, else takes the patch (only the violation
// put-cloud-fail-500 patches from the API).
func (c *fakeCloud) PatchDevice(ctx context.Context, id int64, patch cloud.DevicePatch) error {
	return locked(&c.mu, func() error { return c.fail })
}

func (c *fakeCloud) setFail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = err
}

func (c *fakeCloud) Calls() []provisionCall {
	return locked(&c.mu, func() []provisionCall { return slices.Clone(c.calls) })
}

// fakeAssets serves a fixed body as the tar, or fails as told.
type fakeAssets struct {
	mu    sync.Mutex
	fail  error
	panic bool
	calls []string // "appID/commit/image"
}

const fakeTar = "fake tar bytes"

func (a *fakeAssets) Serve(w http.ResponseWriter, r *http.Request, appID int64, commit, image string) error {
	a.mu.Lock()
	a.calls = append(a.calls, fmt.Sprintf("%d/%s/%s", appID, commit, image))
	fail, pnc := a.fail, a.panic
	a.mu.Unlock()
	if pnc {
		panic("assets exploded")
	}
	if fail != nil {
		return fail
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("ETag", `"x"`)
	io.WriteString(w, fakeTar)
	return nil
}

func (a *fakeAssets) Calls() []string {
	return locked(&a.mu, func() []string { return slices.Clone(a.calls) })
}

// testEnv is the API over a real store in a temporary directory, served on
// a loopback test server.
type testEnv struct {
	t        testing.TB
	store    *store.Store
	h        *Handler
	srv      *httptest.Server
	reg      *prometheus.Registry
	cloud    *fakeCloud
	assets   *fakeAssets
	logs     *syncBuffer
	mu       sync.Mutex
	reported []string
	// targetReports are the targetFields of the OnDeviceReported calls.
	targetReports []bool
	logged        []string
	provs         int
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and the test.
type syncBuffer = syncbuf.Buffer

// newEnv starts an API; mods adjust the options before New.
func newEnv(t testing.TB, mods ...func(*Options)) *testEnv {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	e := &testEnv{t: t, store: st, reg: prometheus.NewRegistry(), cloud: &fakeCloud{}, assets: &fakeAssets{}, logs: &syncBuffer{}}
	opts := Options{
		Store: st, Cloud: e.cloud, Assets: e.assets, APIKey: testKey,
		OnProvisioned: func() { e.mu.Lock(); e.provs++; e.mu.Unlock() },
		OnDeviceReported: func(uuid string, targetFields bool) {
			e.mu.Lock()
			e.reported = append(e.reported, uuid)
			e.targetReports = append(e.targetReports, targetFields)
			e.mu.Unlock()
		},
		OnLogAccepted: func(uuid string) {
			e.mu.Lock()
			e.logged = append(e.logged, uuid)
			e.mu.Unlock()
		},
		Logger:     slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: e.reg,
		Now:        func() time.Time { return testNow },
		Rand:       rand.NewChaCha8([32]byte{1}),
	}
	for _, m := range mods {
		m(&opts)
	}
	if e.h, err = New(opts); err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = testkit.Server(t, e.h)
	return e
}

// withViolations enables the named violations.
func withViolations(names ...string) func(*Options) {
	return func(o *Options) {
		o.Violations = violation.Set{}
		for _, n := range names {
			o.Violations[n] = true
		}
	}
}

// do sends a request with the key in the query (unless path already has a
// query or noKey) and returns status and body.
func (e *testEnv) do(method, path, body string) (int, string) {
	e.t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return e.raw(method, path+sep+"apikey="+testKey, body, nil)
}

// raw sends a request as given.
func (e *testEnv) raw(method, path, body string, hdr http.Header) (int, string) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := testkit.NewRequest(e.t, method, e.srv.URL+path, rd)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, b := testkit.Do(e.t, e.srv.Client(), req)
	return resp.StatusCode, string(b)
}

// provision provisions a device of appID through the API and returns its uuid.
func (e *testEnv) provision(appID int64) string {
	e.t.Helper()
	code, body := e.do("POST", "/v1/devices", fmt.Sprintf(`{"appId":%d}`, appID))
	if code != http.StatusCreated {
		e.t.Fatalf("provision: got %d %s, want 201", code, body)
	}
	var pr api.ProvisionResponse
	if err := json.Unmarshal([]byte(body), &pr); err != nil {
		e.t.Fatal(err)
	}
	return pr.UUID
}

// applyTarget applies a target naming apps and devices (uuid → app), with
// every app on commit "c<id>" and image "reg/app<id>@sha256:00".
func (e *testEnv) applyTarget(apps map[int64]map[string]string, devices map[string]int64, env map[string]string) {
	e.t.Helper()
	var t store.Target
	for id, cfg := range apps {
		t.Apps = append(t.Apps, store.TargetApp{ID: id, Name: fmt.Sprintf("app%d", id), ParentApp: 1, Config: cfg,
			Commit: fmt.Sprintf("c%d", id), Image: fmt.Sprintf("reg/app%d@sha256:00", id)})
	}
	for uuid, app := range devices {
		t.Devices = append(t.Devices, store.TargetDevice{UUID: uuid, AppID: app, Name: "n", Environment: env})
	}
	e.applyRaw(t)
}

// applyRaw applies t as a poll that started after every device was created:
// devices absent from t are marked for deletion.
func (e *testEnv) applyRaw(t store.Target) {
	e.t.Helper()
	if _, err := e.store.ApplyTarget(context.Background(), t, time.Now().Add(time.Minute)); err != nil {
		e.t.Fatalf("ApplyTarget: %v", err)
	}
}

// setCurrent marks the app's commit downloaded.
func (e *testEnv) setCurrent(appID int64, commit string) {
	e.t.Helper()
	if err := e.store.SetAppCurrentCommit(context.Background(), appID, commit); err != nil {
		e.t.Fatalf("SetAppCurrentCommit: %v", err)
	}
}

// device reads a device from the API and decodes it strictly.
func (e *testEnv) device(uuid string) api.Device {
	e.t.Helper()
	code, body := e.do("GET", "/v1/devices/"+uuid, "")
	if code != http.StatusOK {
		e.t.Fatalf("GET device %s: got %d %s, want 200", uuid, code, body)
	}
	return decodeDevice(e.t, body)
}

func decodeDevice(t testing.TB, body string) api.Device {
	t.Helper()
	var d api.Device
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decode device %s: %v", body, err)
	}
	return d
}

func (e *testEnv) outbox(kind store.OutboxKind) []store.OutboxRow {
	e.t.Helper()
	rows, err := e.store.NextOutbox(context.Background(), kind, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	return rows
}

func (e *testEnv) reports() []string {
	return locked(&e.mu, func() []string { return slices.Clone(e.reported) })
}

func (e *testEnv) targetFieldsReported() []bool {
	return locked(&e.mu, func() []bool { return slices.Clone(e.targetReports) })
}

func (e *testEnv) provisions() int {
	return locked(&e.mu, func() int { return e.provs })
}

// rejected is the error a cloud that refuses gives.
var rejected = &cloudclient.StatusError{Call: cloudclient.CallProvision, Code: 400, Body: "not a dependent app"}

// unreachable is the error of a cloud that cannot be reached.
var unreachable = &cloudclient.TransportError{Call: cloudclient.CallProvision, Err: errors.New("connection refused")}

// locked returns what read returns with mu held.
func locked[T any](mu *sync.Mutex, read func() T) T {
	mu.Lock()
	defer mu.Unlock()
	return read()
}
