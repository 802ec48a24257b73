package proxy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/fakes/cloud"
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

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunServesTheAPIAndMetricsUntilCancelled(t *testing.T) {
	cl, err := cloud.New(cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs := httptest.NewServer(cl)
	t.Cleanup(cs.Close)
	gw, err := cl.CreateGateway(cloud.GatewaySpec{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := proxy.New(config.Config{
		APIEndpoint: cs.URL, DeviceUUID: gw.UUID, DeviceID: gw.DeviceID, DeviceAPIKey: gw.APIKey,
		APIKey: "s3cret", DataDir: dir, PollInterval: 50 * time.Millisecond,
	}, proxy.Options{Listener: ln, MetricsListener: mln})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
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
	if strings.Contains(metrics, "s3cret") || strings.Contains(metrics, gw.UUID) {
		t.Error("metrics carry the API key or a uuid")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := os.Stat(filepath.Join(dir, store.FileName)); err != nil {
		t.Errorf("database not in DATA_DIR: %v", err)
	}
	if _, err := http.Get(base + "/ping"); err == nil {
		t.Error("the API still answers after Run returned")
	}
}

func TestSlowStartAndSlowStopDelayOnlyReadinessAndExit(t *testing.T) {
	cl, err := cloud.New(cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs := httptest.NewServer(cl)
	t.Cleanup(cs.Close)
	gw, err := cl.CreateGateway(cloud.GatewaySpec{})
	if err != nil {
		t.Fatal(err)
	}
	allow, err := violation.ParseAllowances("slow-start,slow-stop")
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(config.Config{
		APIEndpoint: cs.URL, DeviceUUID: gw.UUID, DeviceID: gw.DeviceID, DeviceAPIKey: gw.APIKey,
		APIKey: "s3cret", DataDir: t.TempDir(), Port: 0, MetricsAddress: "off", Allowances: allow,
	}, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(ctx) }()
	<-p.Ready()
	if took := time.Since(start); took < proxy.SlowStart {
		t.Errorf("ready after %s, want at least slow-start's %s", took, proxy.SlowStart)
	}
	if code, body := get(t, "http://"+p.Addr()+"/ping"); code != 200 || body != "OK" {
		t.Errorf("GET /ping = %d %q, want 200 OK once ready", code, body)
	}
	cancel()
	stop := time.Now()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if took := time.Since(stop); took < proxy.SlowStop || took > proxy.SlowStop+5*time.Second {
		t.Errorf("Run returned %s after cancel, want slow-stop's %s (and well under 10 s)", took, proxy.SlowStop)
	}
}
