package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/fakes/cloud"
)

// Ports inside the containers, the same as in docker-compose.yml.
const (
	cloudPort          = "48480/tcp"
	proxyPort          = "48484/tcp"
	proxyMetricsPort   = "48485/tcp"
	gatewayPort        = "1337/tcp"
	gatewayMetricsPort = "48486/tcp"
)

// adminToken guards the fake cloud's control API in every test world.
const adminToken = "e2e-admin-token"

// supervisorKey is the supervisor API key of every test world's proxy.
const supervisorKey = "e2e-supervisor-key"

// registryHost is the fake registry as the containers reach it: the fake
// cloud pushes release images there and hands out references with this host.
// The name is under .localhost (RFC 6761), which the proxy, like
// go-containerregistry for loopback hosts, reaches over plain HTTP; a bare
// "registry" would be tried over TLS. The Docker daemon reaches the same
// registry on its published loopback port instead (see hostRef), and a
// digest reference names the same image through either host.
const registryHost = registryAlias + ":48481"

// registryAlias is the fake registry container's name on the network.
const registryAlias = "registry.localhost"

// worldOptions shape a test world. Zero values mean the defaults in
// parentheses.
type worldOptions struct {
	// Devices is the gateway's fleet size (0: no gateway container).
	Devices int
	// Policy is the gateway's hook answer policy ("" → the gateway's
	// default, 200).
	Policy string
	// Profile, if set, is the fleet profile (JSON, see sim/fleet.Profile)
	// the gateway runs; its count is overridden by Devices.
	Profile string
	// PollInterval is TARGET_POLL_INTERVAL (300ms).
	PollInterval time.Duration
	// HookRetry is HOOK_RETRY_INTERVAL (500ms).
	HookRetry time.Duration
	// HookTimeout is HOOK_TIMEOUT (3s).
	HookTimeout time.Duration
	// RegistryOnDisk runs the registry with its blobs and manifests on a
	// volume (--dir), so that they survive a restart of its container.
	RegistryOnDisk bool
	// ProxyEnv is added to the proxy's environment (DEPHARNESS_VIOLATIONS
	// to show that a test catches a named violation).
	ProxyEnv map[string]string
}

// world is the whole system as containers on one fresh network.
type world struct {
	t        testing.TB
	opts     worldOptions
	Net      *testcontainers.DockerNetwork
	Registry *service
	Cloud    *service
	Proxy    *service
	Gateway  *service // nil without a fleet
	// Ctl drives the fake cloud through its published port.
	Ctl *cloud.ControlClient
	// GW is the gateway identity the proxy runs as; App its dependent app.
	GW  cloud.Gateway
	App cloud.App
	// ProxyVolume is the named volume of the proxy's DATA_DIR.
	ProxyVolume string
}

// startWorld starts registry, cloud, creates the gateway identity and a
// dependent app through the control API, then starts the proxy and (with
// opts.Devices > 0) the gateway with its fleet.
func startWorld(t testing.TB, opts worldOptions) *world {
	t.Helper()
	if opts.PollInterval == 0 {
		opts.PollInterval = 300 * time.Millisecond
	}
	if opts.HookRetry == 0 {
		opts.HookRetry = 500 * time.Millisecond
	}
	if opts.HookTimeout == 0 {
		opts.HookTimeout = 3 * time.Second
	}
	w := &world{t: t, opts: opts, Net: newNetwork(t)}
	if opts.RegistryOnDisk {
		w.Registry = startService(t, w.Net, registrySpec(newVolume(t, "registry-data")))
	} else {
		w.Registry = startRegistry(t, w.Net)
	}
	w.Cloud = startCloud(t, w.Net)
	w.Ctl = &cloud.ControlClient{BaseURL: w.Cloud.URL(t, cloudPort), Token: adminToken}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gw, err := w.Ctl.CreateGateway(ctx, cloud.GatewaySpec{})
	if err != nil {
		t.Fatalf("create the gateway identity: %v", err)
	}
	app, err := w.Ctl.CreateApp(ctx, cloud.AppSpec{Gateway: gw.UUID})
	if err != nil {
		t.Fatalf("create a dependent app: %v", err)
	}
	w.GW, w.App = gw, app
	w.ProxyVolume = newVolume(t, "proxy-data")
	w.Proxy = startService(t, w.Net, serviceSpec{
		Alias:     "proxy",
		Cmd:       []string{"proxy"},
		Env:       w.proxyEnv(),
		Ports:     []string{proxyPort, proxyMetricsPort},
		HealthURL: "http://127.0.0.1:48484/ping",
		Volume:    w.ProxyVolume,
	})
	if opts.Devices > 0 {
		w.Gateway = startGateway(t, w.Net, gatewaySpec{Alias: "gateway", Supervisor: "http://proxy:48484",
			AppID: app.ID, Devices: opts.Devices, Policy: opts.Policy, Profile: opts.Profile})
	}
	return w
}

// startCloud starts `depharness fake-cloud` on nw as "cloud", pushing
// release images to the registry container.
func startCloud(t testing.TB, nw *testcontainers.DockerNetwork) *service {
	t.Helper()
	return startService(t, nw, serviceSpec{
		Alias: "cloud",
		Cmd:   []string{"fake-cloud", "--listen", "0.0.0.0:48480"},
		Env: map[string]string{
			"DEPHARNESS_CLOUD_ADMIN_TOKEN": adminToken,
			"DEPHARNESS_REGISTRY":          registryHost,
		},
		Ports:     []string{cloudPort},
		HealthURL: "http://127.0.0.1:48480/metrics",
	})
}

// gatewaySpec is one gateway app container with its fleet.
type gatewaySpec struct {
	Alias      string // network alias, the host of the proxy's hook address
	Supervisor string // the proxy's API as seen on the network
	AppID      int64  // dependent app the devices are provisioned into
	Devices    int
	Policy     string // "200", "202" or "" (the gateway's default)
	Profile    string // fleet profile JSON, or "" for the default fleet
}

// startGateway starts `depharness gateway` with its fleet. It logs as JSON
// at debug level, so tests can read the hooks it received from its log.
func startGateway(t testing.TB, nw *testcontainers.DockerNetwork, g gatewaySpec) *service {
	t.Helper()
	cmd := []string{"gateway",
		"--supervisor-address", g.Supervisor,
		"--api-key", supervisorKey,
		"--listen", "0.0.0.0:1337",
		"--metrics-listen", "0.0.0.0:48486",
		"--app", strconv.FormatInt(g.AppID, 10),
		"--devices", strconv.Itoa(g.Devices),
		"--seed", "1",
	}
	if g.Policy != "" {
		cmd = append(cmd, "--policy", g.Policy)
	}
	var files map[string][]byte
	if g.Profile != "" {
		cmd = append(cmd, "--profile", "/profile.json")
		files = map[string][]byte{"/profile.json": []byte(g.Profile)}
	}
	return startService(t, nw, serviceSpec{
		Alias:     g.Alias,
		Cmd:       cmd,
		Env:       map[string]string{"LOG_FORMAT": "json", "LOG_LEVEL": "debug"},
		Ports:     []string{gatewayPort, gatewayMetricsPort},
		HealthURL: "http://127.0.0.1:48486/metrics",
		Files:     files,
	})
}

// proxyEnv is the harness interface of CONTRACT.md for the proxy container.
func (w *world) proxyEnv() map[string]string {
	env := map[string]string{
		"API_ENDPOINT":                          "http://cloud:48480",
		"DEVICE_UUID":                           w.GW.UUID,
		"DEVICE_ID":                             strconv.FormatInt(w.GW.DeviceID, 10),
		"DEVICE_API_KEY":                        w.GW.APIKey,
		"BALENA_SUPERVISOR_API_KEY":             supervisorKey,
		"BALENA_SUPERVISOR_PORT":                "48484",
		"DEPHARNESS_LISTEN_HOST":                "0.0.0.0",
		"BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS": "http://gateway:1337/v1/devices/",
		"DATA_DIR":                              "/data",
		"TARGET_POLL_INTERVAL":                  w.opts.PollInterval.String(),
		"HOOK_RETRY_INTERVAL":                   w.opts.HookRetry.String(),
		"HOOK_TIMEOUT":                          w.opts.HookTimeout.String(),
		"METRICS_ADDRESS":                       "0.0.0.0:48485",
		"LOG_LEVEL":                             "debug",
	}
	for k, v := range w.opts.ProxyEnv {
		env[k] = v
	}
	return env
}

// ProxyURL is the proxy's API on its published port.
func (w *world) ProxyURL() string { return w.Proxy.URL(w.t, proxyPort) }

// pushRelease pushes a release of the world's app with one file,
// firmware.bin, whose contents name the release, and returns it.
func (w *world) pushRelease(t testing.TB, label string) cloud.Release {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rel, err := w.Ctl.PushRelease(ctx, w.App.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{
		Files: map[string][]byte{
			"assets/firmware.bin": []byte(strings.Repeat("firmware "+label+"\n", 512)),
			"assets/VERSION":      []byte(label),
		},
	}}})
	if err != nil {
		t.Fatalf("push release %s: %v", label, err)
	}
	t.Logf("release %s: commit %s image %s", label, rel.Commit, rel.Image)
	return rel
}

// cloudDevices is the cloud's view of the devices of the world's gateway.
func (w *world) cloudDevices(t testing.TB) []cloud.DeviceInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := w.Ctl.Devices(ctx, cloud.DeviceFilter{Gateway: w.GW.UUID})
	if err != nil {
		t.Fatalf("cloud devices: %v", err)
	}
	return ds
}

// proxyDevices is GET /v1/devices of the proxy; err for any failure.
func (w *world) proxyDevices() ([]api.Device, error) {
	var ds []api.Device
	err := getJSON(w.ProxyURL()+"/v1/devices", supervisorKey, &ds)
	return ds, err
}

// awaitConverged waits until the cloud has devices of the world's app
// (at least want of them, all provisioned) each reporting commit, and the
// proxy shows each with commit == targetCommit == commit.
func (w *world) awaitConverged(t testing.TB, timeout time.Duration, want int, commit string) {
	t.Helper()
	awaitCond(t, timeout, fmt.Sprintf("%d devices on commit %.7s", want, commit), func() (bool, string) {
		ds := w.cloudDevices(t)
		on := 0
		for _, d := range ds {
			if d.IsOnCommit != nil && *d.IsOnCommit == commit {
				on++
			}
		}
		if len(ds) < want || on != len(ds) {
			return false, fmt.Sprintf("cloud: %d devices, %d on the commit", len(ds), on)
		}
		pds, err := w.proxyDevices()
		if err != nil {
			return false, "proxy: " + err.Error()
		}
		pon := 0
		for _, d := range pds {
			if d.Commit != nil && *d.Commit == commit && d.TargetCommit != nil && *d.TargetCommit == commit {
				pon++
			}
		}
		return pon == len(ds) && len(pds) == len(ds), fmt.Sprintf("cloud: all %d on the commit; proxy: %d devices, %d converged", len(ds), len(pds), pon)
	})
}

// getJSON GETs url with the supervisor key and decodes a 200 answer.
func getJSON(url, key string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// commitsOf lists the distinct commits the cloud sees the devices on.
func commitsOf(ds []cloud.DeviceInfo) []string {
	var out []string
	for _, d := range ds {
		c := "<none>"
		if d.IsOnCommit != nil {
			c = *d.IsOnCommit
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}
