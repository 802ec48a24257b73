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
			Help: "Outbox rows dropped undelivered, by kind and reason (rejected: the cloud refused it for good; undecodable).",
		}, []string{"kind", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "outbox_retries_total",
			Help: "Outbox delivery rounds that failed because the cloud (or the store) was unavailable, by kind.",
		}, []string{"kind"}),
	}
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
	return m, nil
}
