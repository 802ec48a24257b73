package hooks

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/promreg"
)

// Kind is a kind of hook; its value is the metric label value. The zero
// value means none.
type Kind string

// Hook kinds.
const (
	KindUpdate  Kind = "update"
	KindDelete  Kind = "delete"
	KindRestart Kind = "restart"
)

// Delivery outcomes, as metric label values.
const (
	OutcomeOK       = "ok"       // 200: acknowledged
	OutcomeAccepted = "accepted" // 202 to an update hook: resent until reported
	OutcomeRejected = "rejected" // any other status: retried with backoff
	OutcomeFailed   = "failed"   // connection failure or timeout: retried with backoff
)

// Metrics are the dispatcher's Prometheus metrics. Labels hold hook kinds and
// outcomes only, never a uuid.
type Metrics struct {
	deliveries *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	ackLatency prometheus.Histogram
	pending    *prometheus.GaugeVec
	// scheduleFull is 1 while the schedule holds its bound and more devices
	// may be owed a hook in the store.
	scheduleFull prometheus.Gauge
}

// NewMetrics builds the metrics and registers them on reg (nil: not
// registered). Metrics already registered on reg by an earlier dispatcher
// are reused, so a proxy restarted in one process keeps counting.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	f := promreg.Named(reg, "depharness", "proxy")
	m := &Metrics{
		deliveries: f.CounterVec("hook_deliveries_total",
			"Hooks sent to the gateway app by kind (update, delete, restart) and outcome (ok, accepted, rejected, failed).", "kind", "outcome"),
		duration: f.HistogramVec("hook_duration_seconds",
			"Duration of hook requests by kind.", prometheus.ExponentialBuckets(0.0005, 4, 10), "kind"),
		ackLatency: f.Histogram("hook_ack_latency_seconds",
			"Time from a device's update target appearing to the gateway acknowledging its update hook with 200.", prometheus.ExponentialBuckets(0.005, 3, 12)),
		pending: f.GaugeVec("hooks_pending",
			"Devices owed a hook in the schedule, by the kind sent next (delete before restart before update); see hooks_schedule_full.", "kind"),
		scheduleFull: f.Gauge("hooks_schedule_full",
			"1 while the hook schedule holds its bound of devices and more devices may wait in the store for a hook; hooks_pending then counts the scheduled ones only."),
	}
	for _, k := range []Kind{KindUpdate, KindDelete, KindRestart} {
		m.pending.WithLabelValues(string(k))
	}
	return m, f.Err()
}
