package assets

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/promreg"
)

// Metrics are the asset cache's Prometheus metrics. Labels hold outcomes
// only, never an app id, a commit or an image reference.
type Metrics struct {
	builds        *prometheus.CounterVec
	buildDuration prometheus.Histogram
	buildRetries  prometheus.Counter
	hits          prometheus.Counter
	misses        prometheus.Counter
	bytesServed   prometheus.Counter
	pullBytes     prometheus.Counter
	dropped       *prometheus.CounterVec
	tooLarge      prometheus.Counter
}

// NewMetrics builds the metrics and registers them on reg (nil: not
// registered). Metrics already registered on reg by an earlier cache are
// reused, so a proxy restarted in one process keeps counting.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	f := promreg.Named(reg, "depharness", "proxy")
	m := &Metrics{
		builds: f.CounterVec("asset_builds_total",
			"Asset tar builds by outcome (success, failure).", "outcome"),
		buildDuration: f.Histogram("asset_build_duration_seconds",
			"Duration of asset tar builds (pull and flatten), retries included.", prometheus.ExponentialBuckets(0.01, 4, 9)),
		buildRetries: f.Counter("asset_build_retries_total",
			"Build attempts repeated after a registry fault or a corrupt transfer."),
		hits: f.Counter("asset_cache_hits_total",
			"Ensure calls that found the asset tar already on disk."),
		misses: f.Counter("asset_cache_misses_total",
			"Ensure calls that had to build (or wait for a build of) the asset tar."),
		bytesServed: f.Counter("asset_bytes_served_total", "Bytes of asset tars written to HTTP clients."),
		pullBytes: f.Counter("image_pull_bytes_total",
			"Bytes of registry response bodies read while pulling images."),
		dropped: f.CounterVec("asset_entries_dropped_total",
			"Entries under /assets left out of asset tars, by reason (link-outside, link-loop, link-conflict, hardlink-target, device, fifo, other-type).", "reason"),
		tooLarge: f.Counter("asset_too_large_total",
			"Releases whose asset tar exceeded ASSET_MAX_BYTES: each counted once, and not pulled again by this process."),
	}
	return m, f.Err()
}
