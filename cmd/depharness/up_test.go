package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestPrepareDataDirKeepsOnlyAWorldItCanResume(t *testing.T) {
	write := func(t *testing.T, dir string) {
		t.Helper()
		for _, p := range []string{"cloud.json", "registry/blob", "proxy/db", "keys.json", "env", "other/keep"} {
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
		{"a proxy, registry and keys without the cloud's state are discarded", true, false, false},
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
			for _, p := range []string{d.registry, d.proxy, d.keys, d.env} {
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
// first one's world (same gateway, devices adopted, not provisioned again)
// and its keys, so the first run's exports still work; --fresh starts a
// world with a new key.
func TestUpResumesItsWorld(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole world three times")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	registry := l.Addr().String() // the same on every run: images name it
	l.Close()
	// An --env-file that exists with a wider mode ends up private too.
	extraEnv := filepath.Join(t.TempDir(), "world.env")
	if err := os.WriteFile(extraEnv, []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(ctx context.Context, extra ...string) (out, errOut *syncBuffer, wait func() int) {
		args := append([]string{"up", "--data-dir", dir, "--devices", "3",
			"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--cloud-listen", "127.0.0.1:0",
			"--registry-listen", registry, "--gateway-listen", "127.0.0.1:0", "--gateway-metrics-listen", "127.0.0.1:0",
			"--fleet-view-listen", "127.0.0.1:0",
			"--poll-interval", "100ms", "--hook-retry-interval", "200ms", "--log-format", "json"}, extra...)
		cmd := startCommand(t, ctx, nil, args...)
		return cmd.out, cmd.errOut, cmd.wait
	}
	runToEnd := func(extra ...string) (stdout, stderr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		out, errOut, wait := start(ctx, append([]string{"--exit-after-rollout"}, extra...)...)
		if code := wait(); code != 0 {
			t.Fatalf("up: exit %d; stderr:\n%s", code, errOut.String())
		}
		return out.String(), errOut.String()
	}
	envPath := filepath.Join(dir, "env")

	out1, err1 := runToEnd("--env-file", extraEnv)
	if !strings.Contains(out1, "a new world in "+dir) || strings.Contains(out1, "resumed") {
		t.Errorf("the first run does not say it made a new world; stdout:\n%s", out1)
	}
	// The registry's blobs are under --data-dir, not in up's memory.
	if blobs, err := os.ReadDir(filepath.Join(dir, "registry", "blobs", "sha256")); err != nil || len(blobs) == 0 {
		t.Errorf("registry blobs under the data dir: %d, %v; want the demo's blobs there", len(blobs), err)
	}
	first := sourceEnvFile(t, envPath)
	key := first["BALENA_SUPERVISOR_API_KEY"]
	if len(key) != 32 {
		t.Fatalf("the env file's BALENA_SUPERVISOR_API_KEY = %q, want a generated key", key)
	}
	if first["RESIN_SUPERVISOR_API_KEY"] != key || first["RESIN_SUPERVISOR_ADDRESS"] != first["BALENA_SUPERVISOR_ADDRESS"] ||
		!strings.HasPrefix(first["BALENA_SUPERVISOR_ADDRESS"], "http://127.0.0.1:") {
		t.Errorf("the env file's legacy names differ from the BALENA_ ones: %v", first)
	}
	for _, p := range []string{envPath, extraEnv} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", p, fi.Mode(), err)
		}
	}
	if a, b := readFile(t, envPath), readFile(t, extraEnv); a != b {
		t.Errorf("--env-file holds\n%s\nthe data dir's env file\n%s", b, a)
	}
	for _, want := range []string{"export BALENA_SUPERVISOR_API_KEY=" + key, "export RESIN_SUPERVISOR_API_KEY=" + key,
		"supervisor API  " + first["BALENA_SUPERVISOR_ADDRESS"], "fleet view      http://127.0.0.1:", "source " + envPath,
		`curl "$BALENA_SUPERVISOR_ADDRESS/v1/devices?apikey=$BALENA_SUPERVISOR_API_KEY"`, "depharness verify", "Ctrl-C"} {
		if !strings.Contains(out1, want) {
			t.Errorf("up's next steps lack %q; stdout:\n%s", want, out1)
		}
	}
	// The logs (stderr) hold no INFO line by default, only the progress.
	if strings.Contains(err1, `"level":"INFO"`) || strings.Contains(out1, `"level"`) {
		t.Errorf("up logs INFO lines by default, or logs on stdout; stderr:\n%s", err1)
	}

	// The second run: resumed, with the same key, which its proxy takes.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out2, errOut2, wait := start(ctx)
	deadline := time.Now().Add(60 * time.Second)
	for !regexp.MustCompile(`rollout of .*: all 3 devices converged`).MatchString(errOut2.String()) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the second run's rollout did not converge; stderr:\n%s", errOut2.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out2.String(), "resumed the world in "+dir) {
		t.Errorf("the second run did not resume; stdout:\n%s", out2.String())
	}
	second := sourceEnvFile(t, envPath)
	if second["BALENA_SUPERVISOR_API_KEY"] != key || second["RESIN_SUPERVISOR_API_KEY"] != key {
		t.Errorf("the resumed world's key is %q, want the first run's %q", second["BALENA_SUPERVISOR_API_KEY"], key)
	}
	if second["DEPHARNESS_CLOUD_ADMIN_TOKEN"] != first["DEPHARNESS_CLOUD_ADMIN_TOKEN"] || second["DEPHARNESS_REGISTRY_ADMIN_TOKEN"] != first["DEPHARNESS_REGISTRY_ADMIN_TOKEN"] ||
		first["DEPHARNESS_CLOUD_ADMIN_TOKEN"] == "" || first["DEPHARNESS_REGISTRY_ADMIN_TOKEN"] == "" {
		t.Errorf("the resumed world's admin tokens changed: %v, then %v", first, second)
	}
	addr := second["BALENA_SUPERVISOR_ADDRESS"]
	for _, c := range []struct {
		key  string
		want int
	}{{key, http.StatusOK}, {strings.Repeat("0", 32), http.StatusUnauthorized}} {
		resp, err := http.Get(addr + "/v1/devices?apikey=" + c.key)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET /v1/devices with key %s from the second run: %d, want %d", c.key, resp.StatusCode, c.want)
		}
	}
	cancel()
	if code := wait(); code != 0 {
		t.Errorf("the second run, interrupted: exit %d; stderr:\n%s", code, errOut2.String())
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

	// --fresh: a new world, with a new key.
	out3, _ := runToEnd("--fresh", "--rollout=false")
	if !strings.Contains(out3, "a new world in "+dir) {
		t.Errorf("--fresh did not start a new world; stdout:\n%s", out3)
	}
	if k := sourceEnvFile(t, envPath)["BALENA_SUPERVISOR_API_KEY"]; k == key || len(k) != 32 {
		t.Errorf("after --fresh the key is %q; want a new one (the old one was %q)", k, key)
	}
}

// sourceEnvFile sources path in sh, with an empty environment, and returns
// the variables it exported.
func sourceEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	cmd := exec.Command("sh", "-c", `. "$1" && env`, "sh", path)
	cmd.Env = []string{}
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("source %s: %v", path, err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The world's keys: an explicit one wins and is kept; an empty one takes
// the kept one; a key with shell metacharacters survives the env file.
func TestUpWorldKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	k1, err := worldKeys(path, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(k1.SupervisorAPIKey) != 32 || len(k1.RegistryAdminToken) != 32 || k1.SupervisorAPIKey == k1.RegistryAdminToken {
		t.Fatalf("generated keys %+v", k1)
	}
	if k, err := worldKeys(path, "", ""); err != nil || k != k1 {
		t.Errorf("the kept keys: %+v, %v; want %+v", k, err, k1)
	}
	given := `it's a "key" $HOME`
	if k, err := worldKeys(path, given, ""); err != nil || k.SupervisorAPIKey != given || k.RegistryAdminToken != k1.RegistryAdminToken {
		t.Errorf("with --api-key: %+v, %v; want the given key and the kept token", k, err)
	}
	if k, err := worldKeys(path, "", ""); err != nil || k.SupervisorAPIKey != given {
		t.Errorf("after an explicit key: %+v, %v; want that key kept", k, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("keys file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	env := filepath.Join(t.TempDir(), "env")
	if err := writePrivateFile(env, []byte("export BALENA_SUPERVISOR_API_KEY="+shellWord(given)+"\n")); err != nil {
		t.Fatal(err)
	}
	if got := sourceEnvFile(t, env)["BALENA_SUPERVISOR_API_KEY"]; got != given {
		t.Errorf("sourced key %q, want %q", got, given)
	}
}
