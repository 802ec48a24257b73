package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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
