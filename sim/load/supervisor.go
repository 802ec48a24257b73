package load

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MetricsSource returns the supervisor's metric families: the in-process
// proxy's registry, or a scrape of an external supervisor's /metrics. The
// scenarios read its counters, histograms and gauges (hooks pending, outbox
// depth) to show where time goes inside the supervisor; a supervisor
// without metrics leaves those sections out.
type MetricsSource func(ctx context.Context) ([]*dto.MetricFamily, error)

// ScrapeMetrics is a MetricsSource that scrapes url (Prometheus text
// format). hc, if nil, is a client with a 10 s timeout.
func ScrapeMetrics(url string, hc *http.Client) MetricsSource {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return func(ctx context.Context) ([]*dto.MetricFamily, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "text/plain; version=0.0.4")
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		m, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("scraping %s: %w", url, err)
		}
		out := make([]*dto.MetricFamily, 0, len(m))
		for _, mf := range m {
			out = append(out, mf)
		}
		return out, nil
	}
}

// SupervisorFigures are what the supervisor's own metrics say about a
// phase: growth of its counters, count and mean of its histograms'
// observations during the phase, and the peaks of its gauges as sampled.
type SupervisorFigures struct {
	Counters   map[string]float64   `json:"counters,omitempty"`
	Histograms map[string]HistDelta `json:"histograms,omitempty"`
	GaugePeaks map[string]float64   `json:"gauge_peaks,omitempty"`
}

// HistDelta is the observations a histogram gained during a phase. Mean
// is in the histogram's unit, except that of *_seconds histograms, which is
// in milliseconds.
type HistDelta struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
}

// metricPoint is one series: a counter or gauge value, or a histogram's
// count and sum.
type metricPoint struct {
	kind  dto.MetricType
	value float64
	count uint64
}

// flatten keys every series of mfs as name{label="value",...}, without the
// Go runtime's and process's own series.
func flatten(mfs []*dto.MetricFamily) map[string]metricPoint {
	out := map[string]metricPoint{}
	for _, mf := range mfs {
		name := mf.GetName()
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			ls := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := name
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			p := metricPoint{kind: mf.GetType()}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				p.value = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				p.value = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				p.value, p.count = m.GetHistogram().GetSampleSum(), m.GetHistogram().GetSampleCount()
			case dto.MetricType_SUMMARY:
				p.value, p.count = m.GetSummary().GetSampleSum(), m.GetSummary().GetSampleCount()
			default:
				continue
			}
			out[key] = p
		}
	}
	return out
}

// gauges returns the gauge series of a flattened scrape.
func gauges(pts map[string]metricPoint) map[string]float64 {
	out := map[string]float64{}
	for k, p := range pts {
		if name, _, _ := strings.Cut(k, "{"); p.kind == dto.MetricType_GAUGE && !strings.HasSuffix(name, "_timestamp_seconds") {
			out[k] = p.value
		}
	}
	return out
}

// delta compares two flattened scrapes taken at a phase's start and end.
func delta(before, after map[string]metricPoint) SupervisorFigures {
	f := SupervisorFigures{Counters: map[string]float64{}, Histograms: map[string]HistDelta{}}
	for k, a := range after {
		b := before[k]
		switch a.kind {
		case dto.MetricType_COUNTER:
			if d := a.value - b.value; d > 0 {
				f.Counters[k] = d
			}
		case dto.MetricType_HISTOGRAM, dto.MetricType_SUMMARY:
			if n := a.count - b.count; a.count > b.count {
				mean := (a.value - b.value) / float64(n)
				if name, _, _ := strings.Cut(k, "{"); strings.HasSuffix(name, "_seconds") {
					mean *= 1000
				}
				f.Histograms[k] = HistDelta{Count: n, Mean: round3(mean)}
			}
		}
	}
	return f
}
