package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/sim/load"
)

// readLoadReport reads the one JSON report in dir.
func readLoadReport(t *testing.T, dir string) load.Report {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "load-*.json"))
	if err != nil || len(files) != 1 {
		t.Fatalf("reports in %s: %v (%v), want one JSON report", dir, files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var r load.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(strings.TrimSuffix(files[0], ".json") + ".html"); err != nil {
		t.Errorf("HTML report: %v", err)
	}
	return r
}

func TestLoadRunsEveryScenarioInProcessAndWritesAReport(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := run(t, nil, "load", "--devices", "12", "--scenario", "all", "--report-dir", dir, "--log-level", "debug",
		"--timeout", "60s", "--poll-interval", "100ms", "--hook-retry-interval", "200ms", "--churn-duration", "1s",
		"--flash-time", "5ms", "--delete-count", "3", "--restart-count", "2", "--log-lines", "4")
	if code != 0 {
		t.Fatalf("exit code %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	sawComponent := false
	for _, line := range strings.Split(stderr, "\n") {
		n := strings.Count(line, " component=")
		sawComponent = sawComponent || n > 0
		if n > 1 {
			t.Errorf("a log line names its component %d times: %s", n, line)
		}
	}
	if !sawComponent {
		t.Errorf("no log line names its component:\n%s", stderr)
	}
	r := readLoadReport(t, dir)
	if !r.Passed || r.Mode != "in-process" {
		t.Errorf("report passed=%v mode=%q, want a passed in-process run", r.Passed, r.Mode)
	}
	want := append([]string{load.ScenarioProvision}, load.Scenarios...)
	if len(r.Phases) != len(want) {
		t.Fatalf("got %d phases, want %v", len(r.Phases), want)
	}
	wantDevices := map[string]int{load.ScenarioDelete: 3, load.ScenarioRestart: 2}
	for i, p := range r.Phases {
		if p.Scenario != want[i] {
			t.Errorf("phase %d is %q, want %q", i, p.Scenario, want[i])
		}
		n := 12
		if w, ok := wantDevices[p.Scenario]; ok {
			n = w
		}
		if !p.Converged || p.Want != n || p.Reached != n {
			t.Errorf("%s: converged=%v %d/%d, want all %d converged (error %q)", p.Scenario, p.Converged, p.Reached, p.Want, n, p.Error)
		}
		if len(p.Samples) == 0 {
			t.Errorf("%s: no samples", p.Scenario)
		}
		for k, v := range p.Errors {
			// The gateway registers a device only after its first report,
			// so an update hook may find it unknown while it provisions.
			if p.Scenario == load.ScenarioProvision && k == "hook answered update 404" {
				continue
			}
			t.Errorf("%s: %d errors %q, want none", p.Scenario, v, k)
		}
		if p.Supervisor == nil {
			t.Errorf("%s: no supervisor metrics from the in-process proxy", p.Scenario)
		}
	}
	byName := map[string]*load.Result{}
	for _, p := range r.Phases {
		byName[p.Scenario] = p
	}
	if got := byName[load.ScenarioRollout].Latencies["push → report"].Count; got != 12 {
		t.Errorf("rollout measured push → report for %d devices, want 12", got)
	}
	for _, p := range r.Phases {
		if f := p.Floor; f == nil || f.Error != "" || f.RoundTrips <= 0 || f.Seconds <= 0 || f.Ratio <= 0 {
			t.Errorf("%s: floor %+v, want one measured from its round trips", p.Scenario, f)
		}
	}
	trips := map[string]load.RoundTrips{}
	for _, rt := range byName[load.ScenarioRollout].RoundTrips {
		trips[rt.Kind] = rt
	}
	if trips["hook update"].Count != 12 || trips["PUT /v1/devices/{uuid}"].Count != 24 || trips["cloud patch"].Count == 0 ||
		trips["control push release"].Count != 1 || trips["registry manifest GET"].Count == 0 {
		t.Errorf("rollout round trips %+v, want 12 update hooks, 24 reports, the supervisor's PATCHes and pulls, one push", trips)
	}
	if got := fmt.Sprint(r.Config["hook_concurrency"]); got != "16" { // the proxy's default, spelled out
		t.Errorf("config hook_concurrency = %v, want 16", got)
	}
	if got := byName[load.ScenarioLogs].Counts["log lines sent"]; got != 48 {
		t.Errorf("log storm sent %d lines, want 12×4 = 48", got)
	}
	if got := byName[load.ScenarioDelete].Counts["delete hooks"]; got != 3 {
		t.Errorf("deletion wave saw %d delete hooks, want 3", got)
	}
	if r.Process.PeakRSSBytes <= 0 {
		t.Errorf("peak RSS = %d, want it read from /proc/self/status", r.Process.PeakRSSBytes)
	}
	for _, w := range []string{"rollout    converged: 12/12", "delete     converged: 3/3", "peak RSS (VmHWM)", "report: ", "round trips, ratio "} {
		if !strings.Contains(stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, stdout)
		}
	}
}

func TestLoadExitsOneAndStillReportsWhenAPhaseDoesNotConverge(t *testing.T) {
	dir := t.TempDir()
	// 200 devices cannot be provisioned and flashed in 50 ms.
	code, stdout, stderr := run(t, nil, "load", "--devices", "200", "--scenario", "rollout", "--report-dir", dir, "--timeout", "50ms")
	if code != 1 {
		t.Fatalf("exit code %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "did not converge") {
		t.Errorf("stderr lacks the reason:\n%s", stderr)
	}
	r := readLoadReport(t, dir)
	if r.Passed || len(r.Phases) != 1 || r.Phases[0].Converged || r.Phases[0].Error == "" {
		t.Errorf("report = passed %v, %d phases; want one failed provision phase with its error", r.Passed, len(r.Phases))
	}
}

func TestLoadMissingAThresholdExitsOneAndShowsEveryVerdict(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := run(t, map[string]string{"LOAD_MAX_CONVERGE": "1ns"}, "load", "--devices", "5", "--scenario", "rollout",
		"--max-p99", "1h", "--flash-time", "1ms", "--timeout", "60s", "--report-dir", dir)
	if code != 1 {
		t.Fatalf("exit code %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "thresholds not met: rollout time to converge") {
		t.Errorf("stderr lacks the failed threshold:\n%s", stderr)
	}
	for _, w := range []string{"threshold  rollout time to converge ", "> 1.00 ns", "threshold  rollout supervisor API request p99 "} {
		if !strings.Contains(stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, stdout)
		}
	}
	r := readLoadReport(t, dir)
	if r.Passed || len(r.Thresholds) != 2 || r.Thresholds[0].Passed || !r.Thresholds[1].Passed {
		t.Errorf("report passed=%v thresholds %+v, want failed by max_converge, max_p99 passed", r.Passed, r.Thresholds)
	}
	if !r.Phases[1].Converged {
		t.Errorf("rollout did not converge (%s): the threshold, not convergence, is what failed here", r.Phases[1].Error)
	}
}

func TestLoadRefusesBadFlagsWithExitTwo(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown scenario", []string{"--scenario", "deploy"}, `unknown scenario "deploy"`},
		{"bad policy", []string{"--policy", "204"}, "--policy"},
		{"no devices", []string{"--devices", "0"}, "--devices must be positive"},
		{"external proxy without its cloud", []string{"--proxy", "http://127.0.0.1:1"}, "--proxy needs --cloud and --admin-token"},
		{"registry without an external proxy", []string{"--registry", "127.0.0.1:5000"}, "--registry is for --proxy runs"},
		{"negative threshold", []string{"--max-p99", "-1s"}, "must not be negative"},
		{"negative provisioning window", []string{"--provision-ahead", "-1"}, "--provision-ahead must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, nil, append([]string{"load", "--report-dir", t.TempDir()}, tt.args...)...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit code %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
		})
	}
}

func TestLoadTakesItsSettingsFromTheEnvironment(t *testing.T) {
	code, _, stderr := run(t, map[string]string{"LOAD_SCENARIO": "nope"}, "load", "--report-dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, `unknown scenario "nope"`) {
		t.Errorf("exit code %d, stderr %q; want LOAD_SCENARIO read and refused", code, stderr)
	}
}

func TestLoadDrivesAnExternalSupervisorThroughItsCloudAndHookAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// A free port for the gateway's hook listener, which the supervisor is
	// configured with before the load command listens on it.
	st, hookListen := startHookedStack(t, ctx, 100*time.Millisecond, 200*time.Millisecond, false)

	dir := t.TempDir()
	code, stdout, stderr := run(t, map[string]string{"DEPHARNESS_CLOUD_ADMIN_TOKEN": st.Cloud.AdminToken(), "DEPHARNESS_REGISTRY_ADMIN_TOKEN": st.RegistryToken}, "load",
		"--proxy", st.Proxy.URL, "--api-key", st.Proxy.APIKey, "--cloud", st.CloudURL, "--registry", st.RegistryAddr,
		"--proxy-metrics", st.Proxy.MetricsURL, "--gateway-listen", hookListen,
		"--devices", "8", "--scenario", "rollout,env,delete", "--delete-count", "2", "--flash-time", "5ms",
		"--timeout", "60s", "--report-dir", dir)
	if code != 0 {
		t.Fatalf("exit code %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	r := readLoadReport(t, dir)
	if !r.Passed || r.Mode != "external" || len(r.Phases) != 4 {
		t.Fatalf("report passed=%v mode=%q phases=%d, want a passed external run of 4 phases", r.Passed, r.Mode, len(r.Phases))
	}
	rollout := r.Phases[1]
	if rollout.Scenario != load.ScenarioRollout || rollout.Supervisor == nil ||
		rollout.Supervisor.Counters[`depharness_proxy_hook_deliveries_total{kind="update",outcome="ok"}`] != 8 {
		t.Errorf("rollout phase %q: supervisor figures %+v, want 8 update hooks delivered, scraped from its /metrics", rollout.Scenario, rollout.Supervisor)
	}
	// The release was built into the registry by the load command: the
	// cloud's release names that image.
	apps := st.Cloud.Apps()
	var loadApp *cloud.App
	for i := range apps {
		if strings.HasPrefix(apps[i].Name, "load-") {
			loadApp = &apps[i]
		}
	}
	if loadApp == nil || loadApp.Release == nil || !strings.HasPrefix(loadApp.Release.Image, st.RegistryAddr+"/load/") {
		t.Errorf("load app %+v, want a release whose image the load command built into %s/load/", loadApp, st.RegistryAddr)
	}
	var patches int64
	for _, rt := range rollout.RoundTrips {
		if rt.Kind == "cloud patch" && rt.From == "supervisor" {
			patches = rt.Count
		}
	}
	if patches == 0 || rollout.Floor == nil || rollout.Floor.Ratio <= 0 {
		t.Errorf("rollout round trips %+v, floor %+v: want the supervisor's PATCHes read from the cloud's /metrics, and a floor", rollout.RoundTrips, rollout.Floor)
	}
	if got := len(st.Cloud.Devices(cloud.DeviceFilter{Gateway: st.Identity.UUID})); got != 6 {
		t.Errorf("the cloud has %d devices left, want 8 - 2 deleted", got)
	}
}

// --pprof-listen serves the runtime's profiles, and only on its own
// listener; a bad address is refused before the run starts.
func TestLoadServesProfilesOnPprofListen(t *testing.T) {
	srv, err := servePprof("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Errorf("heap profile: %d %.80q, want 200 and a heap profile", resp.StatusCode, body)
	}
	code, _, stderr := run(t, nil, "load", "--report-dir", t.TempDir(), "--devices", "1", "--pprof-listen", "nowhere")
	if code != 2 || !strings.Contains(stderr, "change --pprof-listen") || strings.Contains(stderr, "gateway-listen") {
		t.Errorf("exit code %d, stderr %q; want 2 and --pprof-listen named", code, stderr)
	}
}

// Without --poll-interval, the in-process proxy polls at the default up to
// 25,000 devices and 20µs a device beyond: a poll costs about 3.5µs of CPU
// a device.
func TestLoadPollIntervalGrowsWithTheFleet(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 500 * time.Millisecond, 10_000: 500 * time.Millisecond,
		25_000: 500 * time.Millisecond, 100_000: 2 * time.Second, 1_000_000: 20 * time.Second} {
		if got := loadPollInterval(n); got != want {
			t.Errorf("loadPollInterval(%d) = %v, want %v", n, got, want)
		}
	}
}
