package promreg

import (
	"testing"

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
