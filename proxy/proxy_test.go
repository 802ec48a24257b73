package proxy_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy"
	"github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/proxy/store"
	"github.com/depharness/depharness/proxy/violation"
)

func TestNewRefusesBadConfigurationAndAnUnusableDataDir(t *testing.T) {
	if _, err := proxy.New(config.Config{}, proxy.Options{}); err == nil || !strings.Contains(err.Error(), "API_ENDPOINT is required") {
		t.Errorf("New(empty config) err = %v, want the missing variables named", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{APIEndpoint: "http://127.0.0.1:1", DeviceUUID: "gw", DeviceID: 1, DeviceAPIKey: "k", APIKey: "k", DataDir: filepath.Join(file, "data")}
	if _, err := proxy.New(cfg, proxy.Options{}); err == nil || !strings.Contains(err.Error(), "DATA_DIR") {
		t.Errorf("New(data dir under a file) err = %v, want a DATA_DIR error", err)
	}
}

func TestRunServesTheAPIAndMetricsUntilCancelled(t *testing.T) {
	cl := newTestCloud(t)
	mln := testkit.Listen(t)
	cfg := cl.config(t)
	cfg.PollInterval = 50 * time.Millisecond
	p, running := runProxy(t, cfg, proxy.Options{Listener: testkit.Listen(t), MetricsListener: mln})
	base := "http://" + p.Addr()

	if code, body := get(t, base+"/ping"); code != 200 || body != "OK" {
		t.Errorf("GET /ping = %d %q, want 200 OK", code, body)
	}
	if code, _ := get(t, base+"/v1/devices"); code != 401 {
		t.Errorf("GET /v1/devices without key = %d, want 401", code)
	}
	if code, body := get(t, base+"/v1/devices?apikey=s3cret"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("GET /v1/devices = %d %q, want 200 []", code, body)
	}
	// The poll counter appears once the first poll is done: wait for it.
	var code int
	var metrics string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, metrics = get(t, "http://"+mln.Addr().String()+"/metrics"); strings.Contains(metrics, "depharness_proxy_sync_polls_total") {
			break
		}
	}
	for _, want := range []string{"depharness_proxy_http_requests_total", "depharness_proxy_sync_polls_total", "go_goroutines"} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("GET /metrics = %d, lacks %s", code, want)
		}
	}
	if strings.Contains(metrics, testAPIKey) || strings.Contains(metrics, cl.Gateway.UUID) {
		t.Error("metrics carry the API key or a uuid")
	}

	running.Stop()
	if _, err := os.Stat(filepath.Join(cfg.DataDir, store.FileName)); err != nil {
		t.Errorf("database not in DATA_DIR: %v", err)
	}
	if _, err := http.Get(base + "/ping"); err == nil {
		t.Error("the API still answers after Run returned")
	}
}

func TestSlowStartAndSlowStopDelayOnlyReadinessAndExit(t *testing.T) {
	allow, err := violation.ParseAllowances("slow-start,slow-stop")
	if err != nil {
		t.Fatal(err)
	}
	cfg := newTestCloud(t).config(t)
	cfg.MetricsAddress, cfg.Allowances = "off", allow
	start := time.Now()
	p, running := runProxy(t, cfg, proxy.Options{})
	if took := time.Since(start); took < proxy.SlowStart {
		t.Errorf("ready after %s, want at least slow-start's %s", took, proxy.SlowStart)
	}
	if code, body := get(t, "http://"+p.Addr()+"/ping"); code != 200 || body != "OK" {
		t.Errorf("GET /ping = %d %q, want 200 OK once ready", code, body)
	}
	stop := time.Now()
	running.Stop()
	if took := time.Since(stop); took < proxy.SlowStop || took > proxy.SlowStop+5*time.Second {
		t.Errorf("Run returned %s after cancel, want slow-stop's %s (and well under 10 s)", took, proxy.SlowStop)
	}
}
