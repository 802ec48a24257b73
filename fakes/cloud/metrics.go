package cloud

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/promreg"
)

// Metrics are the fake cloud's Prometheus metrics (namespace "depharness",
// subsystem "cloud"). Labels carry route names, never uuids.
type Metrics struct {
	requests     promreg.Requests
	devices      prometheus.Gauge
	logLines     *prometheus.CounterVec
	stateRenders prometheus.Counter
	// stateSaves and stateSaveErrors count writes of the state file.
	stateSaves, stateSaveErrors prometheus.Counter
}

// NewMetrics builds the metrics and registers them on reg (nil: unregistered);
// metrics already registered on reg by an earlier fake cloud are reused.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	f := promreg.Named(reg, "depharness", "cloud")
	m := &Metrics{
		requests: f.Requests("",
			"Protocol requests answered by the fake cloud, by route and status code (\"closed\" when the connection was dropped).",
			"Time to answer a protocol request, including injected delays, by route.", []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}, "route"),
		devices: f.Gauge("devices", "Dependent devices known to the fake cloud."),
		logLines: f.CounterVec("log_lines_total",
			"Log lines received on log streams, by result (stored, unknown_device).", "result"),
		stateRenders: f.Counter("state_renders_total",
			"Target state documents rendered (a cached document answers without rendering)."),
		stateSaves: f.Counter("state_file_saves_total",
			"Writes of the state file (only with a state file; unchanged models are not written)."),
		stateSaveErrors: f.Counter("state_file_save_errors_total",
			"Failed writes of the state file (the previous file stays)."),
	}
	return m, f.Err()
}
