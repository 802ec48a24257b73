// Package promreg builds and registers the Prometheus collectors of the
// module's components (the reference proxy's parts, the fakes, the
// gateway), each component's metrics on an injected registerer.
//
// It depends on the Prometheus client only.
package promreg

import (
	"errors"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Factory builds collectors and registers them on one registerer: the
// shape of client_golang's promauto.With(reg), with two differences the
// components need. A collector equal to one already registered is
// replaced by that one, so a component built twice on one registry (a
// proxy restarted in one process, a test building two) keeps counting in
// the registered collector where promauto would panic; and any other
// registration error is kept for Err instead of panicking.
//
// A Factory from Named also has short constructors (Counter, CounterVec,
// Gauge, GaugeVec, Histogram, HistogramVec, Requests) that take a metric's
// name within the namespace and subsystem, its help and its labels.
type Factory struct {
	reg                  prometheus.Registerer
	namespace, subsystem string
	err                  error
}

// With returns a Factory registering on reg. A nil reg registers nothing:
// the collectors still count.
func With(reg prometheus.Registerer) *Factory { return &Factory{reg: reg} }

// Named returns a Factory registering on reg whose short constructors name
// every metric namespace_subsystem_name. A nil reg registers nothing.
func Named(reg prometheus.Registerer, namespace, subsystem string) *Factory {
	return &Factory{reg: reg, namespace: namespace, subsystem: subsystem}
}

// Err is every registration error so far, joined; nil if none.
func (f *Factory) Err() error { return f.err }

// NewCounter builds and registers a counter.
func (f *Factory) NewCounter(opts prometheus.CounterOpts) prometheus.Counter {
	return register(f, prometheus.NewCounter(opts))
}

// NewCounterVec builds and registers a counter vector.
func (f *Factory) NewCounterVec(opts prometheus.CounterOpts, labels []string) *prometheus.CounterVec {
	return register(f, prometheus.NewCounterVec(opts, labels))
}

// NewGauge builds and registers a gauge.
func (f *Factory) NewGauge(opts prometheus.GaugeOpts) prometheus.Gauge {
	return register(f, prometheus.NewGauge(opts))
}

// NewGaugeVec builds and registers a gauge vector.
func (f *Factory) NewGaugeVec(opts prometheus.GaugeOpts, labels []string) *prometheus.GaugeVec {
	return register(f, prometheus.NewGaugeVec(opts, labels))
}

// NewHistogram builds and registers a histogram.
func (f *Factory) NewHistogram(opts prometheus.HistogramOpts) prometheus.Histogram {
	return register(f, prometheus.NewHistogram(opts))
}

// NewHistogramVec builds and registers a histogram vector.
func (f *Factory) NewHistogramVec(opts prometheus.HistogramOpts, labels []string) *prometheus.HistogramVec {
	return register(f, prometheus.NewHistogramVec(opts, labels))
}

func (f *Factory) opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: f.namespace, Subsystem: f.subsystem, Name: name, Help: help}
}

// Counter builds and registers the counter name.
func (f *Factory) Counter(name, help string) prometheus.Counter {
	return f.NewCounter(prometheus.CounterOpts(f.opts(name, help)))
}

// CounterVec builds and registers the counter vector name over labels.
func (f *Factory) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return f.NewCounterVec(prometheus.CounterOpts(f.opts(name, help)), labels)
}

// Gauge builds and registers the gauge name.
func (f *Factory) Gauge(name, help string) prometheus.Gauge {
	return f.NewGauge(prometheus.GaugeOpts(f.opts(name, help)))
}

// GaugeVec builds and registers the gauge vector name over labels.
func (f *Factory) GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return f.NewGaugeVec(prometheus.GaugeOpts(f.opts(name, help)), labels)
}

// Histogram builds and registers the histogram name with buckets (nil:
// prometheus.DefBuckets).
func (f *Factory) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	return f.NewHistogram(f.histogramOpts(name, help, buckets))
}

// HistogramVec builds and registers the histogram vector name over labels,
// with buckets (nil: prometheus.DefBuckets).
func (f *Factory) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return f.NewHistogramVec(f.histogramOpts(name, help, buckets), labels)
}

func (f *Factory) histogramOpts(name, help string, buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{Namespace: f.namespace, Subsystem: f.subsystem, Name: name, Help: help, Buckets: buckets}
}

// Requests are the two metrics of the requests a component serves or
// sends: a count by some labels and the answer's code, and their
// durations by the same labels without the code.
type Requests struct {
	Count    *prometheus.CounterVec
	Duration *prometheus.HistogramVec
}

// Requests builds and registers the counter vector prefix+"requests_total"
// over labels and "code", and the histogram vector
// prefix+"request_duration_seconds" over labels, with buckets (nil:
// prometheus.DefBuckets).
func (f *Factory) Requests(prefix, countHelp, durationHelp string, buckets []float64, labels ...string) Requests {
	return Requests{
		Count:    f.CounterVec(prefix+"requests_total", countHelp, append(slices.Clip(labels), "code")...),
		Duration: f.HistogramVec(prefix+"request_duration_seconds", durationHelp, buckets, labels...),
	}
}

// Observe counts a request answered with code and records that it took d;
// labels are its values of the labels given to Factory.Requests, in their
// order.
func (r Requests) Observe(code string, d time.Duration, labels ...string) {
	var buf [4]string // up to three labels and the code: no allocation
	r.Count.WithLabelValues(append(append(buf[:0], labels...), code)...).Inc()
	r.Duration.WithLabelValues(labels...).Observe(d.Seconds())
}

func register[C prometheus.Collector](f *Factory, c C) C {
	if f.reg == nil {
		return c
	}
	got, err := Register(f.reg, c)
	if err != nil {
		f.err = errors.Join(f.err, err)
	}
	return got
}

// Register registers c on reg, or returns the equal collector already
// registered there. Any other registration error is returned.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
