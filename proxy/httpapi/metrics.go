package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/proxy/internal/promreg"
)

// Metrics are the API's Prometheus metrics. Routes are labelled by their
// path template (/v1/devices/{uuid}), never by a uuid; "other" is every path
// no route matches.
type Metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	logsDropped prometheus.Counter
	logsCut     prometheus.Counter
}

// NewMetrics builds the metrics and registers them on reg (nil: not
// registered). Metrics already registered on reg are reused.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "http_requests_total",
			Help: "Supervisor API requests by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name:    "http_request_duration_seconds",
			Help:    "Supervisor API request duration by route template and method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"route", "method"}),
		logsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "log_buffer_dropped_total",
			Help: "Log lines dropped, oldest first, because the durable log buffer was full (LOG_BUFFER_LINES or LOG_BUFFER_BYTES).",
		}),
		logsCut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "log_lines_truncated_total",
			Help: "Log lines accepted with their message cut to fit LOG_LINE_MAX_BYTES.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = promreg.Register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = promreg.Register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.logsDropped, err = promreg.Register(reg, m.logsDropped); err != nil {
		return nil, err
	}
	if m.logsCut, err = promreg.Register(reg, m.logsCut); err != nil {
		return nil, err
	}
	return m, nil
}
