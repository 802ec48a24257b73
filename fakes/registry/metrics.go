package registry

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/promreg"
)

// Metrics are the fake registry's Prometheus metrics.
type Metrics struct {
	// Requests counts requests by kind (manifest, blob, upload, tags,
	// catalog, base, other), method and status code.
	Requests *prometheus.CounterVec
	// BlobBytes counts the bytes of blob bodies served to pulls.
	BlobBytes prometheus.Counter
	// Faults counts requests a fault was injected into, by fault (fail,
	// corrupt, throttle).
	Faults *prometheus.CounterVec
}

// NewMetrics creates the registry's metrics and registers them on reg. A nil
// reg leaves them unregistered (they still count); metrics already registered
// on reg by an earlier registry are reused. It panics if a metric of another
// shape holds one of the names.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promreg.Named(reg, "depharness", "registry")
	m := &Metrics{
		Requests: f.CounterVec("requests_total",
			"Registry requests by kind (manifest, blob, upload, tags, catalog, base, other), method and status code.", "kind", "method", "code"),
		BlobBytes: f.Counter("blob_bytes_total", "Bytes of blob bodies served to pulls."),
		Faults: f.CounterVec("faults_total",
			"Requests a fault was injected into, by fault (fail, corrupt, throttle).", "fault"),
	}
	if err := f.Err(); err != nil {
		panic(err)
	}
	return m
}
