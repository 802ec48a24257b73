package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// fakeRegistryRun is one `depharness fake-registry` running in-process.
type fakeRegistryRun struct {
	addr, ref string
	stop      func() int // cancels and returns the exit code
}

func startFakeRegistry(t *testing.T, args ...string) *fakeRegistryRun {
	t.Helper()
	cmd := startCommand(t, context.Background(), nil, append([]string{"fake-registry", "--listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	r := &fakeRegistryRun{stop: func() int { return cmd.stop(t, 10*time.Second) }}
	wantRef := false
	for _, a := range args {
		wantRef = wantRef || a == "--push"
	}
	cmd.awaitReady(t, func() bool {
		for _, line := range strings.Split(cmd.errOut.String(), "\n") {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "fake registry listening" {
				r.addr = rec.Addr
			}
		}
		r.ref = strings.TrimSpace(cmd.out.String())
		return r.addr != "" && (!wantRef || r.ref != "")
	})
	return r
}

func TestFakeRegistryServesPushedAssetsAndMetricsAndKeepsThemOnDisk(t *testing.T) {
	assets := t.TempDir()
	if err := os.MkdirAll(filepath.Join(assets, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, data := range map[string]string{"firmware.bin": "fw", ".hidden": "h", "sub/x.hex": "x"} {
		if err := os.WriteFile(filepath.Join(assets, rel), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	store := t.TempDir()
	first := startFakeRegistry(t, "--dir", store, "--push", assets, "--push-repo", "apps/7")
	if !strings.HasPrefix(first.ref, first.addr+"/apps/7@sha256:") {
		t.Fatalf("pushed ref: got %q, want %s/apps/7@sha256:…", first.ref, first.addr)
	}
	pull := func(ref string) error {
		r, err := name.ParseReference(ref)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		img, err := remote.Image(r, remote.WithContext(ctx))
		if err != nil {
			return err
		}
		ls, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range ls {
			rc, err := l.Compressed()
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := pull(first.ref); err != nil {
		t.Fatalf("pull: %v", err)
	}
	req, err := http.NewRequest(http.MethodPut, "http://"+first.addr+"/control/v1/fail/manifest", strings.NewReader(`{"n":1,"status":404}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT /control/v1/fail/manifest: got %v %v, want 204", resp, err)
	} else {
		resp.Body.Close()
	}
	if err := pull(first.ref); err == nil {
		t.Errorf("pull with a 404 armed through the control API: got success, want failure")
	}
	resp, err := http.Get("http://" + first.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"depharness_registry_requests_total{", "depharness_registry_blob_bytes_total "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics: got no %q", want)
		}
	}
	if code := first.stop(); code != 0 {
		t.Fatalf("exit code after cancel: got %d, want 0", code)
	}

	second := startFakeRegistry(t, "--dir", store)
	if err := pull(strings.Replace(first.ref, first.addr, second.addr, 1)); err != nil {
		t.Errorf("pull after restart on the same --dir: %v", err)
	}
	if code := second.stop(); code != 0 {
		t.Errorf("exit code after cancel: got %d, want 0", code)
	}
}

func TestFakeRegistryRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"a metrics path outside the root", []string{"--metrics", "metrics"}},
		{"a metrics path under /v2", []string{"--metrics", "/v2/metrics"}},
		{"an address that cannot be listened on", []string{"--listen", "256.0.0.1:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			env := &cliEnv{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if got := runMain(ctx, env, append([]string{"fake-registry"}, tc.args...)); got != 2 {
				t.Errorf("exit code: got %d, want 2 (stderr %q)", got, errOut.String())
			}
		})
	}
}

func TestFakeRegistryWithAnAdminTokenGuardsItsControlAPIAndPushes(t *testing.T) {
	assets := t.TempDir()
	if err := os.WriteFile(filepath.Join(assets, "firmware.bin"), []byte("fw"), 0o644); err != nil {
		t.Fatal(err)
	}
	// --push pushes with the token.
	r := startFakeRegistry(t, "--admin-token", "reg-tok", "--push", assets, "--push-repo", "apps/8")
	if !strings.HasPrefix(r.ref, r.addr+"/apps/8@sha256:") {
		t.Fatalf("pushed ref: got %q, want %s/apps/8@sha256:…", r.ref, r.addr)
	}
	call := func(method, path, auth string) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+r.addr+path, strings.NewReader(`{"bytesPerSec":1000}`))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := call("PUT", "/control/v1/throttle", ""); got != http.StatusUnauthorized {
		t.Errorf("PUT /control/v1/throttle without the token: got %d, want 401", got)
	}
	if got := call("POST", "/v2/apps/9/blobs/uploads/", ""); got != http.StatusUnauthorized {
		t.Errorf("POST an upload without the token: got %d, want 401", got)
	}
	if got := call("PUT", "/control/v1/throttle", "Bearer reg-tok"); got != http.StatusNoContent {
		t.Errorf("PUT /control/v1/throttle with the token: got %d, want 204", got)
	}
	if got := call("DELETE", "/control/v1/throttle", "Bearer reg-tok"); got != http.StatusNoContent {
		t.Errorf("DELETE /control/v1/throttle with the token: got %d, want 204", got)
	}
	if got := call("GET", "/v2/", ""); got != http.StatusOK {
		t.Errorf("GET /v2/ without the token: got %d, want 200 (pulls are open)", got)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}
