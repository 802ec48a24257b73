package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	code, stdout, stderr := run(t, nil, "load", "--devices", "12", "--scenario", "all", "--report-dir", dir,
		"--timeout", "60s", "--poll-interval", "100ms", "--hook-retry-interval", "200ms", "--churn-duration", "1s",
		"--flash-time", "5ms", "--delete-count", "3", "--restart-count", "2", "--log-lines", "4")
	if code != 0 {
		t.Fatalf("exit code %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
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
	if got := byName[load.ScenarioLogs].Counts["log lines sent"]; got != 48 {
		t.Errorf("log storm sent %d lines, want 12×4 = 48", got)
	}
	if got := byName[load.ScenarioDelete].Counts["delete hooks"]; got != 3 {
		t.Errorf("deletion wave saw %d delete hooks, want 3", got)
	}
	if r.Process.PeakRSSBytes <= 0 {
		t.Errorf("peak RSS = %d, want it read from /proc/self/status", r.Process.PeakRSSBytes)
	}
	for _, w := range []string{"rollout    converged: 12/12", "delete     converged: 3/3", "peak RSS (VmHWM)", "report: "} {
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
