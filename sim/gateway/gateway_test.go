package gateway_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/promreg/promtest"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
	"github.com/depharness/depharness/sim/supervisortest"
)

const (
	key   = "s3cret"
	appID = int64(13015)
)

func firmwareTar(t testing.TB, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range [][2]string{{"firmware.bin", content}, {".config", "hidden " + content}} {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f[1]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f[1]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type harness struct {
	t       *testing.T
	sup     *supervisortest.Server
	down    atomic.Bool // the supervisor drops connections
	supSrv  *httptest.Server
	hookSrv *httptest.Server
	fleet   *fleet.Fleet
	gw      *gateway.Gateway
	reg     *prometheus.Registry
	hc      *http.Client
	cancel  context.CancelFunc
	stop    func() // stops the running gateway and its fleet, waits for them
	runErr  chan error
}

type setup struct {
	profile  fleet.Profile
	policy   gateway.Policy
	expected func(int64, string) (string, bool)
	apps     []int64
	noRun    bool
	observer gateway.Observer
	ahead    int // ProvisionAhead; launch then waits for no device to be provisioned
}

func start(t *testing.T, s setup) *harness {
	t.Helper()
	w := &harness{t: t, sup: supervisortest.New(key), reg: prometheus.NewRegistry(), runErr: make(chan error, 1)}
	w.sup.SetApp(appID, "edgeApp1", "c1", firmwareTar(t, "one"))
	h := w.sup.Handler()
	w.supSrv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.down.Load() {
			if conn, _, err := rw.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		h.ServeHTTP(rw, r)
	}))
	t.Cleanup(w.supSrv.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	w.hc = &http.Client{Transport: tr}
	t.Cleanup(tr.CloseIdleConnections)
	w.launch(s)
	return w
}

// launch starts a gateway with a fleet of its own against w's supervisor
// (and a hook server of its own), as a process of the gateway app would.
func (w *harness) launch(s setup) {
	t := w.t
	t.Helper()
	c, err := client.New(client.Options{BaseURL: w.supSrv.URL, APIKey: key, HTTPClient: w.hc,
		Retry: client.Retry{MaxAttempts: -1, Base: time.Millisecond, Max: 20 * time.Millisecond, Rand: rand.New(rand.NewPCG(1, 1))}})
	if err != nil {
		t.Fatal(err)
	}
	logger := testkit.Logger(t, slog.LevelWarn)
	w.fleet, err = fleet.New(s.profile, fleet.Options{Logger: logger, RecordHistory: true})
	if err != nil {
		t.Fatal(err)
	}
	w.reg = prometheus.NewRegistry()
	w.gw, err = gateway.New(gateway.Options{Client: c, Fleet: w.fleet, Apps: s.apps, Policy: s.policy, Concurrency: 8, Logger: logger,
		Registerer: w.reg, Rand: rand.New(rand.NewPCG(2, 2)), ExpectedChecksum: s.expected,
		RetryBase: time.Millisecond, RetryMax: 20 * time.Millisecond, Observer: s.observer, ProvisionAhead: s.ahead})
	if err != nil {
		t.Fatal(err)
	}
	w.hookSrv = testkit.Server(t, w.gw.Handler())
	if s.noRun {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.runErr = make(chan error, 1)
	var wg sync.WaitGroup
	fl, gw, runErr := w.fleet, w.gw, w.runErr
	wg.Go(func() { fl.Run(ctx) })
	wg.Go(func() { runErr <- gw.Run(ctx) })
	w.stop = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
	})
	t.Cleanup(w.stop)
	if s.ahead == 0 {
		testkit.Eventually(t, "every device is provisioned", func() bool { return len(w.gw.UUIDs()) == s.profile.Count })
	}
}

// restart stops the running gateway (its Run returns nil, its hook server
// closes) and launches a new one against the same supervisor.
func (w *harness) restart(s setup) {
	w.t.Helper()
	w.stop()
	if err := <-w.runErr; err != nil {
		w.t.Fatalf("Run of the stopped gateway: got %v, want nil", err)
	}
	w.hookSrv.Close()
	w.launch(s)
}

// await waits on the supervisor's state.
func (w *harness) await(what string, cond func(*supervisortest.Server) bool) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.sup.Await(ctx, cond); err != nil {
		w.t.Fatalf("waiting until %s: %v", what, err)
	}
}

// mustHook sends a hook to the gateway and fails the test unless the
// gateway answers want.
func (w *harness) mustHook(method, path string, body any, want int) {
	w.t.Helper()
	if got := w.hook(method, path, body); got != want {
		w.t.Fatalf("%s %s: got %d, want %d", method, path, got, want)
	}
}

// awaitUpdate waits until the supervisor holds a report of uuid that pred
// accepts.
func (w *harness) awaitUpdate(what, uuid string, pred func(api.DeviceUpdate) bool) {
	w.t.Helper()
	w.await(what, func(s *supervisortest.Server) bool { return hasUpdate(s, uuid, pred) })
}

// awaitTarget waits until uuid is reported running tg.
func (w *harness) awaitTarget(what, uuid string, tg api.UpdateHook) {
	w.t.Helper()
	w.awaitUpdate(what, uuid, func(u api.DeviceUpdate) bool { return reportedTarget(u, tg) })
}

// hook sends a hook to the gateway and returns the answered status.
func (w *harness) hook(method, path string, body any) int {
	w.t.Helper()
	var rd *bytes.Reader
	if s, ok := body.(string); ok {
		rd = bytes.NewReader([]byte(s))
	} else {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.hookSrv.URL+path, rd)
	if err != nil {
		w.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.hc.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func target(commit string) api.UpdateHook {
	return api.UpdateHook{AppID: appID, Commit: commit, Environment: api.Vars{"LOG_LEVEL": "debug"}, Config: api.Vars{"RESIN_SUPERVISOR_DELTA": "1"}}
}

// reportedTarget: a PUT that reports the device runs t.
func reportedTarget(u api.DeviceUpdate, t api.UpdateHook) bool {
	return u.Status != nil && *u.Status == gateway.StatusIdle && u.Commit != nil && *u.Commit == t.Commit &&
		fmt.Sprint(u.Environment) == fmt.Sprint(t.Environment) && fmt.Sprint(u.Config) == fmt.Sprint(t.Config)
}

// reportedFailed: a PUT that reports the device's update failed.
func reportedFailed(u api.DeviceUpdate) bool {
	return u.Status != nil && *u.Status == gateway.StatusFailed
}

func hasUpdate(s *supervisortest.Server, uuid string, pred func(api.DeviceUpdate) bool) bool {
	for _, u := range s.Updates(uuid) {
		if pred(u) {
			return true
		}
	}
	return false
}

func counter(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

func quickProfile(n int) fleet.Profile {
	return fleet.Profile{Count: n, Seed: 1, FlashTime: fleet.Dist{Mean: fleet.Duration(5 * time.Millisecond)}}
}

func TestProvisionsEveryDeviceAndReportsItIdle(t *testing.T) {
	w := start(t, setup{profile: quickProfile(5)})
	uuids := w.gw.UUIDs()
	if got := len(w.sup.Devices()); got != 5 {
		t.Fatalf("got %d devices at the supervisor, want 5", got)
	}
	for _, u := range uuids {
		w.awaitUpdate("the device is reported idle and online", u, func(u api.DeviceUpdate) bool {
			return u.Status != nil && *u.Status == gateway.StatusIdle && u.IsOnline != nil && *u.IsOnline
		})
	}
}

// With ProvisionAhead 2 the gateway provisions two devices and waits: a
// device that reports its first update, or that is forgotten (a delete
// hook), lets one more be provisioned.
func TestProvisionAheadBoundsTheDevicesWaitingForTheirFirstUpdate(t *testing.T) {
	w := start(t, setup{profile: quickProfile(5), ahead: 2})
	provisioned := func(want int) {
		t.Helper()
		testkit.Eventually(t, fmt.Sprintf("%d devices provisioned", want), func() bool { return len(w.sup.Devices()) >= want })
		time.Sleep(100 * time.Millisecond) // time enough to provision one more, were it allowed
		if got := len(w.sup.Devices()); got != want {
			t.Fatalf("%d devices provisioned, want %d", got, want)
		}
	}
	provisioned(2)
	first := w.gw.UUIDs()[0]
	tg := target("c1")
	w.mustHook(http.MethodPut, "/v1/devices/"+first, tg, http.StatusOK)
	w.awaitTarget("the first device reports the target", first, tg)
	provisioned(3)
	// The second device is forgotten: its place is given back.
	w.mustHook(http.MethodDelete, "/v1/devices/"+w.gw.UUIDs()[1], nil, http.StatusOK)
	provisioned(4)
	// A second report of a commit by the first device gives back nothing
	// more.
	tg2 := target("c1")
	tg2.Environment = api.Vars{"LOG_LEVEL": "info"}
	w.mustHook(http.MethodPut, "/v1/devices/"+first, tg2, http.StatusOK)
	w.awaitTarget("the first device reports the second target", first, tg2)
	provisioned(4)
	for _, u := range w.gw.UUIDs()[1:] {
		w.mustHook(http.MethodPut, "/v1/devices/"+u, tg, http.StatusOK)
	}
	provisioned(5)
}

func TestAckPolicyAnswers200AndUpdatesInTheBackground(t *testing.T) {
	w := start(t, setup{profile: quickProfile(2), policy: gateway.PolicyAck})
	uuid := w.gw.UUIDs()[0]
	tg := target("c1")
	w.mustHook(http.MethodPut, "/v1/devices/"+uuid, tg, http.StatusOK)
	w.awaitTarget("the device reports the target", uuid, tg)
	ups := w.sup.Updates(uuid)
	if !hasUpdate(w.sup, uuid, func(u api.DeviceUpdate) bool { return u.Status != nil && *u.Status == gateway.StatusUpdating }) {
		t.Errorf("got reports %+v, want an Updating one before Idle", ups)
	}
	d, _ := w.gw.Device(uuid)
	if s := d.Snapshot(); s.State != fleet.StateRunning || s.Commit != "c1" {
		t.Errorf("got device %+v, want running c1", s)
	}
	if got := counter(t, w.gw.Metrics().HooksReceived.WithLabelValues("update", "200")); got != 1 {
		t.Errorf("got %v update hooks answered 200, want 1", got)
	}
	testkit.Eventually(t, "the device counts as converged", func() bool { return w.gw.Stats().Converged == 1 })
	var h dto.Metric
	if err := w.gw.Metrics().UpdateDuration.Write(&h); err != nil {
		t.Fatal(err)
	}
	if got := h.GetHistogram().GetSampleCount(); got != 1 {
		t.Errorf("got %d update durations observed, want 1", got)
	}
	// The other device got no hook: not converged, still idle.
	if st := w.gw.Stats(); st.States[fleet.StateIdle] != 1 || st.States[fleet.StateRunning] != 1 {
		t.Errorf("got states %v, want one idle and one running", st.States)
	}
}

func TestAcceptedPolicyAnswers202AndReportsWhenFlashed(t *testing.T) {
	w := start(t, setup{profile: quickProfile(1), policy: gateway.PolicyAccepted})
	uuid := w.gw.UUIDs()[0]
	tg := target("c1")
	w.mustHook(http.MethodPut, "/v1/devices/"+uuid, tg, http.StatusAccepted)
	w.awaitTarget("the device reports commit, environment and config of the target", uuid, tg)
	dev := w.sup.Devices()[0]
	if dev.Commit == nil || *dev.Commit != "c1" || dev.Environment["LOG_LEVEL"] != "debug" || dev.Config["RESIN_SUPERVISOR_DELTA"] != "1" {
		t.Errorf("got supervisor's device %+v, want c1 with the target's environment and config", dev)
	}
	// The supervisor resends until it sees the report; a resend after the
	// device reached the target is answered and reported again, not flashed.
	n := len(w.sup.Updates(uuid))
	w.mustHook(http.MethodPut, "/v1/devices/"+uuid, tg, http.StatusAccepted)
	w.await("the resend is reported again", func(s *supervisortest.Server) bool { return len(s.Updates(uuid)) > n })
	if got := counter(t, w.gw.Metrics().Flashes.WithLabelValues("ok")); got != 1 {
		t.Errorf("got %v flashes, want 1", got)
	}
	if u := w.sup.Updates(uuid)[n]; !reportedTarget(u, tg) {
		t.Errorf("got re-report %+v, want the target", u)
	}
}

func TestANewerTargetIsFlashedAfterTheCurrentOne(t *testing.T) {
	w := start(t, setup{profile: quickProfile(1)})
	uuid := w.gw.UUIDs()[0]
	w.sup.SetApp(appID, "edgeApp1", "c2", firmwareTar(t, "two"))
	t1, t2 := target("c1"), target("c2")
	t2.Environment = api.Vars{}
	w.hook(http.MethodPut, "/v1/devices/"+uuid, t1)
	w.hook(http.MethodPut, "/v1/devices/"+uuid, t2)
	w.awaitTarget("the device reports c2", uuid, t2)
	if env := w.sup.Devices()[0].Environment; len(env) != 0 {
		t.Errorf("got environment %v, want {} (the target's)", env)
	}
}

func TestAVariablesOnlyChangeIsAppliedWithoutAFlash(t *testing.T) {
	w := start(t, setup{profile: quickProfile(1)})
	uuid := w.gw.UUIDs()[0]
	t1 := target("c1")
	w.hook(http.MethodPut, "/v1/devices/"+uuid, t1)
	w.awaitTarget("the device reports c1", uuid, t1)
	t2 := target("c1")
	t2.Environment = api.Vars{"LOG_LEVEL": "info", "NEW": "1"}
	n := len(w.sup.Updates(uuid))
	w.hook(http.MethodPut, "/v1/devices/"+uuid, t2)
	w.awaitTarget("the device reports the new environment", uuid, t2)
	m := w.gw.Metrics()
	if got := counter(t, m.Flashes.WithLabelValues("ok")); got != 1 {
		t.Errorf("got %v flashes, want 1 (the commit's)", got)
	}
	if got := counter(t, m.Reconfigurations); got != 1 {
		t.Errorf("got %v reconfigurations, want 1", got)
	}
	if got := counter(t, m.AssetDownloads); got != 1 {
		t.Errorf("got %v asset downloads, want 1", got)
	}
	for _, u := range w.sup.Updates(uuid)[n:] {
		if u.Status != nil && *u.Status == gateway.StatusUpdating {
			t.Errorf("got report %+v, want no Updating for a variables-only change", u)
		}
	}
	d, _ := w.gw.Device(uuid)
	if s := d.Snapshot(); s.Environment["NEW"] != "1" || s.Commit != "c1" {
		t.Errorf("got device %+v, want c1 with the new environment", s)
	}
}

func TestDeleteForgetsTheDevice(t *testing.T) {
	w := start(t, setup{profile: quickProfile(2)})
	uuid := w.gw.UUIDs()[0]
	cases := []struct {
		name   string
		method string
		path   string
		body   any
		want   int
	}{
		{"delete of a managed device answers 200", http.MethodDelete, "/v1/devices/" + uuid, "", http.StatusOK},
		{"an update hook of a forgotten device answers 404", http.MethodPut, "/v1/devices/" + uuid, target("c1"), http.StatusNotFound},
		{"a restart hook of a forgotten device answers 404", http.MethodPut, "/v1/devices/" + uuid + "/restart", "", http.StatusNotFound},
		{"a second delete answers 200", http.MethodDelete, "/v1/devices/" + uuid, "", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := w.hook(tc.method, tc.path, tc.body); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
	if got := w.gw.UUIDs(); len(got) != 1 || got[0] == uuid {
		t.Errorf("got managed %v, want only the other device", got)
	}
	if got := w.gw.Stats().Managed; got != 1 {
		t.Errorf("got %d managed devices, want 1", got)
	}
}

func TestHookServerAnswersMistakes(t *testing.T) {
	w := start(t, setup{profile: quickProfile(1)})
	uuid := w.gw.UUIDs()[0]
	cases := []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"a malformed update body answers 400", http.MethodPut, "/v1/devices/" + uuid, "{not json", http.StatusBadRequest},
		{"an update of an unknown device answers 404", http.MethodPut, "/v1/devices/0123456789abcdef0123456789abcdef", target("c1"), http.StatusNotFound},
		{"an unknown path answers 404", http.MethodGet, "/v2/whatever", "", http.StatusNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := w.hook(tc.method, tc.path, tc.body); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestRestartRebootsTheDeviceAndLogsIt(t *testing.T) {
	p := quickProfile(1)
	p.RebootTime = fleet.Dist{Mean: fleet.Duration(10 * time.Millisecond)}
	w := start(t, setup{profile: p})
	uuid := w.gw.UUIDs()[0]
	w.mustHook(http.MethodPut, "/v1/devices/"+uuid+"/restart", "", http.StatusOK)
	w.await("the restart's log line reaches the supervisor", func(s *supervisortest.Server) bool {
		for _, l := range s.Logs(uuid) {
			if l.Message == "Device restarted" && l.IsSystem != nil && *l.IsSystem && l.Timestamp != nil {
				return true
			}
		}
		return false
	})
	d, _ := w.gw.Device(uuid)
	w.await("the device is reported online after the reboot", func(s *supervisortest.Server) bool {
		ups := s.Updates(uuid)
		last := ups[len(ups)-1]
		return last.IsOnline != nil && *last.IsOnline && d.Snapshot().Online
	})
	var restarts int
	for _, e := range w.fleet.History() {
		if e.Kind == fleet.EventRestart {
			restarts++
		}
	}
	if restarts != 1 {
		t.Errorf("got %d restarts of the device, want 1", restarts)
	}
	if got := counter(t, w.gw.Metrics().HooksReceived.WithLabelValues("restart", "200")); got != 1 {
		t.Errorf("got %v restart hooks answered 200, want 1", got)
	}
}

func TestAssetsAreDownloadedOncePerCommitUnderConcurrentHooks(t *testing.T) {
	const n = 24
	w := start(t, setup{profile: quickProfile(n), policy: gateway.PolicyAccepted})
	uuids := w.gw.UUIDs()
	for _, commit := range []string{"c1", "c2"} {
		if commit == "c2" {
			w.sup.SetApp(appID, "edgeApp1", "c2", firmwareTar(t, "two"))
		}
		tg := target(commit)
		var wg sync.WaitGroup
		for _, u := range uuids {
			for range 3 { // a hook storm: every hook three times at once
				wg.Go(func() {
					if got := w.hook(http.MethodPut, "/v1/devices/"+u, tg); got != http.StatusAccepted {
						t.Errorf("got %d, want 202", got)
					}
				})
			}
		}
		wg.Wait()
		testkit.Eventually(t, "every device converged on "+commit, func() bool { return w.gw.Stats().Converged == n })
		if got := w.sup.AssetGets(appID, commit); got != 1 {
			t.Errorf("got %d downloads of %s, want 1", got, commit)
		}
	}
	if got := counter(t, w.gw.Metrics().AssetDownloads); got != 2 {
		t.Errorf("got asset_downloads_total %v, want 2", got)
	}
}

func TestChecksumMismatchReportsFailure(t *testing.T) {
	wrong := strings.Repeat("ab", 32)
	w := start(t, setup{profile: quickProfile(1), policy: gateway.PolicyAccepted,
		expected: func(app int64, commit string) (string, bool) { return wrong, app == appID && commit == "c1" }})
	uuid := w.gw.UUIDs()[0]
	tg := target("c1")
	w.hook(http.MethodPut, "/v1/devices/"+uuid, tg)
	w.awaitUpdate("the device reports Failed", uuid, reportedFailed)
	d, _ := w.gw.Device(uuid)
	if s := d.Snapshot(); s.State != fleet.StateFailed || !strings.Contains(s.Failure, "checksum mismatch") {
		t.Errorf("got device %+v, want failed with a checksum mismatch", s)
	}
	if hasUpdate(w.sup, uuid, func(u api.DeviceUpdate) bool { return u.Commit != nil }) {
		t.Error("got a commit reported, want none: the firmware was refused")
	}
	// The supervisor's resend is answered and reported Failed again
	// without flashing the same bad firmware a second time.
	n := len(w.sup.Updates(uuid))
	w.hook(http.MethodPut, "/v1/devices/"+uuid, tg)
	w.await("the resend is reported", func(s *supervisortest.Server) bool { return len(s.Updates(uuid)) > n })
	if got := counter(t, w.gw.Metrics().Flashes.WithLabelValues("checksum_mismatch")); got != 1 {
		t.Errorf("got %v checksum mismatches, want 1 (no second flash)", got)
	}
	if got := w.gw.Stats().Converged; got != 0 {
		t.Errorf("got %d converged, want 0", got)
	}
}

func TestMatchingExpectedChecksumIsFlashed(t *testing.T) {
	good := fleet.ChecksumFiles(map[string][]byte{"firmware.bin": []byte("one"), ".config": []byte("hidden one")})
	w := start(t, setup{profile: quickProfile(1), expected: func(int64, string) (string, bool) { return good, true }})
	uuid := w.gw.UUIDs()[0]
	tg := target("c1")
	w.hook(http.MethodPut, "/v1/devices/"+uuid, tg)
	w.awaitTarget("the device reports the target", uuid, tg)
}

func TestFlakyFlashesAreRetriedThenReportedFailed(t *testing.T) {
	p := quickProfile(1)
	p.FailureProbability = 1
	w := start(t, setup{profile: p})
	uuid := w.gw.UUIDs()[0]
	w.hook(http.MethodPut, "/v1/devices/"+uuid, target("c1"))
	testkit.Eventually(t, "three flash attempts failed", func() bool {
		return counter(t, w.gw.Metrics().Flashes.WithLabelValues("flash_failed")) == 3
	})
	w.awaitUpdate("the device reports Failed", uuid, reportedFailed)
	if got := w.sup.AssetGets(appID, "c1"); got != 1 {
		t.Errorf("got %d downloads, want 1 (retries reuse the download)", got)
	}
}

func TestLogsAreForwardedAtTheFleetsRate(t *testing.T) {
	p := quickProfile(3)
	p.LogRate = 200
	w := start(t, setup{profile: p})
	for _, uuid := range w.gw.UUIDs() {
		w.await("device logs reach the supervisor", func(s *supervisortest.Server) bool { return len(s.Logs(uuid)) >= 5 })
		for _, l := range w.sup.Logs(uuid)[:5] {
			if !strings.Contains(l.Message, "sensor reading") || l.Timestamp == nil || l.IsSystem != nil {
				t.Errorf("got log %+v, want a sensor line with a timestamp", l)
			}
		}
	}
	testkit.Eventually(t, "logs_forwarded_total counts the 15 lines", func() bool { return counter(t, w.gw.Metrics().LogsForwarded) >= 15 })
}

func TestUpdatesWaitForOfflineDevices(t *testing.T) {
	p := quickProfile(1)
	p.Offline = fleet.Churn{Probability: 1, Interval: fleet.Duration(20 * time.Millisecond), Duration: fleet.Dist{Mean: fleet.Duration(30 * time.Millisecond)}}
	w := start(t, setup{profile: p})
	uuid := w.gw.UUIDs()[0]
	w.awaitUpdate("the device is reported offline", uuid, func(u api.DeviceUpdate) bool { return u.IsOnline != nil && !*u.IsOnline })
	tg := target("c1")
	w.hook(http.MethodPut, "/v1/devices/"+uuid, tg)
	w.awaitTarget("the device reports the target", uuid, tg)
}

func TestSurvivesASupervisorOutage(t *testing.T) {
	w := start(t, setup{profile: quickProfile(4)})
	w.down.Store(true)
	tg := target("c1")
	for _, u := range w.gw.UUIDs() {
		w.mustHook(http.MethodPut, "/v1/devices/"+u, tg, http.StatusOK)
	}
	w.sup.FailNext(6, http.StatusServiceUnavailable)
	before := w.sup.Requests()
	w.down.Store(false)
	testkit.Eventually(t, "every device converged after the outage", func() bool { return w.gw.Stats().Converged == 4 })
	if w.sup.Requests() <= before+6 {
		t.Errorf("got %d requests after the outage, want more than the 6 failed ones", w.sup.Requests()-before)
	}
}

func TestRunFailsForAnAppTheSupervisorRefuses(t *testing.T) {
	w := start(t, setup{profile: quickProfile(1), apps: []int64{999}, noRun: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := w.gw.Run(ctx)
	if !client.IsBadRequest(err) {
		t.Fatalf("got %v, want the supervisor's 400", err)
	}
}

func TestProvisionsIntoEveryListedAppWhenNoneIsGiven(t *testing.T) {
	w := start(t, setup{profile: quickProfile(0), noRun: true})
	w.sup.SetApp(appID+1, "edgeApp2", "d1", firmwareTar(t, "x"))
	f, err := fleet.New(quickProfile(4), fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := client.New(client.Options{BaseURL: w.supSrv.URL, APIKey: key, HTTPClient: w.hc})
	gw, err := gateway.New(gateway.Options{Client: c, Fleet: f})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	testkit.Eventually(t, "four devices are provisioned", func() bool { return len(gw.UUIDs()) == 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: got %v, want nil after cancel", err)
	}
	perApp := map[int64]int{}
	for _, d := range w.sup.Devices() {
		perApp[d.AppID]++
	}
	if perApp[appID] != 2 || perApp[appID+1] != 2 {
		t.Errorf("got devices per app %v, want 2 and 2", perApp)
	}
}

func TestMetricsAreLintClean(t *testing.T) {
	w := start(t, setup{profile: quickProfile(2)})
	w.hook(http.MethodPut, "/v1/devices/"+w.gw.UUIDs()[0], target("c1"))
	testkit.Eventually(t, "one device converged", func() bool { return w.gw.Stats().Converged == 1 })
	promtest.CheckHygiene(t, w.reg)
	want := `
# HELP depharness_gateway_converged_devices Managed devices whose reported state equals their latest target.
# TYPE depharness_gateway_converged_devices gauge
depharness_gateway_converged_devices 1
# HELP depharness_gateway_managed_devices Devices provisioned or adopted and not deleted.
# TYPE depharness_gateway_managed_devices gauge
depharness_gateway_managed_devices 2
`
	if err := testutil.GatherAndCompare(w.reg, strings.NewReader(want), "depharness_gateway_converged_devices", "depharness_gateway_managed_devices"); err != nil {
		t.Error(err)
	}
}

func TestNoGoroutineLeftAfterRunReturns(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("busy run", func(t *testing.T) {
		p := quickProfile(6)
		p.LogRate = 100
		p.RebootTime = fleet.Dist{Mean: fleet.Duration(time.Millisecond)}
		p.Offline = fleet.Churn{Probability: 0.5, Interval: fleet.Duration(5 * time.Millisecond), Duration: fleet.Dist{Mean: fleet.Duration(5 * time.Millisecond)}}
		w := start(t, setup{profile: p, policy: gateway.PolicyAccepted})
		for _, u := range w.gw.UUIDs() {
			w.hook(http.MethodPut, "/v1/devices/"+u, target("c1"))
			w.hook(http.MethodPut, "/v1/devices/"+u+"/restart", "")
		}
		w.hook(http.MethodDelete, "/v1/devices/"+w.gw.UUIDs()[0], "")
		w.down.Store(true) // hooks keep coming while the supervisor is away
		for _, u := range w.gw.UUIDs() {
			w.hook(http.MethodPut, "/v1/devices/"+u, target("c1"))
		}
		w.cancel()
		select {
		case err := <-w.runErr:
			if err != nil {
				t.Errorf("Run: got %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of cancel")
		}
	})
	// The subtest's cleanups closed the servers and idle connections.
	testkit.Eventually(t, fmt.Sprintf("goroutines are back to %d", before), func() bool { return runtime.NumGoroutine() <= before })
}

func TestEveryLabelledCounterStartsAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	gateway.NewMetrics(reg)
	for name, labels := range map[string][]map[string]string{
		"depharness_gateway_reports_total":        {{"result": "ok"}, {"result": "error"}},
		"depharness_gateway_flashes_total":        {{"result": "ok"}, {"result": "flash_failed"}, {"result": "checksum_mismatch"}, {"result": "bad_firmware"}},
		"depharness_gateway_errors_total":         {{"op": "provision"}, {"op": "download"}, {"op": "flash"}, {"op": "report"}, {"op": "log"}, {"op": "adopt"}},
		"depharness_gateway_hooks_received_total": {{"kind": "update", "answer": "200"}, {"kind": "update", "answer": "202"}, {"kind": "restart", "answer": "200"}, {"kind": "delete", "answer": "200"}},
	} {
		for _, want := range labels {
			if s := promtest.Series(promtest.Gather(t, reg), name, want); len(s) != 1 || s[0].GetCounter().GetValue() != 0 {
				t.Errorf("%s%v: no series at 0 before any event, want one", name, want)
			}
		}
	}
}
