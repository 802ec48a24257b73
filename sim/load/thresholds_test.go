package load

import (
	"strings"
	"testing"
	"time"
)

func TestJudgeAppliesThresholdsToScenariosNotToProvisioning(t *testing.T) {
	r := &Report{Passed: true, Phases: []*Result{
		{Scenario: ScenarioProvision, Converged: true, Seconds: 100, AllRequests: Percentiles{P99: 5000}},
		{Scenario: ScenarioRollout, Converged: true, Seconds: 2.5, AllRequests: Percentiles{P99: 40}},
		{Scenario: ScenarioEnv, Converged: true, Seconds: 3.5, AllRequests: Percentiles{P99: 60}},
		{Scenario: ScenarioLogs, Converged: false, Seconds: 1},
	}}
	r.Judge(Thresholds{MaxConverge: 3 * time.Second, MaxP99: 50 * time.Millisecond})
	want := []Threshold{
		{Name: "max_converge", Phase: ScenarioRollout, Limit: 3, Value: 2.5, Passed: true},
		{Name: "max_p99", Phase: ScenarioRollout, Limit: 0.05, Value: 0.04, Passed: true},
		{Name: "max_converge", Phase: ScenarioEnv, Limit: 3, Value: 3.5, Passed: false},
		{Name: "max_p99", Phase: ScenarioEnv, Limit: 0.05, Value: 0.06, Passed: false},
		{Name: "max_converge", Phase: ScenarioLogs, Limit: 3, Value: 1, Passed: false}, // did not converge
		{Name: "max_p99", Phase: ScenarioLogs, Limit: 0.05, Value: 0, Passed: true},
	}
	if len(r.Thresholds) != len(want) {
		t.Fatalf("got %+v, want %+v", r.Thresholds, want)
	}
	for i, w := range want {
		if got := r.Thresholds[i]; got != w {
			t.Errorf("threshold %d: got %+v, want %+v", i, got, w)
		}
	}
	if r.Passed {
		t.Error("passed = true, want false: thresholds failed")
	}
	if got := len(r.FailedThresholds()); got != 3 {
		t.Errorf("%d failed thresholds, want 3", got)
	}
	want4 := []string{"logs did not converge", "env time to converge 3.50 s > 3.00 s", "env supervisor API request p99 60.0 ms > 50.0 ms",
		"logs time to converge 1.00 s > 3.00 s"}
	if got := r.Failures(); strings.Join(got, "|") != strings.Join(want4, "|") {
		t.Errorf("failures %q, want %q", got, want4)
	}
	if got, want := r.Thresholds[2].String(), "env time to converge 3.50 s > 3.00 s: FAIL"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := r.Thresholds[1].String(), "rollout supervisor API request p99 40.0 ms ≤ 50.0 ms: pass"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestJudgeWithoutThresholdsChangesNothing(t *testing.T) {
	r := &Report{Passed: true, Phases: []*Result{{Scenario: ScenarioRollout, Converged: true, Seconds: 1e6}}}
	r.Judge(Thresholds{})
	if !r.Passed || len(r.Thresholds) != 0 {
		t.Errorf("got passed=%v thresholds %+v, want passed and none", r.Passed, r.Thresholds)
	}
}

func TestFormatSecondsPicksAUnitAndThreeDigits(t *testing.T) {
	for _, tc := range []struct {
		s    float64
		want string
	}{
		{0, "0 s"}, {0.00085, "850 µs"}, {0.0123456, "12.3 ms"}, {0.2, "200 ms"}, {0.99996, "1.00 s"},
		{2.4149, "2.41 s"}, {41.23, "41.2 s"}, {192.7, "3 min 12 s"}, {1e-9, "1.00 ns"}, {3600, "1 h 0 min"},
	} {
		if got := FormatSeconds(tc.s); got != tc.want {
			t.Errorf("FormatSeconds(%v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}
