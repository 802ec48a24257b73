package promtest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// recorder is a testing.TB that keeps the errors a check reports instead of
// failing the test that uses it.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestCheckHygieneReportsLabelsHoldingASecret(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "depharness_test_requests_total", Help: "Requests."}, []string{"route"})
	reg.MustRegister(c)
	c.WithLabelValues("/v1/devices/{uuid}").Inc()
	rec := &recorder{TB: t}
	CheckHygiene(rec, reg, "0123abcd")
	if len(rec.errs) != 0 {
		t.Errorf("clean metrics: got %q, want no errors", rec.errs)
	}
	c.WithLabelValues("/v1/devices/0123abcd").Inc()
	CheckHygiene(rec, reg, "s3cret", "0123abcd")
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], `route="/v1/devices/0123abcd"`) {
		t.Errorf("a uuid in a label: got %q, want it reported once", rec.errs)
	}
}

func TestSumAddsTheMatchingSeriesOfEveryKind(t *testing.T) {
	page := `# TYPE a_total counter
a_total{kind="log",reason="x"} 2
a_total{kind="log",reason="y"} 3
a_total{kind="patch",reason="x"} 5
# TYPE b gauge
b 7
# TYPE c_seconds histogram
c_seconds_bucket{le="+Inf"} 4
c_seconds_sum 1
c_seconds_count 4
`
	fams := Parse(t, strings.NewReader(page))
	for _, tc := range []struct {
		name  string
		match map[string]string
		want  float64
	}{
		{"a_total", map[string]string{"kind": "log"}, 5},
		{"a_total", map[string]string{"kind": "log", "reason": "y"}, 3},
		{"a_total", nil, 10},
		{"a_total", map[string]string{"kind": "none"}, 0},
		{"b", nil, 7},
		{"c_seconds", nil, 4},
		{"absent_total", nil, 0},
	} {
		if got := Sum(fams, tc.name, tc.match); got != tc.want {
			t.Errorf("Sum(%s, %v) = %v, want %v", tc.name, tc.match, got, tc.want)
		}
	}
}

func TestGatherIndexesARegistryByName(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "depharness_test_level", Help: "A level."})
	reg.MustRegister(g)
	g.Set(3)
	if got := Sum(Gather(t, reg), "depharness_test_level", nil); got != 3 {
		t.Errorf("Sum of a gathered gauge = %v, want 3", got)
	}
}

func TestWantValueReportsAnotherValue(t *testing.T) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "depharness_test_total", Help: "A counter."}, []string{"kind"})
	c.WithLabelValues("a").Add(2)
	rec := &recorder{TB: t}
	WantValue(rec, "a counter", c.WithLabelValues("a"), 2)
	if len(rec.errs) != 0 {
		t.Errorf("the value held: got %q, want no errors", rec.errs)
	}
	WantValue(rec, "b counter", c.WithLabelValues("b"), 1)
	if len(rec.errs) != 1 || rec.errs[0] != "b counter: got 0, want 1" {
		t.Errorf("another value: got %q, want one error naming both values", rec.errs)
	}
}
