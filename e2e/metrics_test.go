package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestPrometheusScrapesEveryComponentThroughARolloutLoad runs a real
// Prometheus (the Debian binary, as a host process) against the published
// metrics ports of every container while a fleet goes through three
// releases, then asserts through Prometheus's HTTP API that the key series
// exist and move: request rates of proxy and cloud, hook deliveries,
// converged devices, registry blob traffic. Every /metrics body must also
// pass `promtool check metrics` without a single remark.
func TestPrometheusScrapesEveryComponentThroughARolloutLoad(t *testing.T) {
	requireDocker(t)
	const devices = 20
	w := startWorld(t, worldOptions{Devices: devices})
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
	prom := startPrometheus(t, jobs)
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
	}
	for _, c := range checks {
		got := prom.AwaitQuery(t, 30*time.Second, c.query, c.pred)
		t.Logf("measured: %s: %s → %v", c.name, c.query, got)
	}

	for name, u := range endpoints {
		if out, err := promtoolCheckMetrics(fetchMetrics(t, u+"/metrics")); err != nil {
			t.Errorf("%s /metrics: %v\n%s", name, err, out)
		}
	}
}
