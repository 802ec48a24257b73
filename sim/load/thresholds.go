package load

import (
	"fmt"
	"time"
)

// Thresholds are limits a run must stay within to pass, besides converging.
// They judge the scenarios' phases, not the provisioning of the fleet.
// Zero means no limit.
type Thresholds struct {
	// MaxConverge is the longest a scenario may take to converge.
	MaxConverge time.Duration
	// MaxP99 is the highest the 99th percentile of a scenario's supervisor
	// API requests (the gateway's, every route together) may be.
	MaxP99 time.Duration
}

// Threshold is one limit applied to one phase.
type Threshold struct {
	// Name is "max_converge" or "max_p99".
	Name  string `json:"name"`
	Phase string `json:"phase"`
	// Limit and Value are in seconds.
	Limit  float64 `json:"limit_seconds"`
	Value  float64 `json:"value_seconds"`
	Passed bool    `json:"passed"`
}

// What says what a threshold measures, for a reader.
func (t Threshold) What() string {
	switch t.Name {
	case "max_converge":
		return "time to converge"
	case "max_p99":
		return "supervisor API request p99"
	}
	return t.Name
}

// String is one line: "rollout time to converge 2.41 s ≤ 3.00 s: pass".
func (t Threshold) String() string {
	if t.Passed {
		return t.Comparison() + ": pass"
	}
	return t.Comparison() + ": FAIL"
}

// Comparison is the value beside the limit: "rollout time to converge
// 3.52 s > 3.00 s".
func (t Threshold) Comparison() string {
	op := "≤"
	if !t.Passed {
		op = ">"
	}
	return fmt.Sprintf("%s %s %s %s %s", t.Phase, t.What(), FormatSeconds(t.Value), op, FormatSeconds(t.Limit))
}

// Judge applies th to the report's scenario phases, records each verdict in
// r.Thresholds, and makes r.Passed false if one fails. A phase that did not
// converge fails MaxConverge.
func (r *Report) Judge(th Thresholds) {
	for _, ph := range r.Phases {
		if ph.Scenario == ScenarioProvision {
			continue
		}
		if th.MaxConverge > 0 {
			lim := th.MaxConverge.Seconds()
			r.Thresholds = append(r.Thresholds, Threshold{Name: "max_converge", Phase: ph.Scenario, Limit: lim, Value: ph.Seconds,
				Passed: ph.Converged && ph.Seconds <= lim})
		}
		if th.MaxP99 > 0 {
			lim := th.MaxP99.Seconds()
			v := ph.AllRequests.P99 / 1000
			r.Thresholds = append(r.Thresholds, Threshold{Name: "max_p99", Phase: ph.Scenario, Limit: lim, Value: v, Passed: v <= lim})
		}
	}
	for _, t := range r.Thresholds {
		if !t.Passed {
			r.Passed = false
		}
	}
}

// Failures says why the run did not pass: the phases that did not converge
// and the thresholds that failed, one line each; empty when it passed.
func (r *Report) Failures() []string {
	var out []string
	for _, ph := range r.Phases {
		if !ph.Converged {
			out = append(out, ph.Scenario+" did not converge")
		}
	}
	for _, t := range r.FailedThresholds() {
		out = append(out, t.Comparison())
	}
	return out
}

// FailedThresholds returns the thresholds that failed.
func (r *Report) FailedThresholds() []Threshold {
	var out []Threshold
	for _, t := range r.Thresholds {
		if !t.Passed {
			out = append(out, t)
		}
	}
	return out
}
