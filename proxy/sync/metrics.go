package sync

import (
	stdsync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/promreg"
)

// Metrics are the syncer's Prometheus metrics. Labels hold outcomes only.
type Metrics struct {
	polls           *prometheus.CounterVec
	rejected        prometheus.Counter
	lookups         *prometheus.CounterVec
	lastSuccess     prometheus.Gauge
	age             prometheus.Gauge
	downloading     prometheus.Gauge
	downloads       *prometheus.CounterVec
	downloadSeconds prometheus.Histogram

	mu   stdsync.Mutex
	last time.Time // of the last successful poll
}

// NewMetrics builds the metrics and registers them on reg (nil: not
// registered). Metrics already registered on reg are reused.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	f := promreg.Named(reg, "depharness", "proxy")
	m := &Metrics{
		polls: f.CounterVec("sync_polls_total",
			"Polls of the cloud's target state by outcome (applied, not_modified, rejected, error).", "outcome"),
		rejected: f.Counter("sync_rejected_targets_total",
			"Target states rejected whole as malformed; the last good one stays in force."),
		lookups: f.CounterVec("sync_device_lookups_total",
			"Lookups of target devices unknown to the store (found, not_found, error).", "outcome"),
		lastSuccess: f.Gauge("sync_last_success_timestamp_seconds",
			"Unix time of the last poll that left the store holding the cloud's target."),
		age:         f.Gauge("sync_age_seconds", "Seconds since the last successful poll (0 before the first)."),
		downloading: f.Gauge("sync_apps_downloading", "Apps whose target release is being downloaded."),
		downloads:   f.CounterVec("sync_downloads_total", "Release download attempts by outcome (ok, error).", "outcome"),
		downloadSeconds: f.Histogram("sync_download_duration_seconds",
			"Duration of successful release downloads (pull and assets tar).", prometheus.ExponentialBuckets(0.01, 4, 9)),
	}
	return m, f.Err()
}

// succeeded records a successful poll at now.
func (m *Metrics) succeeded(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last = now
	m.lastSuccess.Set(float64(now.UnixMilli()) / 1000)
	m.age.Set(0)
}

// observeAge updates the age gauge.
func (m *Metrics) observeAge(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last.IsZero() {
		return
	}
	m.age.Set(max(now.Sub(m.last), 0).Seconds())
}
