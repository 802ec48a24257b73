package cloud

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/promreg"
)

// Metrics are the fake cloud's Prometheus metrics (namespace "depharness",
// subsystem "cloud"). Labels carry route names, never uuids.
type Metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	devices      prometheus.Gauge
	logLines     *prometheus.CounterVec
	stateRenders prometheus.Counter
	// stateSaves and stateSaveErrors count writes of the state file.
	stateSaves, stateSaveErrors prometheus.Counter
}

// NewMetrics builds the metrics and registers them on reg (nil: unregistered);
// metrics already registered on reg by an earlier fake cloud are reused.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	f := promreg.With(reg)
	m := &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "cloud", Name: "requests_total",
			Help: "Protocol requests answered by the fake cloud, by route and status code (\"closed\" when the connection was dropped).",
		}, []string{"route", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "depharness", Subsystem: "cloud", Name: "request_duration_seconds",
			Help:    "Time to answer a protocol request, including injected delays, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		devices: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "depharness", Subsystem: "cloud", Name: "devices",
			Help: "Dependent devices known to the fake cloud.",
		}),
		logLines: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "cloud", Name: "log_lines_total",
			Help: "Log lines received on log streams, by result (stored, unknown_device).",
		}, []string{"result"}),
		stateRenders: f.NewCounter(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "cloud", Name: "state_renders_total",
			Help: "Target state documents rendered (a cached document answers without rendering).",
		}),
		stateSaves: f.NewCounter(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "cloud", Name: "state_file_saves_total",
			Help: "Writes of the state file (only with a state file; unchanged models are not written).",
		}),
		stateSaveErrors: f.NewCounter(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "cloud", Name: "state_file_save_errors_total",
			Help: "Failed writes of the state file (the previous file stays).",
		}),
	}
	return m, f.Err()
}
