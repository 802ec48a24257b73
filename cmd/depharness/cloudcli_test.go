package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/testkit"
)

// fakeCloudRun is one `depharness fake-cloud --gateway` running in-process.
type fakeCloudRun struct {
	url, uuid, key string
	stop           func() int
}

func startFakeCloud(t *testing.T, args ...string) *fakeCloudRun {
	t.Helper()
	cmd := startCommand(t, context.Background(), nil, append([]string{"fake-cloud", "--listen", "127.0.0.1:0", "--gateway", "--admin-token", "tok"}, args...)...)
	r := &fakeCloudRun{stop: func() int { return cmd.stop(t, 10*time.Second) }}
	cmd.awaitReady(t, func() bool {
		vars := map[string]string{}
		for _, line := range strings.Split(cmd.out.String(), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				vars[k] = v
			}
		}
		r.url, r.uuid, r.key = vars["API_ENDPOINT"], vars["DEVICE_UUID"], vars["DEVICE_API_KEY"]
		return r.key != ""
	})
	return r
}

// cli runs `depharness cloud …` against c and returns the exit code and
// outputs.
func (c *fakeCloudRun) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut syncBuffer
	env := &cliEnv{stdout: &out, stderr: &errOut, getenv: func(k string) string {
		return map[string]string{"DEPHARNESS_CLOUD_URL": c.url, "FAKE_CLOUD_ADMIN_TOKEN": "tok"}[k]
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := runMain(ctx, env, append([]string{"cloud"}, args...))
	return code, out.String(), errOut.String()
}

func (c *fakeCloudRun) mustCLI(t *testing.T, out any, args ...string) {
	t.Helper()
	code, stdout, stderr := c.cli(t, args...)
	if code != 0 {
		t.Fatalf("cloud %s: exit %d, want 0; stderr: %s", strings.Join(args, " "), code, stderr)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			t.Fatalf("cloud %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, stdout)
		}
	}
}

func (c *fakeCloudRun) state(t *testing.T) cloud.TargetState {
	t.Helper()
	req, _ := http.NewRequest("GET", c.url+fmt.Sprintf(cloud.PathStateFmt, c.uuid), nil)
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("state: got %d, want 200", resp.StatusCode)
	}
	var st cloud.TargetState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestCloudCLIBuildsAWorldOnAFakeCloudWithARegistry(t *testing.T) {
	reg := startFakeRegistry(t)
	c := startFakeCloud(t, "--registry", reg.addr, "--seed", "3")

	var app struct{ ID int64 }
	c.mustCLI(t, &app, "create-app", "--gateway", c.uuid, "--name", "thermo", "RATE=5")
	dir := t.TempDir()
	for rel, data := range map[string]string{"fw.bin": "v1", ".hidden": "h", "sub/x.hex": "x"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var rel struct{ Commit, Image string }
	c.mustCLI(t, &rel, "push", "--app", fmt.Sprint(app.ID), "--dir", dir)
	if !strings.HasPrefix(rel.Image, reg.addr+"/") || len(rel.Commit) != 40 {
		t.Fatalf("got release %+v, want an image on %s and a 40-hex commit", rel, reg.addr)
	}
	var dev struct{ UUID string }
	c.mustCLI(t, &dev, "create-device", "--app", fmt.Sprint(app.ID))
	c.mustCLI(t, nil, "set-env", "--device", dev.UUID, "LEVEL=debug", "X=1")
	c.mustCLI(t, nil, "set-env", "--device", dev.UUID, "--unset", "X")
	c.mustCLI(t, nil, "set-config", "MODE=fast", "--app", fmt.Sprint(app.ID)) // flags may follow the variables
	if code, out, _ := c.cli(t, "restart", "--device", dev.UUID); code != 0 || out != "restart=1\n" {
		t.Errorf("restart: got %d %q, want 0 restart=1", code, out)
	}

	st := c.state(t)
	a := st.Dependent.Apps[fmt.Sprint(app.ID)]
	if a.Image != rel.Image || a.Commit != rel.Commit || a.Config["RATE"] != "5" || a.Config["MODE"] != "fast" {
		t.Errorf("got app target %+v, want the pushed release and RATE, MODE", a)
	}
	d := st.Dependent.Devices[dev.UUID]
	want := cloud.DeviceAppTarget{Config: map[string]string{"RATE": "5", "MODE": "fast"}, Environment: map[string]string{"LEVEL": "debug"}}
	if got := d.Apps[fmt.Sprint(app.ID)]; d.Restart != 1 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got device target %+v, want restart 1 and %+v", d, want)
	}

	// The pushed directory is the image's /assets.
	ref, err := name.ParseReference(rel.Image)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", rel.Image, err)
	}
	files := testkit.TarFiles(t, mutate.Extract(img))
	for p, data := range map[string]string{"assets/fw.bin": "v1", "assets/.hidden": "h", "assets/sub/x.hex": "x"} {
		if string(files[p]) != data {
			t.Errorf("image file %s: got %q, want %q (files %v)", p, files[p], data, slices.Sorted(maps.Keys(files)))
		}
	}

	c.mustCLI(t, nil, "fault", "fail-next", "--route", "state", "--n", "1", "--status", "500")
	var fs struct{ FailNext map[string][2]int }
	c.mustCLI(t, &fs, "fault", "show")
	if fs.FailNext["state"] != [2]int{1, 500} {
		t.Errorf("got faults %+v, want state failing once with 500", fs)
	}
	c.mustCLI(t, nil, "fault", "reset")
	c.mustCLI(t, nil, "delete", "--device", dev.UUID)
	var devs []any
	c.mustCLI(t, &devs, "devices")
	if len(devs) != 0 {
		t.Errorf("after delete got %d devices, want 0", len(devs))
	}
	if code := c.stop(); code != 0 {
		t.Errorf("fake-cloud exit code: got %d, want 0", code)
	}
}

func TestCloudCLIRefusesBadUsage(t *testing.T) {
	c := startFakeCloud(t)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no subcommand", nil, 2, "subcommand is required"},
		{"an unknown subcommand", []string{"frobnicate"}, 2, "unknown subcommand"},
		{"set-env without a target", []string{"set-env", "A=1"}, 2, "exactly one of --app and --device"},
		{"set-env with a bare word", []string{"set-env", "--app", "1", "A"}, 2, "NAME=VALUE"},
		{"set-env with an empty name", []string{"set-env", "--app", "1", "=x"}, 2, "NAME=VALUE"},
		{"a misspelt flag", []string{"push", "--ap", "2", "--dir", "."}, 2, "unknown flag --ap; did you mean --app?"},
		{"a misspelt subcommand", []string{"fault", "fail-nxt"}, 2, `unknown subcommand "fail-nxt"; did you mean fail-next?`},
		{"push without --app", []string{"push", "--dir", "."}, 2, "--app is required"},
		{"a fault without a route", []string{"fault", "delay", "--delay", "1s"}, 2, "--route is required"},
		{"a control refusal", []string{"set-env", "--app", "999", "A=1"}, 1, "HTTP 404"},
		{"an invalid variable name", []string{"set-env", "--device", strings.Repeat("a", 32), "1A=x"}, 1, "HTTP 400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := c.cli(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.msg) {
				t.Errorf("got exit %d, stderr %q; want %d mentioning %q", code, stderr, tt.code, tt.msg)
			}
		})
	}
	t.Run("a missing admin token", func(t *testing.T) {
		var out, errOut syncBuffer
		env := &cliEnv{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
		if code := runMain(context.Background(), env, []string{"cloud", "devices", "--cloud", c.url}); code != 2 || !strings.Contains(errOut.String(), "admin-token") {
			t.Errorf("got exit %d, stderr %q; want 2 about --admin-token", code, errOut.String())
		}
	})
}

// The compose seeding: a fake cloud with a state file, seeded by
// create-gateway --exist-ok, create-app --exist-ok and push
// --if-no-release, restarted and seeded again, keeps one gateway of that
// identity, one app and one release, and serves the gateway's target as
// before.
func TestSeedingACloudThatKeepsItsStateIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.json")
	const uuid, key = "9d3a2f6b1c7e4d0a8b5f2e1c3a7d9b01", "seed-key"
	image := "127.0.0.1:5000/apps/2@sha256:" + strings.Repeat("d", 64)
	type seeded struct {
		gw struct {
			UUID, APIKey    string
			DeviceID, AppID int64
		}
		app struct{ ID int64 }
		rel struct {
			ID     int64
			Commit string
		}
	}
	seed := func(c *fakeCloudRun) seeded {
		var s seeded
		c.mustCLI(t, &s.gw, "create-gateway", "--uuid", uuid, "--device-id", "1001", "--api-key", key, "--name", "gw", "--app-name", "gateways", "--exist-ok")
		c.mustCLI(t, &s.app, "create-app", "--parent-app", fmt.Sprint(s.gw.AppID), "--name", "sensors", "--exist-ok")
		c.mustCLI(t, &s.rel, "push", "--app", fmt.Sprint(s.app.ID), "--image", image, "--if-no-release")
		return s
	}
	c1 := startFakeCloud(t, "--state-file", path, "--save-interval", "10ms")
	first := seed(c1)
	again := seed(c1) // a second run of the seeds changes nothing
	if again != first {
		t.Fatalf("seeding twice: got %+v, then %+v", first, again)
	}
	if code := c1.stop(); code != 0 {
		t.Fatalf("fake-cloud exit %d, want 0", code)
	}
	c2 := startFakeCloud(t, "--state-file", path)
	if after := seed(c2); after != first {
		t.Errorf("seeding after a restart: got %+v, want %+v", after, first)
	}
	var apps []struct{ ID int64 }
	c2.mustCLI(t, &apps, "apps")
	if len(apps) != 1 {
		t.Errorf("apps after the restart: got %d, want 1", len(apps))
	}
	// The gateway created by the first run's --gateway flag is still known
	// too, with its key.
	c2.uuid, c2.key = c1.uuid, c1.key
	if st := c2.state(t); st.Dependent.Apps == nil {
		t.Errorf("the first run's gateway has no target state after the restart: %+v", st)
	}
	// Another identity under the same uuid is refused.
	if code, _, stderr := c2.cli(t, "create-gateway", "--uuid", uuid, "--api-key", "other", "--exist-ok"); code == 0 || !strings.Contains(stderr, "another identity") {
		t.Errorf("create-gateway --exist-ok with another key: exit %d, stderr %q; want a refusal", code, stderr)
	}
	if code := c2.stop(); code != 0 {
		t.Fatalf("fake-cloud exit %d, want 0", code)
	}
	// A state file that is not one is bad configuration: exit 2, file kept.
	if err := os.WriteFile(path, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	env := &cliEnv{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
	if code := runMain(context.Background(), env, []string{"fake-cloud", "--listen", "127.0.0.1:0", "--state-file", path}); code != 2 {
		t.Errorf("fake-cloud with a corrupt state file: exit %d, want 2; stderr %s", code, errOut.String())
	}
	if b, _ := os.ReadFile(path); string(b) != "{garbage" {
		t.Errorf("the corrupt state file was changed to %q", b)
	}
}

func TestFakeCloudPrintsAGeneratedTokenAndNeverLogsIt(t *testing.T) {
	cmd := startCommand(t, context.Background(), nil, "fake-cloud", "--listen", "127.0.0.1:0", "--log-level", "debug")
	var tok string
	cmd.awaitReady(t, func() bool {
		for _, line := range strings.Split(cmd.out.String(), "\n") {
			if v, ok := strings.CutPrefix(line, "DEPHARNESS_CLOUD_ADMIN_TOKEN="); ok {
				tok = v
			}
		}
		return tok != "" && strings.Contains(cmd.errOut.String(), "fake cloud listening")
	})
	if c := cmd.stop(t, 10*time.Second); c != 0 {
		t.Errorf("exit code %d, want 0", c)
	}
	if len(tok) < 16 || strings.Contains(cmd.errOut.String(), tok) {
		t.Errorf("generated token %q: want a token printed on stdout and absent from the log:\n%s", tok, cmd.errOut.String())
	}
}
