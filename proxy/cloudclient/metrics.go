package cloudclient

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the cloud client's Prometheus metrics. Labels hold call names
// and status codes only, never a uuid or the key.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics builds the metrics and registers them on reg (nil: not
// registered). Metrics already registered on reg by an earlier client are
// reused, so a proxy restarted in one process keeps counting.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "cloud_requests_total",
			Help: "Requests to the cloud by call and HTTP status (\"error\": no answer).",
		}, []string{"call", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name:    "cloud_request_duration_seconds",
			Help:    "Duration of requests to the cloud by call.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"call"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c on reg, or returns the equal collector already there.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
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
