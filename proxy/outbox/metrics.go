package outbox

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/proxy/internal/promreg"
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
	m := &Metrics{
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "outbox_depth",
			Help: "Rows waiting in the outbox for the cloud, by kind.",
		}, []string{"kind"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "outbox_delivered_total",
			Help: "Outbox rows the cloud took, by kind.",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "outbox_dropped_total",
			Help: "Outbox rows dropped undelivered, by kind and reason (patch rejected: the cloud refused it for good, 4xx other than 401; log refused_400, refused_413: the cloud refused the line alone; undecodable).",
		}, []string{"kind", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "outbox_retries_total",
			Help: "Outbox delivery rounds that failed because the cloud (or the store) was unavailable, by kind.",
		}, []string{"kind"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "outbox_unknown_outcomes_total",
			Help: "Outbox cloud calls sent without an answer (timeout or connection lost after sending): the cloud may have taken them; their rows are sent again, by kind.",
		}, []string{"kind"}),
	}
	m.bytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "depharness", Subsystem: "proxy",
		Name: "outbox_bytes",
		Help: "Payload bytes of the rows waiting in the outbox for the cloud, by kind (bounded by LOG_BUFFER_BYTES and REPORT_QUEUE_BYTES).",
	}, []string{"kind"})
	m.merged = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "depharness", Subsystem: "proxy",
		Name: "outbox_reports_merged_total",
		Help: "Queued reports merged into a newer report of the same device (DEV-PUT-6).",
	})
	m.queueDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "depharness", Subsystem: "proxy",
		Name: "outbox_reports_dropped_total",
		Help: "Queued reports dropped, oldest first, because the report queue was over REPORT_QUEUE_BYTES.",
	})
	if reg == nil {
		return m, nil
	}
	var err error
	if m.depth, err = promreg.Register(reg, m.depth); err != nil {
		return nil, err
	}
	if m.delivered, err = promreg.Register(reg, m.delivered); err != nil {
		return nil, err
	}
	if m.dropped, err = promreg.Register(reg, m.dropped); err != nil {
		return nil, err
	}
	if m.retries, err = promreg.Register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.unknown, err = promreg.Register(reg, m.unknown); err != nil {
		return nil, err
	}
	if m.bytes, err = promreg.Register(reg, m.bytes); err != nil {
		return nil, err
	}
	if m.merged, err = promreg.Register(reg, m.merged); err != nil {
		return nil, err
	}
	if m.queueDropped, err = promreg.Register(reg, m.queueDropped); err != nil {
		return nil, err
	}
	return m, nil
}
