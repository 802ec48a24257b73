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
	f := promreg.Named(reg, "depharness", "proxy")
	m := &Metrics{
		requests: f.CounterVec("cloud_requests_total",
			"Requests to the cloud by call and HTTP status (\"error\": no answer).", "call", "code"),
		duration: f.HistogramVec("cloud_request_duration_seconds",
			"Duration of requests to the cloud by call.", prometheus.ExponentialBuckets(0.001, 4, 9), "call"),
	}
	return m, f.Err()
}
