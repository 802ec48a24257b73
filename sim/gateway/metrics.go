package gateway

import (
	"github.com/depharness/depharness/internal/promreg"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's counters, all named depharness_gateway_*.
// Gauges of device states are computed at scrape time (see New).
type Metrics struct {
	// HooksReceived counts hooks by kind (update, restart, delete) and the
	// status the gateway answered.
	HooksReceived *prometheus.CounterVec
	// Reports counts PUT /v1/devices/{uuid} by result (ok, error).
	Reports *prometheus.CounterVec
	// Errors counts failures by operation (adopt, provision, download,
	// report, log, flash).
	Errors *prometheus.CounterVec
	// Flashes counts finished flashes by result (ok, checksum_mismatch,
	// bad_firmware, flash_failed).
	Flashes *prometheus.CounterVec
	// Reconfigurations counts targets that changed only environment or
	// config, applied to a device running the commit without a flash.
	Reconfigurations prometheus.Counter
	// AssetDownloads counts asset downloads (one per app and commit).
	AssetDownloads prometheus.Counter
	// AssetBytes counts downloaded asset bytes.
	AssetBytes prometheus.Counter
	// LogsForwarded and LogsDropped count device log lines sent to the
	// supervisor, and dropped because the forwarding queue was full.
	LogsForwarded prometheus.Counter
	LogsDropped   prometheus.Counter
	// Provisioned counts devices provisioned (POST /v1/devices); Adopted
	// counts devices a previous run provisioned that this run manages again.
	Provisioned prometheus.Counter
	Adopted     prometheus.Counter
	// UpdateDuration observes the time from an update hook with a new
	// target to the report that the device runs it.
	UpdateDuration prometheus.Histogram
}

// NewMetrics builds the gateway's counters and registers them on reg (nil:
// not registered); metrics already registered on reg by an earlier gateway
// are reused. It panics if a metric of another shape holds one of the names.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promreg.Named(reg, "depharness", "gateway")
	m := &Metrics{
		HooksReceived: f.CounterVec("hooks_received_total",
			"Hooks received from the supervisor, by kind and answered status.", "kind", "answer"),
		Reports: f.CounterVec("reports_total",
			"Device state reports sent to the supervisor, by result.", "result"),
		Errors:  f.CounterVec("errors_total", "Failed operations, by operation.", "op"),
		Flashes: f.CounterVec("flashes_total", "Finished firmware flashes, by result.", "result"),
		Reconfigurations: f.Counter("reconfigurations_total",
			"Targets that changed only environment or config, applied without a flash."),
		AssetDownloads: f.Counter("asset_downloads_total", "Asset downloads from the supervisor."),
		AssetBytes: f.Counter("asset_downloaded_bytes_total",
			"Bytes of assets downloaded from the supervisor."),
		LogsForwarded: f.Counter("logs_forwarded_total", "Device log lines sent to the supervisor."),
		LogsDropped: f.Counter("logs_dropped_total",
			"Device log lines dropped because the forwarding queue was full."),
		Provisioned: f.Counter("devices_provisioned_total",
			"Devices provisioned through the supervisor."),
		Adopted: f.Counter("devices_adopted_total",
			"Devices the supervisor already had for the gateway's apps, managed again at start."),
		UpdateDuration: f.Histogram("update_duration_seconds",
			"Time from an update hook with a new target to the report that the device runs it.", prometheus.ExponentialBuckets(0.005, 2, 16)),
	}
	if err := f.Err(); err != nil {
		panic(err)
	}
	// Every series the gateway can move exists from the start, at zero, so
	// that a dashboard shows 0 rather than "No data" before the first event.
	for vec, series := range map[*prometheus.CounterVec][][]string{
		// The hook kinds and answers of a normal run (update hooks
		// answered 200 or 202 by policy).
		m.HooksReceived: {{"update", "200"}, {"update", "202"}, {"restart", "200"}, {"delete", "200"}},
		m.Reports:       {{"ok"}, {"error"}},
		m.Flashes:       {{"ok"}, {"flash_failed"}, {"checksum_mismatch"}, {"bad_firmware"}},
		m.Errors:        {{"adopt"}, {"provision"}, {"download"}, {"flash"}, {"report"}, {"log"}},
	} {
		for _, labels := range series {
			vec.WithLabelValues(labels...)
		}
	}
	return m
}

// stateCollector computes the gateway's gauges at scrape time.
type stateCollector struct {
	g                          *Gateway
	devices, online, converged *prometheus.Desc
	managed                    *prometheus.Desc
}

func newStateCollector(g *Gateway) *stateCollector {
	const ns, sub = "depharness", "gateway"
	return &stateCollector{
		g:         g,
		devices:   prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "devices"), "Managed devices by firmware state.", []string{"state"}, nil),
		online:    prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "devices_online"), "Managed devices that are online.", nil, nil),
		converged: prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "converged_devices"), "Managed devices whose reported state equals their latest target.", nil, nil),
		managed:   prometheus.NewDesc(prometheus.BuildFQName(ns, sub, "managed_devices"), "Devices provisioned or adopted and not deleted.", nil, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.devices
	ch <- c.online
	ch <- c.converged
	ch <- c.managed
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.Stats()
	for _, st := range fleet.States {
		ch <- prometheus.MustNewConstMetric(c.devices, prometheus.GaugeValue, float64(s.States[st]), string(st))
	}
	ch <- prometheus.MustNewConstMetric(c.online, prometheus.GaugeValue, float64(s.Online))
	ch <- prometheus.MustNewConstMetric(c.converged, prometheus.GaugeValue, float64(s.Converged))
	ch <- prometheus.MustNewConstMetric(c.managed, prometheus.GaugeValue, float64(s.Managed))
}
