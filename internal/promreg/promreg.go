// Package promreg builds and registers the Prometheus collectors of the
// module's components (the reference proxy's parts, the fakes, the
// gateway), each component's metrics on an injected registerer.
//
// It depends on the Prometheus client only.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Factory builds collectors and registers them on one registerer: the
// shape of client_golang's promauto.With(reg), with two differences the
// components need. A collector equal to one already registered is
// replaced by that one, so a component built twice on one registry (a
// proxy restarted in one process, a test building two) keeps counting in
// the registered collector where promauto would panic; and any other
// registration error is kept for Err instead of panicking.
type Factory struct {
	reg prometheus.Registerer
	err error
}

// With returns a Factory registering on reg. A nil reg registers nothing:
// the collectors still count.
func With(reg prometheus.Registerer) *Factory { return &Factory{reg: reg} }

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
