package outbox

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/promreg"
)

// Metrics are the outbox's Prometheus metrics, labelled by kind ("patch",
// "log") and, for drops, by reason.
type Metrics struct {
	depth     *prometheus.GaugeVec
	delivered *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	retries   *prometheus.CounterVec
	unknown   *prometheus.CounterVec
	bytes     *prometheus.GaugeVec
	merged    prometheus.Counter
	// queueDropped counts reports dropped because the report queue was
	// full (in the store, when the report was queued).
	queueDropped prometheus.Counter
}

// NewMetrics builds the metrics and registers them on reg (nil: not
// registered). Metrics already registered on reg are reused.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	f := promreg.Named(reg, "depharness", "proxy")
	m := &Metrics{
		depth:     f.GaugeVec("outbox_depth", "Rows waiting in the outbox for the cloud, by kind.", "kind"),
		delivered: f.CounterVec("outbox_delivered_total", "Outbox rows the cloud took, by kind.", "kind"),
		dropped: f.CounterVec("outbox_dropped_total",
			"Outbox rows dropped undelivered, by kind and reason (patch rejected: the cloud refused it for good, 4xx other than 401; log refused_400, refused_413: the cloud refused the line alone; undecodable).", "kind", "reason"),
		retries: f.CounterVec("outbox_retries_total",
			"Outbox delivery rounds that failed because the cloud (or the store) was unavailable, by kind.", "kind"),
		unknown: f.CounterVec("outbox_unknown_outcomes_total",
			"Outbox cloud calls sent without an answer (timeout or connection lost after sending): the cloud may have taken them; their rows are sent again, by kind.", "kind"),
	}
	m.bytes = f.GaugeVec("outbox_bytes",
		"Payload bytes of the rows waiting in the outbox for the cloud, by kind (bounded by LOG_BUFFER_BYTES and REPORT_QUEUE_BYTES).", "kind")
	m.merged = f.Counter("outbox_reports_merged_total",
		"Queued reports merged into a newer report of the same device (DEV-PUT-6).")
	m.queueDropped = f.Counter("outbox_reports_dropped_total",
		"Queued reports dropped, oldest first, because the report queue was over REPORT_QUEUE_BYTES.")
	return m, f.Err()
}
