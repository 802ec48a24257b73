package cloudclient

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/promreg"
)

// Metrics are the cloud client's Prometheus metrics. Labels hold call names
// and status codes only, never a uuid or the key.
type Metrics struct {
	requests promreg.Requests
}

// NewMetrics builds the metrics and registers them on reg (nil: not
// registered). Metrics already registered on reg by an earlier client are
// reused, so a proxy restarted in one process keeps counting.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	f := promreg.Named(reg, "depharness", "proxy")
	m := &Metrics{requests: f.Requests("cloud_",
		"Requests to the cloud by call and HTTP status (\"error\": no answer).",
		"Duration of requests to the cloud by call.", prometheus.ExponentialBuckets(0.001, 4, 9), "call")}
	return m, f.Err()
}
