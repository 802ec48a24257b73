package cloudclient

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/promreg"
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
	f := promreg.With(reg)
	m := &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "cloud_requests_total",
			Help: "Requests to the cloud by call and HTTP status (\"error\": no answer).",
		}, []string{"call", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name:    "cloud_request_duration_seconds",
			Help:    "Duration of requests to the cloud by call.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"call"}),
	}
	return m, f.Err()
}
