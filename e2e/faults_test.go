package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/client"
)

// supervisor is a client of the proxy's API on its current published port.
func (w *world) supervisor(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{BaseURL: w.ProxyURL(), APIKey: supervisorKey, KeyMode: client.KeyInHeader})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProxyKeepsServingAndQueuesReportsWhileTheCloudIsOffTheNetwork takes
// the cloud container off the network: the proxy keeps answering its API
// from its own store, accepts state reports and log lines (DEV-PUT-6,
// DEV-LOG-2), refuses only what needs the cloud (provisioning: 503), and
// delivers everything, in order and exactly once, when the cloud is back.
func TestProxyKeepsServingAndQueuesReportsWhileTheCloudIsOffTheNetwork(t *testing.T) {
	requireDocker(t)
	// A cloud off the network does not refuse connections: calls on a kept
	// connection wait, and CLOUD_TIMEOUT is how soon the proxy gives up
	// on them and queues.
	w := startWorld(t, worldOptions{ProxyEnv: map[string]string{"CLOUD_TIMEOUT": "3s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sup := w.supervisor(t)
	var uuids []string
	for range 3 {
		p, err := sup.Provision(ctx, w.App.ID, "")
		if err != nil {
			t.Fatalf("provision before the outage: %v", err)
		}
		uuids = append(uuids, p.UUID)
	}

	w.Cloud.Disconnect(t)
	outage := time.Now()

	// The proxy answers from its store.
	if err := sup.Ping(ctx); err != nil {
		t.Fatalf("ping during the outage: %v", err)
	}
	ds, err := sup.Devices(ctx)
	if err != nil {
		t.Fatalf("GET /v1/devices during the outage: %v", err)
	}
	if len(ds) != len(uuids) {
		t.Errorf("devices during the outage: got %d, want %d", len(ds), len(uuids))
	}
	// Reports and logs are accepted and kept: three successive statuses
	// per device (the cloud must end with the last) and log lines.
	const linesPerDevice = 20
	status := "e2e-reported-during-outage-3"
	online := true
	for _, u := range uuids {
		for i := 1; i <= 3; i++ {
			st := fmt.Sprintf("e2e-reported-during-outage-%d", i)
			if _, err := sup.UpdateDevice(ctx, u, api.DeviceUpdate{Status: &st, IsOnline: &online}); err != nil {
				t.Fatalf("PUT /v1/devices/%s during the outage: got %v, want 200", u, err)
			}
		}
		for i := range linesPerDevice {
			if err := sup.Log(ctx, u, api.LogEntry{Message: fmt.Sprintf("%s line %02d", u[:7], i)}); err != nil {
				t.Fatalf("POST logs during the outage: got %v, want 202", err)
			}
		}
	}
	// Provisioning needs the cloud: 503, not a hang and not a 500.
	if _, err := sup.Provision(ctx, w.App.ID, ""); client.StatusCode(err) != http.StatusServiceUnavailable {
		t.Errorf("provision during the outage: got %v, want 503", err)
	}
	// Stay off until the proxy has failed to deliver both a patch and a
	// log batch (so they are queued, not merely in flight), while it keeps
	// answering its API.
	metrics := w.Proxy.URL(t, proxyMetricsPort) + "/metrics"
	failedCalls := func() (patch, logs float64) {
		return metricSum(t, metrics, "depharness_proxy_cloud_requests_total", map[string]string{"call": "patch", "code": "error"}),
			metricSum(t, metrics, "depharness_proxy_cloud_requests_total", map[string]string{"call": "logs", "code": "error"})
	}
	var failedPatches, failedLogs float64
	awaitCond(t, 90*time.Second, "failed patch and log deliveries during the outage", func() (bool, string) {
		if err := sup.Ping(ctx); err != nil {
			t.Fatalf("ping during the outage: %v", err)
		}
		failedPatches, failedLogs = failedCalls()
		return failedPatches > 0 && failedLogs > 0 && time.Since(outage) > 3*time.Second,
			fmt.Sprintf("%v failed patch calls, %v failed log calls after %s", failedPatches, failedLogs, time.Since(outage).Round(time.Millisecond))
	})

	w.Cloud.Connect(t)
	back := time.Now()
	// The published port changes when the container rejoins the network.
	w.Ctl.BaseURL = w.Cloud.URL(t, cloudPort)
	awaitCond(t, time.Minute, "reports and logs delivered after the outage", func() (bool, string) {
		var waiting []string
		for _, u := range uuids {
			d, err := w.Ctl.Device(ctx, u)
			if err != nil {
				return false, err.Error()
			}
			if d.Status != status || !d.IsOnline || d.LogCount < linesPerDevice {
				waiting = append(waiting, fmt.Sprintf("%.7s status=%q online=%v logs=%d", u, d.Status, d.IsOnline, d.LogCount))
			}
		}
		return len(waiting) == 0, strings.Join(waiting, "; ")
	})
	t.Logf("measured: outage %s with %v failed patch and %v failed log calls; everything delivered %s after the cloud came back",
		back.Sub(outage).Round(time.Millisecond), failedPatches, failedLogs, time.Since(back).Round(time.Millisecond))
	for _, u := range uuids {
		lines, err := w.Ctl.Logs(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range lines {
			got = append(got, l.Message)
		}
		var want []string
		for i := range linesPerDevice {
			want = append(want, fmt.Sprintf("%s line %02d", u[:7], i))
		}
		if !slices.Equal(got, want) {
			t.Errorf("log lines of %.7s in the cloud: got %q, want %q (in order, exactly once)", u, got, want)
		}
	}
	if _, err := sup.Provision(ctx, w.App.ID, ""); err != nil {
		t.Errorf("provision after the outage: %v", err)
	}
}

// TestUpdateHooksWaitForAnImageTheRegistryCannotServe pushes a release
// whose image sits in the registry while the registry container is off the
// network: the proxy cannot pull it, so no device is told to update
// (HOOK-UPD-2), the app keeps its previous commit and the new commit's
// assets are 404; once the registry is back the pull is retried and every
// device converges.
func TestUpdateHooksWaitForAnImageTheRegistryCannotServe(t *testing.T) {
	requireDocker(t)
	const devices = 5
	w := startWorld(t, worldOptions{Devices: devices})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r1 := w.pushRelease(t, "r1")
	w.awaitConverged(t, 2*time.Minute, devices, r1.Commit)

	// Build the next image into the registry from the host, then cut the
	// registry off before the cloud names it in the target.
	hostReg := strings.TrimPrefix(w.Registry.URL(t, registryPort), "http://")
	_, digest, err := registry.NewBuilder(registry.BuilderOptions{Registry: hostReg}).Build(ctx, fmt.Sprintf("apps/%d", w.App.ID),
		registry.Layer{Files: map[string][]byte{"firmware.bin": []byte(strings.Repeat("firmware r2\n", 512)), "VERSION": []byte("r2")}})
	if err != nil {
		t.Fatalf("push the r2 image: %v", err)
	}
	w.Registry.Disconnect(t)
	cut := time.Now()
	r2, err := w.Ctl.PushRelease(ctx, w.App.ID, cloud.ReleaseSpec{Image: fmt.Sprintf("%s/apps/%d@%s", registryHost, w.App.ID, digest)})
	if err != nil {
		t.Fatalf("push release r2: %v", err)
	}
	sup := w.supervisor(t)
	metrics := w.Proxy.URL(t, proxyMetricsPort) + "/metrics"
	attempts := func() float64 {
		return metricSum(t, metrics, "depharness_proxy_asset_build_retries_total", nil) +
			metricSum(t, metrics, "depharness_proxy_asset_builds_total", map[string]string{"outcome": "failure"})
	}
	before := attempts()
	// For three seconds at least, and until the proxy is downloading r2:
	// it knows the target but cannot get the image.
	awaitCond(t, time.Minute, "a download of r2 under way with the registry unreachable", func() (bool, string) {
		apps, err := sup.Apps(ctx)
		if err != nil {
			t.Fatalf("GET /v1/dependent-apps: %v", err)
		}
		for _, a := range apps {
			if a.ID == w.App.ID && a.Commit != r1.Commit {
				t.Fatalf("dependent app commit while its image cannot be pulled: got %s, want %s", a.Commit, r1.Commit)
			}
		}
		if _, err := sup.Assets(ctx, w.App.ID, r2.Commit, nil); client.StatusCode(err) != http.StatusNotFound {
			t.Fatalf("assets of r2 before its image is pulled: got %v, want 404", err)
		}
		if got := commitsOf(w.cloudDevices(t)); !slices.Equal(got, []string{r1.Commit}) {
			t.Fatalf("device commits while r2 cannot be pulled: got %v, want only r1 %s", got, r1.Commit)
		}
		downloading := metricSum(t, metrics, "depharness_proxy_sync_apps_downloading", nil)
		return downloading == 1 && time.Since(cut) > 3*time.Second, fmt.Sprintf("%v apps downloading after %s", downloading, time.Since(cut).Round(time.Millisecond))
	})
	failedPulls := attempts() - before

	w.Registry.Connect(t)
	back := time.Now()
	w.awaitConverged(t, 2*time.Minute, devices, r2.Commit)
	t.Logf("measured: registry off %s, %v failed pull attempts meanwhile; %d devices on r2 %s after it came back",
		back.Sub(cut).Round(time.Millisecond), failedPulls, devices, time.Since(back).Round(time.Millisecond))
}

// registryControl sends one request to the fake registry's control API.
func registryControl(t testing.TB, reg *service, method, path, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, reg.URL(t, registryPort)+"/control/v1/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, b := testkit.Do(t, nil, req)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("registry control %s %s: got %s %s, want 2xx", method, path, resp.Status, b)
	}
}

// assetFiles downloads the assets tar of appID at commit from the proxy.
func assetFiles(t testing.TB, sup *client.Client, appID int64, commit string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := sup.Assets(ctx, appID, commit, nil)
	if err != nil {
		t.Fatalf("GET assets of %.7s: %v", commit, err)
	}
	defer a.Close()
	return testkit.TarFiles(t, a)
}

// TestFailingAndCorruptRegistryPullsAreRetriedAndNeverServed arms the
// registry container, through its control API, to fail the next two
// manifest pulls with 503 and to corrupt the next blob it serves, then
// pushes a release: the proxy retries the pull, rejects the corrupt layer
// (its digest does not match), and serves and hooks only the intact image.
func TestFailingAndCorruptRegistryPullsAreRetriedAndNeverServed(t *testing.T) {
	requireDocker(t)
	const devices = 3
	w := startWorld(t, worldOptions{Devices: devices})
	r1 := w.pushRelease(t, "r1")
	w.awaitConverged(t, 2*time.Minute, devices, r1.Commit)
	proxyMetrics := w.Proxy.URL(t, proxyMetricsPort) + "/metrics"
	regMetrics := w.Registry.URL(t, registryPort) + "/metrics"
	retriesBefore := metricSum(t, proxyMetrics, "depharness_proxy_asset_build_retries_total", nil)

	registryControl(t, w.Registry, http.MethodPut, "fail/manifest", `{"n": 2, "status": 503}`)
	registryControl(t, w.Registry, http.MethodPut, "corrupt", `{"next": 1}`)
	start := time.Now()
	r2 := w.pushRelease(t, "r2")
	w.awaitConverged(t, 2*time.Minute, devices, r2.Commit)
	t.Logf("measured: %d devices on r2 %s after the push through 2 failed manifests and 1 corrupt blob",
		devices, time.Since(start).Round(time.Millisecond))

	if got := metricSum(t, regMetrics, "depharness_registry_faults_total", map[string]string{"fault": "fail"}); got < 2 {
		t.Errorf("registry fail faults injected: got %v, want ≥ 2", got)
	}
	if got := metricSum(t, regMetrics, "depharness_registry_faults_total", map[string]string{"fault": "corrupt"}); got < 1 {
		t.Errorf("registry corrupt faults injected: got %v, want ≥ 1", got)
	}
	retries := metricSum(t, proxyMetrics, "depharness_proxy_asset_build_retries_total", nil) - retriesBefore
	if retries < 3 {
		t.Errorf("asset build retries for r2: got %v, want ≥ 3 (two failed manifests, one corrupt blob)", retries)
	}
	got := assetFiles(t, w.supervisor(t), w.App.ID, r2.Commit)
	if string(got["VERSION"]) != "r2" || !bytes.Equal(got["firmware.bin"], []byte(strings.Repeat("firmware r2\n", 512))) {
		t.Errorf("assets served for r2: got VERSION %q and a %d-byte firmware.bin, want the intact r2 files", got["VERSION"], len(got["firmware.bin"]))
	}
	gwMetrics := w.Gateway.URL(t, gatewayMetricsPort) + "/metrics"
	for _, bad := range []string{"checksum_mismatch", "bad_firmware"} {
		if n := metricSum(t, gwMetrics, "depharness_gateway_flashes_total", map[string]string{"result": bad}); n != 0 {
			t.Errorf("gateway flashes with result %s: got %v, want 0", bad, n)
		}
	}
}

// TestRegistryRestartedMidPullIsRetriedFromItsDisk runs the registry on a
// volume (--dir), throttles it through its control API so that pulling a
// release takes seconds, and restarts the registry container while the
// proxy is in the middle of the transfer: the cut transfer fails, the proxy
// pulls again from the restarted registry (which kept its blobs on disk),
// and every device gets the intact release.
func TestRegistryRestartedMidPullIsRetriedFromItsDisk(t *testing.T) {
	requireDocker(t)
	const devices = 3
	w := startWorld(t, worldOptions{Devices: devices, RegistryOnDisk: true})
	r1 := w.pushRelease(t, "r1")
	w.awaitConverged(t, 2*time.Minute, devices, r1.Commit)

	metrics := w.Proxy.URL(t, proxyMetricsPort) + "/metrics"
	pulledBefore := metricSum(t, metrics, "depharness_proxy_image_pull_bytes_total", nil)
	retriesBefore := metricSum(t, metrics, "depharness_proxy_asset_build_retries_total", nil) +
		metricSum(t, metrics, "depharness_proxy_asset_builds_total", map[string]string{"outcome": "failure"})
	// 512 KiB that gzip cannot shrink, served at 64 KiB/s: about 8 s.
	firmware := make([]byte, 512<<10)
	_, _ = rand.Read(firmware)
	registryControl(t, w.Registry, http.MethodPut, "throttle", `{"bytesPerSec": 65536}`)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r2, err := w.Ctl.PushRelease(ctx, w.App.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: map[string][]byte{"assets/firmware.bin": firmware}}}})
	if err != nil {
		t.Fatalf("push release r2: %v", err)
	}
	var pulled float64
	awaitCond(t, time.Minute, "the proxy in the middle of pulling r2", func() (bool, string) {
		pulled = metricSum(t, metrics, "depharness_proxy_image_pull_bytes_total", nil) - pulledBefore
		downloading := metricSum(t, metrics, "depharness_proxy_sync_apps_downloading", nil)
		return downloading == 1 && pulled > 64<<10, fmt.Sprintf("%v apps downloading, %v bytes pulled", downloading, pulled)
	})
	if pulled >= float64(len(firmware)) {
		t.Fatalf("the pull finished (%v bytes) before the registry could be restarted", pulled)
	}
	stopped := time.Now()
	w.Registry.Stop(t, 5*time.Second)
	w.Registry.Start(t)
	restarted := time.Now()
	w.awaitConverged(t, 2*time.Minute, devices, r2.Commit)
	retries := metricSum(t, metrics, "depharness_proxy_asset_build_retries_total", nil) +
		metricSum(t, metrics, "depharness_proxy_asset_builds_total", map[string]string{"outcome": "failure"}) - retriesBefore
	if retries < 1 {
		t.Errorf("failed or retried asset builds after the registry restart: got %v, want ≥ 1 (the cut transfer)", retries)
	}
	got := assetFiles(t, w.supervisor(t), w.App.ID, r2.Commit)
	if !bytes.Equal(got["firmware.bin"], firmware) {
		t.Errorf("assets served for r2: got a %d-byte firmware.bin, want the pushed %d bytes", len(got["firmware.bin"]), len(firmware))
	}
	t.Logf("measured: registry stopped after %.0f of %d bytes of r2 had been pulled, healthy again %s later; %v failed or retried builds; %d devices on r2 %s after the stop",
		pulled, len(firmware), restarted.Sub(stopped).Round(time.Millisecond), retries, devices, time.Since(stopped).Round(time.Millisecond))
}
