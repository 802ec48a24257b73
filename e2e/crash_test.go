package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// slowFlashProfile makes every device take 0.4–1.5 s to flash a firmware,
// so that a rollout of a couple of dozen devices lasts long enough for a
// fault to land in its middle. Its count is overridden by --devices.
const slowFlashProfile = `{"count": 1, "seed": 1, "flashTime": {"dist": "uniform", "min": "400ms", "max": "1500ms"}}`

// hookSeen is an update hook as the gateway logged it.
type hookSeen struct {
	Time   time.Time
	UUID   string
	Commit string
}

// updateHooks reads the update hooks the gateway received from its JSON log.
func updateHooks(t testing.TB, gw *service) []hookSeen {
	t.Helper()
	var out []hookSeen
	sc := bufio.NewScanner(strings.NewReader(gw.Log(t)))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Time   time.Time `json:"time"`
			Msg    string    `json:"msg"`
			UUID   string    `json:"uuid"`
			Commit string    `json:"commit"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "update hook" {
			continue
		}
		out = append(out, hookSeen{Time: l.Time, UUID: l.UUID, Commit: l.Commit})
	}
	return out
}

// reportedOn returns the uuids the proxy shows reported on commit.
func (w *world) reportedOn(t testing.TB, commit string) (on map[string]bool, total int) {
	t.Helper()
	ds, err := w.proxyDevices()
	if err != nil {
		t.Fatalf("GET /v1/devices: %v", err)
	}
	on = map[string]bool{}
	for _, d := range ds {
		if d.Commit != nil && *d.Commit == commit {
			on[d.UUID] = true
		}
	}
	return on, len(ds)
}

// awaitMidRollout waits until at least a quarter, but not all, of the
// devices report commit.
func (w *world) awaitMidRollout(t testing.TB, devices int, commit string) {
	t.Helper()
	awaitCond(t, time.Minute, "a rollout under way", func() (bool, string) {
		on, total := w.reportedOn(t, commit)
		if len(on) == devices {
			t.Fatalf("every device reported %.7s before the fault could land: the rollout is too fast for this test", commit)
		}
		return len(on) >= devices/4, fmt.Sprintf("%d of %d on %.7s", len(on), total, commit)
	})
}

// TestEveryDeviceConvergesAfterTheGatewayWasFrozenMidRollout freezes the
// gateway container (every process stopped, sockets kept) while a rollout
// is under way with the 202 policy: the proxy's resends time out and are
// retried with backoff; once the gateway runs again every device reaches
// the release.
func TestEveryDeviceConvergesAfterTheGatewayWasFrozenMidRollout(t *testing.T) {
	requireDocker(t)
	const devices = 24
	w := startWorld(t, worldOptions{Devices: devices, Policy: "202", Profile: slowFlashProfile, HookTimeout: 2 * time.Second})
	r1 := w.pushRelease(t, "r1")
	w.awaitConverged(t, 2*time.Minute, devices, r1.Commit)
	metrics := w.Proxy.URL(t, proxyMetricsPort) + "/metrics"
	failedBefore := metricSum(t, metrics, "depharness_proxy_hook_deliveries_total", map[string]string{"kind": "update", "outcome": "failed"})

	r2 := w.pushRelease(t, "r2")
	w.awaitMidRollout(t, devices, r2.Commit)
	w.Gateway.Pause(t)
	frozen := time.Now()
	onAtFreeze, _ := w.reportedOn(t, r2.Commit)
	// Frozen for longer than a hook timeout, so resends time out.
	awaitCond(t, time.Minute, "hook timeouts while the gateway is frozen", func() (bool, string) {
		failed := metricSum(t, metrics, "depharness_proxy_hook_deliveries_total", map[string]string{"kind": "update", "outcome": "failed"}) - failedBefore
		return failed > 0 && time.Since(frozen) > 5*time.Second, fmt.Sprintf("%v failed deliveries after %s", failed, time.Since(frozen).Round(time.Millisecond))
	})
	if err := w.supervisor(t).Ping(t.Context()); err != nil {
		t.Errorf("proxy ping while the gateway is frozen: %v", err)
	}
	failed := metricSum(t, metrics, "depharness_proxy_hook_deliveries_total", map[string]string{"kind": "update", "outcome": "failed"}) - failedBefore
	w.Gateway.Unpause(t)
	thawed := time.Now()
	w.awaitConverged(t, 2*time.Minute, devices, r2.Commit)
	t.Logf("measured: %d of %d devices on r2 when frozen; frozen %s; %v update hooks failed meanwhile; all %d on r2 %s after the thaw",
		len(onAtFreeze), devices, thawed.Sub(frozen).Round(time.Millisecond), failed, devices, time.Since(thawed).Round(time.Millisecond))
}

// TestProxySIGKILLedMidRolloutLosesNothingAndResendsNoAcknowledgedHook
// kills the proxy container with SIGKILL while a rollout is under way (202
// policy: a device's update is acknowledged by its report) and starts it
// again on the same volume: every report acknowledged before the crash is
// still there, no device that had reported the release gets its update
// hook again, and every other device still converges (HOOK-REF-1,
// DEV-PUT-6).
func TestProxySIGKILLedMidRolloutLosesNothingAndResendsNoAcknowledgedHook(t *testing.T) {
	requireDocker(t)
	const devices = 24
	w := startWorld(t, worldOptions{Devices: devices, Policy: "202", Profile: slowFlashProfile})
	r1 := w.pushRelease(t, "r1")
	w.awaitConverged(t, 2*time.Minute, devices, r1.Commit)

	r2 := w.pushRelease(t, "r2")
	w.awaitMidRollout(t, devices, r2.Commit)
	acked, _ := w.reportedOn(t, r2.Commit)
	w.Proxy.Kill(t, "KILL")
	killed := time.Now()
	w.Proxy.Start(t)
	restarted := time.Now()

	after, total := w.reportedOn(t, r2.Commit)
	if total != devices {
		t.Errorf("devices after the restart: got %d, want %d", total, devices)
	}
	var lost []string
	for u := range acked {
		if !after[u] {
			lost = append(lost, u)
		}
	}
	if len(lost) > 0 {
		t.Errorf("reports acknowledged before the SIGKILL and gone after the restart: %v", lost)
	}
	w.awaitConverged(t, 2*time.Minute, devices, r2.Commit)

	var resent []string
	hooksAfter := 0
	for _, h := range updateHooks(t, w.Gateway) {
		if h.Commit != r2.Commit || h.Time.Before(killed) {
			continue
		}
		hooksAfter++
		if acked[h.UUID] {
			resent = append(resent, fmt.Sprintf("%.7s at +%s", h.UUID, h.Time.Sub(killed).Round(time.Millisecond)))
		}
	}
	sort.Strings(resent)
	if len(resent) > 0 {
		t.Errorf("update hooks re-sent after the crash to devices that had already reported r2: %v", resent)
	}
	t.Logf("measured: %d of %d devices had reported r2 at the SIGKILL; restart took %s; %d update hooks after it, %d to acknowledged devices; all on r2 %s after the restart",
		len(acked), devices, restarted.Sub(killed).Round(time.Millisecond), hooksAfter, len(resent), time.Since(restarted).Round(time.Millisecond))
}
