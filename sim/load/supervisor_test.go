package load

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/depharness/depharness/internal/testkit"
)

func TestSupervisorFiguresAreGrowthDuringThePhase(t *testing.T) {
	reg := prometheus.NewRegistry()
	delivered := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "depharness_proxy_outbox_delivered_total", Help: "h"}, []string{"kind"})
	dur := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "depharness_proxy_hook_duration_seconds", Help: "h"})
	size := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "depharness_proxy_batch_rows", Help: "h"})
	pending := prometheus.NewGauge(prometheus.GaugeOpts{Name: "depharness_proxy_hooks_pending", Help: "h"})
	stamp := prometheus.NewGauge(prometheus.GaugeOpts{Name: "depharness_proxy_sync_last_success_timestamp_seconds", Help: "h"})
	reg.MustRegister(delivered, dur, size, pending, stamp)
	delivered.WithLabelValues("patch").Add(5)
	dur.Observe(1)

	srv := testkit.Server(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	for name, src := range map[string]MetricsSource{
		"in-process registry": func(context.Context) ([]*dto.MetricFamily, error) { return reg.Gather() },
		"scraped endpoint":    ScrapeMetrics(srv.URL, nil),
	} {
		t.Run(name, func(t *testing.T) {
			mfs, err := src(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			before := flatten(mfs)
			delivered.WithLabelValues("patch").Add(3)
			dur.Observe(0.010)
			dur.Observe(0.030)
			size.Observe(100)
			pending.Set(42)
			stamp.Set(1e9)
			if mfs, err = src(context.Background()); err != nil {
				t.Fatal(err)
			}
			after := flatten(mfs)
			f := delta(before, after)
			if got := f.Counters[`depharness_proxy_outbox_delivered_total{kind="patch"}`]; got != 3 {
				t.Errorf("counter growth = %v, want 3 (%v)", got, f.Counters)
			}
			if got := f.Histograms["depharness_proxy_hook_duration_seconds"]; got.Count != 2 || got.Mean != 20 {
				t.Errorf("histogram delta = %+v, want 2 observations of mean 20 ms", got)
			}
			if got := f.Histograms["depharness_proxy_batch_rows"]; got.Count != 1 || got.Mean != 100 {
				t.Errorf("histogram without a time unit = %+v, want 1 observation of mean 100", got)
			}
			g := gauges(after)
			if g["depharness_proxy_hooks_pending"] != 42 {
				t.Errorf("gauges = %v, want hooks_pending 42", g)
			}
			if _, ok := g["depharness_proxy_sync_last_success_timestamp_seconds"]; ok {
				t.Errorf("gauges hold a timestamp, which is no level to plot: %v", g)
			}
			delivered.Reset()
			dur.Observe(0) // keep the histogram moving for the next target
			pending.Set(0)
		})
	}
}
