package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/depharness/depharness/internal/promreg/promtest"
	"github.com/depharness/depharness/internal/testkit"
)

// promServer is a real Prometheus server (the Debian package's binary) run
// as a host process by a test, scraping the containers' published metrics
// ports, with its storage in t.TempDir().
type promServer struct {
	URL string
	cmd *exec.Cmd
}

// scrapeJob is one scrape job of the generated configuration: host:port
// targets on loopback, scraped at /metrics.
type scrapeJob struct {
	Name    string
	Targets []string
}

// startPrometheus runs prometheus scraping jobs every 500 ms and evaluating
// ruleFiles until the end of t. `make deps-docker` installs the binary.
func startPrometheus(t testing.TB, jobs []scrapeJob, ruleFiles ...string) *promServer {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("the prometheus binary is needed (run `make deps-docker`): %v", err)
	}
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n  evaluation_interval: 500ms\n")
	if len(ruleFiles) > 0 {
		cfg.WriteString("rule_files:\n")
		for _, f := range ruleFiles {
			fmt.Fprintf(&cfg, "  - %q\n", f)
		}
	}
	cfg.WriteString("scrape_configs:\n")
	for _, j := range jobs {
		fmt.Fprintf(&cfg, "  - job_name: %q\n    static_configs:\n      - targets: [", j.Name)
		for i, tg := range j.Targets {
			if i > 0 {
				cfg.WriteString(", ")
			}
			fmt.Fprintf(&cfg, "%q", tg)
		}
		cfg.WriteString("]\n")
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s\n%s", err, out, cfg.String())
	}
	addr := testkit.FreeAddr(t)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--storage.tsdb.retention.time=1h",
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	p := &promServer{URL: "http://" + addr, cmd: cmd}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("---- prometheus log ----\n%s", b)
			}
		}
	})
	awaitCond(t, 30*time.Second, "prometheus ready", func() (bool, string) {
		resp, err := http.Get(p.URL + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

// promSample is one element of an instant vector.
type promSample struct {
	Labels map[string]string
	Value  float64
}

func (s promSample) String() string {
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%s=%q", k, s.Labels[k])
	}
	fmt.Fprintf(&b, "} %g", s.Value)
	return b.String()
}

// Query evaluates an instant query through the HTTP API.
func (p *promServer) Query(q string) ([]promSample, error) {
	data, err := promAPI[struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}](p, fmt.Sprintf("query %q", q), "/api/v1/query?query="+url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %s, want vector", q, data.ResultType)
	}
	out := make([]promSample, 0, len(data.Result))
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v: %w", q, r.Value[1], err)
		}
		out = append(out, promSample{Labels: r.Metric, Value: v})
	}
	return out, nil
}

// AwaitQuery polls q until pred holds for its result, failing t after
// timeout with the last result.
func (p *promServer) AwaitQuery(t testing.TB, timeout time.Duration, q string, pred func([]promSample) bool) []promSample {
	t.Helper()
	var got []promSample
	awaitCond(t, timeout, "prometheus query "+q, func() (bool, string) {
		res, err := p.Query(q)
		if err != nil {
			return false, err.Error()
		}
		got = res
		return pred(res), fmt.Sprint(res)
	})
	return got
}

// anyAbove is a predicate: some sample's value is above min.
func anyAbove(min float64) func([]promSample) bool {
	return func(s []promSample) bool {
		for _, x := range s {
			if x.Value > min {
				return true
			}
		}
		return false
	}
}

// fetchMetrics returns the body of GET url (a /metrics endpoint).
func fetchMetrics(t testing.TB, url string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, b := testkit.Do(t, nil, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %s, want 200 OK", url, resp.Status)
	}
	return b
}

// promtoolCheckMetrics pipes body into `promtool check metrics` and
// returns what it printed, or an error when it found problems.
func promtoolCheckMetrics(body []byte) (string, error) {
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("promtool check metrics: %w: %s", err, out)
	}
	if strings.TrimSpace(string(out)) != "" {
		return string(out), fmt.Errorf("promtool check metrics printed problems: %s", out)
	}
	return "", nil
}

// metricSum scrapes url and returns the sum of the samples of family name
// (counter, gauge, or a histogram's count) whose labels include match.
// A family that is absent sums to 0.
func metricSum(t testing.TB, url, name string, match map[string]string) float64 {
	t.Helper()
	return promtest.Sum(promtest.Parse(t, bytes.NewReader(fetchMetrics(t, url))), name, match)
}

// MetricNames returns the names of every series Prometheus holds.
func (p *promServer) MetricNames() (map[string]bool, error) {
	names, err := promAPI[[]string](p, "label values", "/api/v1/label/__name__/values")
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

// ruleHealth is a rule of GET /api/v1/rules.
type ruleHealth struct {
	Name      string `json:"name"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	State     string `json:"state"`
}

// Rules returns every rule Prometheus evaluates, with its health.
func (p *promServer) Rules() ([]ruleHealth, error) {
	data, err := promAPI[struct {
		Groups []struct {
			Rules []ruleHealth `json:"rules"`
		} `json:"groups"`
	}](p, "rules", "/api/v1/rules")
	if err != nil {
		return nil, err
	}
	var out []ruleHealth
	for _, g := range data.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// promAPI is the data of GET path of the Prometheus HTTP API; what names
// the call in errors.
func promAPI[T any](p *promServer, what, path string) (T, error) {
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   T      `json:"data"`
	}
	resp, err := http.Get(p.URL + path)
	if err != nil {
		return body.Data, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return body.Data, fmt.Errorf("%s: %s: %w", what, resp.Status, err)
	}
	if body.Status != "success" {
		return body.Data, fmt.Errorf("%s: %s: %s", what, resp.Status, body.Error)
	}
	return body.Data, nil
}
