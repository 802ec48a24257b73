package main

import (
	"context"
	"maps"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/supervisortest"
	"github.com/depharness/depharness/world"
)

func TestGatewayRefusesBadFlags(t *testing.T) {
	badProfile := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(badProfile, []byte(`{"count": 2, "flashSpeed": "fast"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"a policy other than 200 or 202 is refused", []string{"--policy", "201"}, "--policy"},
		{"a negative device count is refused", []string{"--devices", "-5"}, "--devices"},
		{"an app id that is not a number is refused", []string{"--app", "13015,edge"}, "--app"},
		{"a profile with an unknown field is refused", []string{"--profile", badProfile}, "unknown field"},
		{"a missing profile is refused", []string{"--profile", filepath.Join(t.TempDir(), "none.json")}, "--profile"},
		{"a supervisor address without scheme is refused", []string{"--supervisor-address", "127.0.0.1:48484"}, "--supervisor-address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr syncBuffer
			env := &cliEnv{stdout: &syncBuffer{}, stderr: &stderr, getenv: func(string) string { return "" }}
			args := append([]string{"gateway", "--listen", "127.0.0.1:0"}, tc.args...)
			if code := runMain(context.Background(), env, args); code != 2 {
				t.Errorf("got exit code %d, want 2 (stderr: %s)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("got stderr %q, want it to mention %q", stderr.String(), tc.want)
			}
		})
	}
}

// startGatewayOnEdgeApp runs the gateway command for 3 devices of app 13015
// ("edgeApp1" at commit c1) of a test supervisor with API key "k", with env
// added to its environment and args to its flags.
func startGatewayOnEdgeApp(t *testing.T, env map[string]string, args ...string) (*supervisortest.Server, *bgRun) {
	t.Helper()
	sup := supervisortest.New("k")
	sup.SetApp(13015, "edgeApp1", "c1", nil)
	srv := httptest.NewServer(sup.Handler())
	t.Cleanup(srv.Close)
	environ := map[string]string{"BALENA_SUPERVISOR_ADDRESS": srv.URL, "BALENA_SUPERVISOR_API_KEY": "k", "GATEWAY_DEVICES": "3"}
	maps.Copy(environ, env)
	cmd := startCommand(t, context.Background(), func(k string) string { return environ[k] },
		append([]string{"gateway", "--listen", "127.0.0.1:0", "--app", "13015"}, args...)...)
	return sup, cmd
}

func TestGatewayProvisionsTheFleetAndStopsOnCancel(t *testing.T) {
	sup, cmd := startGatewayOnEdgeApp(t, nil, "--seed", "7")
	stderr := cmd.errOut

	actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer acancel()
	err := sup.Await(actx, func(s *supervisortest.Server) bool {
		ds := s.Devices()
		if len(ds) != 3 {
			return false
		}
		for _, d := range ds {
			if d.AppID != 13015 || d.Status != "Idle" || d.IsOnline == nil || !*d.IsOnline {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("got devices %+v, want 3 of app 13015 reported Idle and online: %v\n%s", sup.Devices(), err, stderr.String())
	}
	if code := cmd.stop(t, 10*time.Second); code != 0 {
		t.Errorf("got exit code %d, want 0 after a graceful shutdown\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "seed=7") {
		t.Errorf("got log %q, want the seed logged", stderr.String())
	}
}

func TestGatewayExitsWithAnErrorForARefusedApp(t *testing.T) {
	sup := supervisortest.New("k")
	srv := httptest.NewServer(sup.Handler())
	t.Cleanup(srv.Close)
	var stderr syncBuffer
	env := &cliEnv{stdout: &syncBuffer{}, stderr: &stderr, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := runMain(ctx, env, []string{"gateway", "--supervisor-address", srv.URL, "--api-key", "k", "--listen", "127.0.0.1:0", "--app", "99", "--devices", "1"})
	if code != 1 {
		t.Errorf("got exit code %d, want 1\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "Provisioning failed") {
		t.Errorf("got stderr %q, want the supervisor's refusal", stderr.String())
	}
}

func TestParseExpectedChecksums(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"13015/c1": "`+strings.Repeat("a", 64)+`"}`), 0o600)
	fn, err := loadExpectedChecksums(good)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := fn(13015, "c1"); !ok || v != strings.Repeat("a", 64) {
		t.Errorf("got %q %v, want the file's checksum", v, ok)
	}
	if _, ok := fn(13015, "c2"); ok {
		t.Error("got a checksum for an unlisted commit, want none")
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"c1": "x"}`), 0o600)
	if _, err := loadExpectedChecksums(bad); err == nil {
		t.Error("got no error for a key without app id, want one")
	}
}

// startHookedStack starts a world without a gateway app whose proxy sends
// its hooks to a free local address, returned for the command under test to
// listen on: the supervisor is configured with it before anything listens
// there, as in a container. demo seeds the world's demo apps.
func startHookedStack(t *testing.T, ctx context.Context, poll, retry time.Duration, demo bool) (*world.Stack, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hookListen := ln.Addr().String()
	ln.Close()
	st, err := world.StartStack(ctx, world.StackOptions{
		Proxy:     world.ProxyOptions{DataDir: t.TempDir(), HookAddress: "http://" + hookListen + "/v1/devices/", PollInterval: poll, HookRetryInterval: retry},
		NoGateway: true,
		Demo:      demo,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, hookListen
}

func TestGatewayRestartedAgainstTheReferenceProxyAdoptsItsDevices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// One hook address for both runs, as a container's.
	st, hookListen := startHookedStack(t, ctx, 50*time.Millisecond, 100*time.Millisecond, true)
	sup, err := client.New(client.Options{BaseURL: st.Proxy.URL, APIKey: st.Proxy.APIKey})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range st.Apps {
		ids = append(ids, strconv.FormatInt(a.App.ID, 10))
	}
	const n = 4
	// start runs the gateway subcommand; stop ends it and checks its exit.
	start := func() (stop func()) {
		cmd := startCommand(t, ctx, nil, "gateway", "--supervisor-address", st.Proxy.URL, "--api-key", st.Proxy.APIKey,
			"--listen", hookListen, "--app", strings.Join(ids, ","), "--devices", strconv.Itoa(n), "--seed", "3")
		return func() {
			t.Helper()
			if code := cmd.stop(t, 20*time.Second); code != 0 {
				t.Fatalf("gateway: got exit code %d, want 0\n%s", code, cmd.errOut.String())
			}
		}
	}
	cloudUUIDs := func() []string {
		var out []string
		for _, d := range st.Cloud.Devices(cloud.DeviceFilter{Gateway: st.Identity.UUID}) {
			out = append(out, d.UUID)
		}
		slices.Sort(out)
		return out
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the cloud has devices %v", cloudUUIDs())
		}
	})
	awaitCond := func(what string, cond func() bool) {
		t.Helper()
		testkit.Await(ctx, t, what, cond)
	}

	stop := start()
	awaitCond("every device on its release in the cloud", func() bool {
		conv, total := st.Convergence(st.Identity.UUID)
		return conv == n && total == n
	})
	stop()
	first := cloudUUIDs()

	// While the gateway is down, a device is deleted in the cloud: the
	// proxy marks it (410) and its delete hook waits for the gateway.
	deleted := first[0]
	if err := st.Cloud.DeleteDevice(deleted); err != nil {
		t.Fatal(err)
	}
	awaitCond("the proxy answers 410 for the deleted device", func() bool {
		_, err := sup.Device(ctx, deleted)
		return client.IsGone(err)
	})

	stop = start()
	defer stop()
	awaitCond("the deleted device's delete hook answered and the device gone from the proxy", func() bool {
		_, err := sup.Device(ctx, deleted)
		return client.IsNotFound(err)
	})
	awaitCond("the fleet is whole again in the cloud", func() bool { return len(cloudUUIDs()) == n })
	second := cloudUUIDs()
	var kept []string
	for _, u := range first[1:] {
		if slices.Contains(second, u) {
			kept = append(kept, u)
		}
	}
	if len(kept) != n-1 || slices.Contains(second, deleted) {
		t.Errorf("got devices %v after the restart, want the %d survivors of %v adopted and one new in place of %s", second, n-1, first, deleted)
	}
	// The proxy learns of the replacement device from its next poll, after
	// the cloud has it: wait for its list to be whole too, then check that
	// it holds no second fleet.
	var list []api.Device
	awaitCond("the fleet is whole again at the proxy", func() bool {
		l, err := sup.Devices(ctx)
		list = l
		return err == nil && len(l) >= n
	})
	if len(list) != n {
		t.Errorf("got %d devices at the proxy, want %d (no second fleet)", len(list), n)
	}

	// The adopted devices answer their hooks: a new release reaches them.
	rel, err := st.Cloud.PushRelease(ctx, st.Apps[0].App.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: map[string][]byte{"assets/firmware.bin": []byte("v2")}}}})
	if err != nil {
		t.Fatal(err)
	}
	awaitCond("every device on its app's latest release in the cloud", func() bool {
		conv, total := st.Convergence(st.Identity.UUID)
		return conv == n && total == n
	})
	onNew := 0
	for _, d := range st.Cloud.Devices(cloud.DeviceFilter{Gateway: st.Identity.UUID, AppID: st.Apps[0].App.ID}) {
		if d.IsOnCommit != nil && *d.IsOnCommit == rel.Commit && d.Status == "Idle" {
			onNew++
		}
	}
	if onNew != n/2 {
		t.Errorf("got %d devices of app %d idle on %s, want %d", onNew, st.Apps[0].App.ID, rel.Commit, n/2)
	}
}
