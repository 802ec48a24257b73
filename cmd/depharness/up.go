package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
	"github.com/depharness/depharness/sim/load"
	"github.com/depharness/depharness/world"
)

func init() {
	commands["up"] = command{
		summary: "bring the whole world up in one process: fake cloud and registry, reference proxy, gateway, fleet",
		run:     runUp,
	}
}

func runUp(ctx context.Context, env *cliEnv, args []string) error {
	f := newFlags(env, "up", "Start the fake cloud, the fake registry, the reference proxy, the reference gateway app and a\n"+
		"fleet of simulated devices in one process, with a seeded demo world, then roll a new release out.")
	dataDir := f.String("data-dir", "DEPHARNESS_DATA_DIR", "data", "state directory: the cloud's model (cloud.json), the registry's blobs (registry/) and the proxy's DATA_DIR (proxy/); a world found there is resumed")
	fresh := f.Bool("fresh", "DEPHARNESS_FRESH", false, "discard the world in --data-dir and start a new one")
	devices := f.Int("devices", "DEPHARNESS_DEVICES", 20, "number of simulated dependent devices")
	profile := f.String("profile", "DEPHARNESS_PROFILE", "", "fleet profile JSON file (its count is overridden by --devices)")
	seed := f.Int64("seed", "DEPHARNESS_SEED", 1, "seed of the fakes and the fleet")
	noGateway := f.Bool("no-gateway", "DEPHARNESS_NO_GATEWAY", false, "start no gateway app: hooks go to --hook-address (your own gateway app)")
	hookAddr := f.String("hook-address", "BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS", "http://127.0.0.1:1337/v1/devices/", "hook base address with --no-gateway")
	policy := f.String("policy", "GATEWAY_POLICY", "202", "how the reference gateway answers update hooks: 200 or 202")
	listen := f.String("listen", "DEPHARNESS_PROXY_LISTEN", "127.0.0.1:48484", "the proxy API's listen address")
	metrics := f.String("metrics-listen", "METRICS_ADDRESS", "127.0.0.1:48485", "the proxy's metrics listen address")
	cloudListen := f.String("cloud-listen", "FAKE_CLOUD_LISTEN", "127.0.0.1:48480", "the fake cloud's listen address")
	registryListen := f.String("registry-listen", "FAKE_REGISTRY_LISTEN", "127.0.0.1:48481", "the fake registry's listen address")
	gatewayListen := f.String("gateway-listen", "GATEWAY_LISTEN", "127.0.0.1:1337", "the reference gateway's hook listen address")
	gatewayMetrics := f.String("gateway-metrics-listen", "GATEWAY_METRICS_LISTEN", "127.0.0.1:48486", "the gateway's metrics listen address")
	fleetView := f.String("fleet-view-listen", "GATEWAY_FLEET_VIEW_LISTEN", "127.0.0.1:48487", "the live fleet view's listen address (open it in a browser); empty disables it")
	adminToken := f.String("admin-token", "FAKE_CLOUD_ADMIN_TOKEN", "", "the fake cloud's control API token (generated if empty)")
	registryToken := f.String("registry-token", "FAKE_REGISTRY_ADMIN_TOKEN", "", "the fake registry's admin token for pushes and its control API (generated if empty)")
	apiKey := f.String("api-key", "BALENA_SUPERVISOR_API_KEY", "", "the proxy's API key (generated if empty)")
	envFile := f.String("env-file", "DEPHARNESS_ENV_FILE", "", "also write the export lines to this file")
	poll := f.Duration("poll-interval", "TARGET_POLL_INTERVAL", world.DefaultPollInterval, "the proxy's target poll interval")
	retry := f.Duration("hook-retry-interval", "HOOK_RETRY_INTERVAL", world.DefaultHookRetryInterval, "the proxy's hook retry interval")
	rollout := f.Bool("rollout", "DEPHARNESS_ROLLOUT", true, "once the fleet converges, push a new release of the first app and follow its rollout")
	exitAfter := f.Bool("exit-after-rollout", "DEPHARNESS_EXIT_AFTER_ROLLOUT", false, "exit 0 once the demo rollout has converged (for scripts)")
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	pol, err := gateway.ParsePolicy(*policy)
	if err != nil {
		return usageError{err}
	}
	prof := fleet.Profile{Seed: *seed, FlashTime: fleet.Dist{Dist: "uniform", Min: fleet.Duration(200 * time.Millisecond), Max: fleet.Duration(time.Second)}, LogRate: 0.2}
	if *profile != "" {
		if prof, err = fleet.LoadProfile(*profile); err != nil {
			return usagef("profile: %v", err)
		}
	}
	prof.Count = *devices
	dirs, err := prepareDataDir(*dataDir, *fresh)
	if err != nil {
		return usagef("data dir: %v", err)
	}
	proxyDir := dirs.proxy
	opts := world.StackOptions{
		Fakes: world.FakesOptions{
			CloudListen: *cloudListen, RegistryListen: *registryListen, AdminToken: *adminToken, RegistryToken: *registryToken, Seed: *seed, Logger: log,
			CloudStateFile: dirs.cloudState, RegistryDir: dirs.registry,
		},
		Proxy: world.ProxyOptions{
			DataDir: proxyDir, Listen: *listen, MetricsListen: *metrics, APIKey: *apiKey,
			PollInterval: *poll, HookRetryInterval: *retry,
		},
		NoGateway: *noGateway, GatewayListen: *gatewayListen, GatewayMetricsListen: *gatewayMetrics, FleetViewListen: *fleetView,
		Policy: pol, Profile: prof, Demo: true, Logger: log,
	}
	if *noGateway {
		opts.Proxy.HookAddress = *hookAddr
		opts.GatewayMetricsListen = ""
	}
	st, err := world.StartStack(ctx, opts)
	if err != nil {
		return err
	}
	defer st.Close()

	exports := upExports(st)
	fmt.Fprint(env.stdout, exports)
	if *envFile != "" {
		if err := os.WriteFile(*envFile, []byte(exports), 0o600); err != nil {
			return err
		}
	}
	log.Info("world up", "proxy", st.Proxy.URL, "cloud", st.CloudURL, "registry", st.RegistryAddr,
		"proxy_metrics", st.Proxy.MetricsURL, "apps", len(st.Apps), "devices", prof.Count)
	if st.FleetViewURL != "" {
		fmt.Fprintf(env.stderr, "fleet view: %s\n", st.FleetViewURL)
	}
	if *noGateway {
		<-ctx.Done()
		return nil
	}
	prog := load.NewProgress(env.stderr)
	if err := followRollout(ctx, st, prog, "initial release", prof.Count); err != nil {
		return nil // interrupted
	}
	if *rollout && len(st.Apps) > 0 {
		app := st.Apps[0]
		rel, err := st.Cloud.PushRelease(ctx, app.App.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: map[string][]byte{
			"assets/firmware.bin":  []byte(fmt.Sprintf("%s firmware v2 %s\n", app.App.Name, time.Now().UTC().Format(time.RFC3339))),
			"assets/manifest.json": []byte(`{"board":"esp32","version":"2.0.0"}`),
		}}}})
		if err != nil {
			return fmt.Errorf("push demo release: %w", err)
		}
		log.Info("pushed a new release", "app", app.App.Name, "commit", rel.Commit)
		if err := followRollout(ctx, st, prog, "rollout of "+app.App.Name+" "+rel.Commit[:7], prof.Count); err != nil {
			return nil
		}
	}
	if *exitAfter {
		return nil
	}
	fmt.Fprintln(env.stderr, "world is up; Ctrl-C stops it")
	<-ctx.Done()
	return nil
}

// upDirs are the parts of up's data directory.
type upDirs struct{ cloudState, registry, proxy string }

// prepareDataDir lays out dir for a world: kept as it is when it holds a
// cloud state file (the world resumes), else (or with fresh) emptied of
// what up keeps there, since a proxy's or registry's state without the
// cloud it belongs to cannot be resumed.
func prepareDataDir(dir string, fresh bool) (upDirs, error) {
	d := upDirs{
		cloudState: filepath.Join(dir, "cloud.json"),
		registry:   filepath.Join(dir, "registry"),
		proxy:      filepath.Join(dir, "proxy"),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return d, err
	}
	_, err := os.Stat(d.cloudState)
	switch {
	case err == nil && !fresh:
		return d, nil
	case err != nil && !os.IsNotExist(err):
		return d, err
	}
	for _, p := range []string{d.cloudState, d.registry, d.proxy} {
		if err := os.RemoveAll(p); err != nil {
			return d, err
		}
	}
	return d, nil
}

// upExports are the shell lines that make the seed page's curl examples
// work against the world.
func upExports(st *world.Stack) string {
	var b strings.Builder
	fmt.Fprintf(&b, "export BALENA_SUPERVISOR_ADDRESS=%s\n", st.Proxy.URL)
	fmt.Fprintf(&b, "export BALENA_SUPERVISOR_API_KEY=%s\n", st.Proxy.APIKey)
	fmt.Fprintf(&b, "export DEPHARNESS_CLOUD_URL=%s\n", st.CloudURL)
	fmt.Fprintf(&b, "export FAKE_CLOUD_ADMIN_TOKEN=%s\n", st.Cloud.AdminToken())
	fmt.Fprintf(&b, "export DEPHARNESS_REGISTRY=%s\n", st.RegistryAddr)
	fmt.Fprintf(&b, "export FAKE_REGISTRY_ADMIN_TOKEN=%s\n", st.RegistryToken)
	return b.String()
}

// followRollout shows progress until every device of the gateway reports
// its app's latest release to the cloud, or ctx ends.
func followRollout(ctx context.Context, st *world.Stack, p *load.Progress, what string, want int) error {
	start := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		conv, total := st.FleetConvergence()
		if total < want {
			total = want
		}
		p.Show(what, conv, total, time.Since(start))
		if conv >= total && total > 0 {
			p.Done(what, total, time.Since(start))
			return nil
		}
		select {
		case <-ctx.Done():
			p.Interrupt()
			return ctx.Err()
		case <-tick.C:
		}
	}
}
