package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/promreg"
)

// Metrics are the API's Prometheus metrics. Routes are labelled by their
// path template (/v1/devices/{uuid}), never by a uuid; "other" is every path
// no route matches.
type Metrics struct {
	requests    promreg.Requests
	logsDropped prometheus.Counter
	logsCut     prometheus.Counter
}

// NewMetrics builds the metrics and registers them on reg (nil: not
// registered). Metrics already registered on reg are reused.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	f := promreg.Named(reg, "depharness", "proxy")
	m := &Metrics{
		requests: f.Requests("http_", "Supervisor API requests by route template, method and status code.",
			"Supervisor API request duration by route template and method.", prometheus.ExponentialBuckets(0.0001, 4, 10), "route", "method"),
		logsDropped: f.Counter("log_buffer_dropped_total",
			"Log lines dropped, oldest first, because the durable log buffer was full (LOG_BUFFER_LINES or LOG_BUFFER_BYTES)."),
		logsCut: f.Counter("log_lines_truncated_total",
			"Log lines accepted with their message cut to fit LOG_LINE_MAX_BYTES."),
	}
	return m, f.Err()
}
