package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// metricNameRE finds depharness metric names in the dashboard and rules.
var metricNameRE = regexp.MustCompile(`depharness_[a-z0-9_]+`)

// onlyAfterFaults are metric vectors that have no series until a fault or
// a failure labels one: a load run without faults cannot show them.
var onlyAfterFaults = map[string]bool{
	"depharness_registry_faults_total":      true,
	"depharness_proxy_outbox_retries_total": true,
	"depharness_proxy_outbox_dropped_total": true,
}

// TestPrometheusScrapesEveryComponentThroughARolloutLoad runs a real
// Prometheus (the Debian binary, as a host process) against the published
// metrics ports of every container while a fleet goes through three
// releases, then asserts through Prometheus's HTTP API that the key series
// exist and move: request rates of proxy and cloud, hook deliveries,
// converged devices, registry blob traffic. Every /metrics body must also
// pass `promtool check metrics` without a single remark.
func TestPrometheusScrapesEveryComponentThroughARolloutLoad(t *testing.T) {
	requireDocker(t)
	const devices = 40
	// Devices log about a line a second each and flash in 50–300 ms.
	w := startWorld(t, worldOptions{Devices: devices,
		Profile: `{"count": 1, "seed": 7, "logRate": 1, "flashTime": {"dist": "uniform", "min": "50ms", "max": "300ms"}}`})
	endpoints := map[string]string{
		"proxy":    w.Proxy.URL(t, proxyMetricsPort),
		"cloud":    w.Cloud.URL(t, cloudPort),
		"registry": w.Registry.URL(t, registryPort),
		"gateway":  w.Gateway.URL(t, gatewayMetricsPort),
	}
	var jobs []scrapeJob
	for name, u := range endpoints {
		jobs = append(jobs, scrapeJob{Name: name, Targets: []string{strings.TrimPrefix(u, "http://")}})
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	alerts := filepath.Join(root, "deploy", "alerts.yml")
	prom := startPrometheus(t, jobs, alerts)
	prom.AwaitQuery(t, 30*time.Second, `sum(up)`, func(s []promSample) bool { return len(s) == 1 && s[0].Value == float64(len(jobs)) })

	start := time.Now()
	r1 := w.pushRelease(t, "load-1")
	w.awaitConverged(t, 2*time.Minute, devices, r1.Commit)
	// Wait for a scrape that saw the first rollout, so that the next two
	// must move the counters.
	first := prom.AwaitQuery(t, 30*time.Second, `sum(depharness_proxy_hook_deliveries_total{kind="update",outcome="ok"})`, anyAbove(devices-1))[0].Value
	for i := 2; i <= 3; i++ {
		r := w.pushRelease(t, fmt.Sprintf("load-%d", i))
		w.awaitConverged(t, 2*time.Minute, devices, r.Commit)
	}
	t.Logf("measured: 3 rollouts of %d devices in %s", devices, time.Since(start).Round(time.Millisecond))

	// Counters moved by the two later rollouts.
	prom.AwaitQuery(t, 30*time.Second, `sum(depharness_proxy_hook_deliveries_total{kind="update",outcome="ok"})`, anyAbove(first+2*devices-1))
	checks := []struct {
		name  string
		query string
		pred  func([]promSample) bool
	}{
		{"every target is up", `min(up)`, func(s []promSample) bool { return len(s) == 1 && s[0].Value == 1 }},
		{"the proxy's API serves requests", `sum(rate(depharness_proxy_http_requests_total[1m]))`, anyAbove(0)},
		{"the proxy talks to the cloud", `sum(rate(depharness_proxy_cloud_requests_total[1m]))`, anyAbove(0)},
		{"the cloud serves target states", `sum(rate(depharness_cloud_requests_total{route="state"}[1m]))`, anyAbove(0)},
		{"the proxy built three asset tars", `sum(depharness_proxy_asset_builds_total)`, anyAbove(2)},
		{"the registry served blobs", `sum(depharness_registry_requests_total{kind="blob",method="GET"})`, anyAbove(0)},
		{"the gateway received every update hook", `sum(depharness_gateway_hooks_received_total{kind="update"})`, anyAbove(3*devices - 1)},
		{"every device is converged", `depharness_gateway_converged_devices`, func(s []promSample) bool { return len(s) == 1 && s[0].Value == devices }},
		{"the cloud counts the devices", `sum(depharness_cloud_devices)`, anyAbove(devices - 1)},
		{"device log lines reach the cloud", `sum(rate(depharness_cloud_log_lines_total[1m]))`, anyAbove(0)},
		{"the outbox delivers log lines", `sum(depharness_proxy_outbox_delivered_total{kind="log"})`, anyAbove(0)},
		{"the target is polled", `sum(depharness_proxy_sync_polls_total)`, anyAbove(3)},
	}
	for _, c := range checks {
		got := prom.AwaitQuery(t, 30*time.Second, c.query, c.pred)
		t.Logf("measured: %s: %s → %v", c.name, c.query, got)
	}

	// The alert rules of deploy/ evaluate against the real series, and
	// every metric the dashboard and the rules name exists.
	awaitCond(t, 30*time.Second, "every alert rule evaluated without error", func() (bool, string) {
		rules, err := prom.Rules()
		if err != nil {
			return false, err.Error()
		}
		var bad []string
		for _, r := range rules {
			if r.Health != "ok" {
				bad = append(bad, fmt.Sprintf("%s: %s %s", r.Name, r.Health, r.LastError))
			}
		}
		return len(rules) > 0 && len(bad) == 0, fmt.Sprintf("%d rules; %v", len(rules), bad)
	})
	names, err := prom.MetricNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{alerts, filepath.Join(root, "deploy", "grafana", "depharness-dashboard.json")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range metricNameRE.FindAllString(string(b), -1) {
			if !names[n] && !onlyAfterFaults[n] {
				t.Errorf("%s names %s, which no component exposed during the load run", filepath.Base(f), n)
			}
		}
	}

	// Every query of the dashboard evaluates (with its variables set).
	exprs, err := dashboardExprs(filepath.Join(root, "deploy", "grafana", "depharness-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range exprs {
		q := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*").Replace(e)
		if _, err := prom.Query(q); err != nil {
			t.Errorf("dashboard query %s: %v", e, err)
		}
	}
	t.Logf("measured: %d dashboard queries evaluate", len(exprs))

	for name, u := range endpoints {
		if out, err := promtoolCheckMetrics(fetchMetrics(t, u+"/metrics")); err != nil {
			t.Errorf("%s /metrics: %v\n%s", name, err, out)
		}
	}
}

// dashboardExprs returns the PromQL expressions of a Grafana dashboard's
// panels.
func dashboardExprs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, t.Expr)
		}
	}
	return out, nil
}
