package promreg

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegisterReturnsTheCollectorAlreadyThere(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "depharness_test_total", Help: "A test counter."}
	first, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	again, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatalf("registering an equal collector again: %v", err)
	}
	if again != first {
		t.Error("the second registration did not return the first collector")
	}
	clash := prometheus.NewGauge(prometheus.GaugeOpts{Name: "depharness_test_total", Help: "Another help."})
	if _, err := Register(reg, clash); err == nil {
		t.Error("a different collector under the same name was accepted")
	}
}

func TestFactoryRegistersReusesAndKeepsErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "depharness_factory_total", Help: "A test counter."}
	first := With(reg).NewCounterVec(opts, []string{"kind"})
	f := With(reg)
	again := f.NewCounterVec(opts, []string{"kind"})
	if again != first || f.Err() != nil {
		t.Errorf("building an equal vector again: got a new one (%v) or error %v, want the first and nil", again != first, f.Err())
	}
	again.WithLabelValues("a").Inc()
	if n, err := testutil.GatherAndCount(reg, "depharness_factory_total"); err != nil || n != 1 {
		t.Errorf("registry holds %d series (%v), want the one counted through the reused vector", n, err)
	}
	f.NewGauge(prometheus.GaugeOpts{Name: "depharness_factory_total", Help: "Another help."})
	f.NewHistogram(prometheus.HistogramOpts{Name: "depharness_factory_seconds", Help: "A histogram."})
	if f.Err() == nil {
		t.Error("a clashing collector left Err nil")
	}
	if n, _ := testutil.GatherAndCount(reg, "depharness_factory_seconds"); n != 1 {
		t.Errorf("the histogram after a failed registration: %d series, want 1 (the factory goes on)", n)
	}
	unregistered := With(nil)
	unregistered.NewCounter(prometheus.CounterOpts{Name: "depharness_factory_total", Help: "x"}).Inc()
	if unregistered.Err() != nil {
		t.Errorf("With(nil): %v, want no error", unregistered.Err())
	}
}

func TestNamedFactoryPrefixesEveryMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := Named(reg, "depharness", "test")
	f.Counter("plain_total", "A counter.").Inc()
	f.CounterVec("labelled_total", "A counter vector.", "kind", "code").WithLabelValues("a", "200").Inc()
	f.Gauge("level", "A gauge.").Set(2)
	f.GaugeVec("levels", "A gauge vector.", "kind").WithLabelValues("a").Set(3)
	f.Histogram("wait_seconds", "A histogram.", []float64{0.1, 1}).Observe(0.5)
	f.HistogramVec("call_seconds", "A histogram vector.", nil, "call").WithLabelValues("x").Observe(0.5)
	if f.Err() != nil {
		t.Fatalf("Err() = %v, want nil", f.Err())
	}
	for _, name := range []string{
		"depharness_test_plain_total", "depharness_test_labelled_total", "depharness_test_level",
		"depharness_test_levels", "depharness_test_wait_seconds", "depharness_test_call_seconds",
	} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 1 {
			t.Errorf("%s: %d series (%v), want 1", name, n, err)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v, want no problems", problems, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "depharness_test_wait_seconds" {
			if got := len(mf.GetMetric()[0].GetHistogram().GetBucket()); got != 2 {
				t.Errorf("wait_seconds has %d buckets, want the 2 given", got)
			}
		}
		if mf.GetName() == "depharness_test_call_seconds" {
			if got, want := len(mf.GetMetric()[0].GetHistogram().GetBucket()), len(prometheus.DefBuckets); got != want {
				t.Errorf("call_seconds has %d buckets, want the %d default ones", got, want)
			}
		}
	}
}

func TestRequestsCountByCodeAndTimeWithoutIt(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := Named(reg, "depharness", "test")
	r := f.Requests("api_", "Requests by route, method and code.", "Request duration by route and method.", []float64{0.1, 1}, "route", "method")
	if f.Err() != nil {
		t.Fatalf("Err() = %v, want nil", f.Err())
	}
	labels := make([]string, 2, 3)
	labels[0], labels[1] = "/v1/devices", "GET"
	r.Observe("200", 50*time.Millisecond, labels...)
	r.Observe("200", 2*time.Second, labels...)
	r.Observe("404", time.Millisecond, "/v1/devices", "PUT")
	if labels = labels[:3]; labels[2] != "" {
		t.Errorf("Observe wrote %q past its labels, want the caller's array untouched", labels[2])
	}
	for _, tc := range []struct {
		labels []string
		want   float64
	}{{[]string{"/v1/devices", "GET", "200"}, 2}, {[]string{"/v1/devices", "PUT", "404"}, 1}, {[]string{"/v1/devices", "GET", "404"}, 0}} {
		if got := testutil.ToFloat64(r.Count.WithLabelValues(tc.labels...)); got != tc.want {
			t.Errorf("depharness_test_api_requests_total%q = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "depharness_test_api_request_duration_seconds"); err != nil || n != 2 {
		t.Errorf("duration series: %d (%v), want 2 (by route and method, not by code)", n, err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v, want no problems", problems, err)
	}
}
