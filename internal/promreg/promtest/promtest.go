// Package promtest holds the checks the module's tests make on Prometheus
// metrics: that a registry's metrics are lint clean and carry no
// identifier in a label, and the sum of the series of a family that match
// some labels, from a registry or a scraped page, and the value one
// collector holds.
//
// It is for tests only: only _test.go files import it (internal/depcheck
// enforces this). It depends on the Prometheus client only.
package promtest

import (
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// CheckHygiene fails t (t.Errorf) for every problem testutil.GatherAndLint
// finds in g's metrics, and for every label whose value holds one of
// secrets (a key, a uuid): labels carry route templates and outcomes,
// never identifiers.
func CheckHygiene(t testing.TB, g prometheus.Gatherer, secrets ...string) {
	t.Helper()
	problems, err := testutil.GatherAndLint(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	for _, mf := range Gather(t, g) {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				for _, s := range secrets {
					if strings.Contains(lp.GetValue(), s) {
						t.Errorf("metric %s label %s=%q holds %q", mf.GetName(), lp.GetName(), lp.GetValue(), s)
					}
				}
			}
		}
	}
}

// Gather is g's metric families by name.
func Gather(t testing.TB, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		fams[mf.GetName()] = mf
	}
	return fams
}

// Parse reads a scraped page (the text format) into its metric families by
// name.
func Parse(t testing.TB, page io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(page)
	if err != nil {
		t.Fatalf("parsing the metrics page: %v", err)
	}
	return fams
}

// Series are the series of family name whose labels include match (nil:
// every series); none if fams has no such family.
func Series(fams map[string]*dto.MetricFamily, name string, match map[string]string) []*dto.Metric {
	var out []*dto.Metric
next:
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range match {
			if have[k] != v {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// Sum is the sum of the values of Series(fams, name, match): a counter's,
// a gauge's or an untyped value, a histogram's sample count.
func Sum(fams map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	var sum float64
	for _, m := range Series(fams, name, match) {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue() +
			float64(m.GetHistogram().GetSampleCount())
	}
	return sum
}

// WantValue fails t (t.Errorf) unless c, a collector of one metric (a
// counter, a gauge, one child of a vector), holds want; what names the
// metric in the message.
func WantValue(t testing.TB, what string, c prometheus.Collector, want float64) {
	t.Helper()
	if got := testutil.ToFloat64(c); got != want {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}
