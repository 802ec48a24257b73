package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrepareDataDirKeepsOnlyAWorldItCanResume(t *testing.T) {
	write := func(t *testing.T, dir string) {
		t.Helper()
		for _, p := range []string{"cloud.json", "registry/blob", "proxy/db", "other/keep"} {
			p = filepath.Join(dir, p)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	for _, tc := range []struct {
		name     string
		noCloud  bool
		fresh    bool
		wantKept bool
	}{
		{"a world with its cloud state is kept", false, false, true},
		{"--fresh discards it", false, true, false},
		{"a proxy and registry without the cloud's state are discarded", true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir)
			if tc.noCloud {
				os.Remove(filepath.Join(dir, "cloud.json"))
			}
			d, err := prepareDataDir(dir, tc.fresh)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{d.registry, d.proxy} {
				if exists(p) != tc.wantKept {
					t.Errorf("%s exists = %v, want %v", p, exists(p), tc.wantKept)
				}
			}
			if !exists(filepath.Join(dir, "other", "keep")) {
				t.Error("a file up does not own was removed")
			}
		})
	}
}

// `depharness up` run twice on one data dir: the second run resumes the
// first one's world (same gateway, devices adopted, not provisioned again).
func TestUpResumesItsWorld(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole world twice")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	registry := l.Addr().String() // the same on both runs: images name it
	l.Close()
	run := func() string {
		t.Helper()
		var out, errOut syncBuffer
		env := &cliEnv{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		code := runMain(ctx, env, []string{"up", "--data-dir", dir, "--devices", "3", "--exit-after-rollout",
			"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--cloud-listen", "127.0.0.1:0",
			"--registry-listen", registry, "--gateway-listen", "127.0.0.1:0", "--gateway-metrics-listen", "127.0.0.1:0",
			"--fleet-view-listen", "127.0.0.1:0",
			"--poll-interval", "100ms", "--hook-retry-interval", "200ms", "--log-format", "json"})
		if code != 0 {
			t.Fatalf("up: exit %d; stderr:\n%s", code, errOut.String())
		}
		return errOut.String()
	}
	first := run()
	if strings.Contains(first, "resuming") {
		t.Fatal("the first run says it resumed")
	}
	// The registry's blobs are under --data-dir, not in up's memory.
	if blobs, err := os.ReadDir(filepath.Join(dir, "registry", "blobs", "sha256")); err != nil || len(blobs) == 0 {
		t.Errorf("registry blobs under the data dir: %d, %v; want the demo's blobs there", len(blobs), err)
	}
	if !strings.Contains(first, "fleet view: http://127.0.0.1:") {
		t.Errorf("up did not say where its fleet view is; stderr:\n%s", first)
	}
	second := run()
	if !strings.Contains(second, "resuming the world") {
		t.Errorf("the second run did not resume; stderr:\n%s", second)
	}
	// Nothing was made twice: one gateway, the two demo apps, three devices.
	b, err := os.ReadFile(filepath.Join(dir, "cloud.json"))
	if err != nil {
		t.Fatal(err)
	}
	var model struct{ Gateways, Apps, Devices []json.RawMessage }
	if err := json.Unmarshal(b, &model); err != nil {
		t.Fatal(err)
	}
	if len(model.Gateways) != 1 || len(model.Apps) != 2 || len(model.Devices) != 3 {
		t.Errorf("after two runs the cloud holds %d gateways, %d apps, %d devices; want 1, 2, 3",
			len(model.Gateways), len(model.Apps), len(model.Devices))
	}
}
