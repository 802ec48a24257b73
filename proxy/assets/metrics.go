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
	f := promreg.With(reg)
	m := &Metrics{
		builds: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "asset_builds_total",
			Help: "Asset tar builds by outcome (success, failure).",
		}, []string{"outcome"}),
		buildDuration: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name:    "asset_build_duration_seconds",
			Help:    "Duration of asset tar builds (pull and flatten), retries included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 9),
		}),
		buildRetries: f.NewCounter(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "asset_build_retries_total",
			Help: "Build attempts repeated after a registry fault or a corrupt transfer.",
		}),
		hits: f.NewCounter(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "asset_cache_hits_total",
			Help: "Ensure calls that found the asset tar already on disk.",
		}),
		misses: f.NewCounter(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "asset_cache_misses_total",
			Help: "Ensure calls that had to build (or wait for a build of) the asset tar.",
		}),
		bytesServed: f.NewCounter(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "asset_bytes_served_total",
			Help: "Bytes of asset tars written to HTTP clients.",
		}),
		pullBytes: f.NewCounter(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "image_pull_bytes_total",
			Help: "Bytes of registry response bodies read while pulling images.",
		}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "asset_entries_dropped_total",
			Help: "Entries under /assets left out of asset tars, by reason (link-outside, link-loop, link-conflict, hardlink-target, device, fifo, other-type).",
		}, []string{"reason"}),
		tooLarge: f.NewCounter(prometheus.CounterOpts{
			Namespace: "depharness", Subsystem: "proxy",
			Name: "asset_too_large_total",
			Help: "Releases whose asset tar exceeded ASSET_MAX_BYTES: each counted once, and not pulled again by this process.",
		}),
	}
	return m, f.Err()
}
