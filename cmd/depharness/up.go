package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
	dataDir := f.String("data-dir", "DEPHARNESS_DATA_DIR", "data", "state directory: the cloud's model (cloud.json), the registry's blobs (registry/), the proxy's DATA_DIR (proxy/), the world's keys (keys.json) and its export lines (env); a world found there is resumed, with its keys")
	fresh := f.Bool("fresh", "DEPHARNESS_FRESH", false, "discard the world in --data-dir (and its keys) and start a new one")
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
	registryToken := f.String("registry-token", "FAKE_REGISTRY_ADMIN_TOKEN", "", "the fake registry's admin token for pushes and its control API (if empty, the world's, else generated)")
	apiKey := f.String("api-key", "BALENA_SUPERVISOR_API_KEY", "", "the proxy's API key (if empty, the world's, else generated)")
	envFile := f.String("env-file", "DEPHARNESS_ENV_FILE", "", "also write the export lines to this file (they are always in --data-dir's env)")
	poll := f.Duration("poll-interval", "TARGET_POLL_INTERVAL", world.DefaultPollInterval, "the proxy's target poll interval")
	retry := f.Duration("hook-retry-interval", "HOOK_RETRY_INTERVAL", world.DefaultHookRetryInterval, "the proxy's hook retry interval")
	rollout := f.Bool("rollout", "DEPHARNESS_ROLLOUT", true, "once the fleet converges, push a new release of the first app and follow its rollout")
	exitAfter := f.Bool("exit-after-rollout", "DEPHARNESS_EXIT_AFTER_ROLLOUT", false, "exit 0 once the demo rollout has converged (for scripts)")
	quietByDefault(f)
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
	keys, err := worldKeys(dirs.keys, *apiKey, *registryToken)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	proxyDir := dirs.proxy
	opts := world.StackOptions{
		Fakes: world.FakesOptions{
			CloudListen: *cloudListen, RegistryListen: *registryListen, AdminToken: *adminToken, RegistryToken: keys.RegistryAdminToken, Seed: *seed, Logger: log,
			CloudStateFile: dirs.cloudState, RegistryDir: dirs.registry,
		},
		Proxy: world.ProxyOptions{
			DataDir: proxyDir, Listen: *listen, MetricsListen: *metrics, APIKey: keys.SupervisorAPIKey,
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
	for _, p := range []string{dirs.env, *envFile} {
		if p == "" {
			continue
		}
		if err := writePrivateFile(p, []byte(exports)); err != nil {
			return fmt.Errorf("env file: %w", err)
		}
	}
	log.Debug("world up", "proxy", st.Proxy.URL, "cloud", st.CloudURL, "registry", st.RegistryAddr,
		"proxy_metrics", st.Proxy.MetricsURL, "apps", len(st.Apps), "devices", prof.Count, "resumed", st.Resumed)
	fmt.Fprint(env.stdout, nextSteps(st, *dataDir, dirs.env, exports, *exitAfter && !*noGateway))
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
		log.Debug("pushed a new release", "app", app.App.Name, "commit", rel.Commit)
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
type upDirs struct{ cloudState, registry, proxy, keys, env string }

// prepareDataDir lays out dir for a world: kept as it is when it holds a
// cloud state file (the world resumes), else (or with fresh) emptied of
// what up keeps there, since a proxy's or registry's state, or keys,
// without the cloud they belong to cannot be resumed.
func prepareDataDir(dir string, fresh bool) (upDirs, error) {
	d := upDirs{
		cloudState: filepath.Join(dir, "cloud.json"),
		registry:   filepath.Join(dir, "registry"),
		proxy:      filepath.Join(dir, "proxy"),
		keys:       filepath.Join(dir, "keys.json"),
		env:        filepath.Join(dir, "env"),
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
	for _, p := range []string{d.cloudState, d.registry, d.proxy, d.keys, d.env} {
		if err := os.RemoveAll(p); err != nil {
			return d, err
		}
	}
	return d, nil
}

// upKeys are the secrets a world keeps in its data dir, so that the
// exports of an earlier run work against a resumed one. (The fake cloud
// keeps its admin token in cloud.json itself.)
type upKeys struct {
	SupervisorAPIKey   string `json:"supervisorApiKey"`
	RegistryAdminToken string `json:"registryAdminToken"`
}

// worldKeys returns the keys of the world whose keys file is path: each is
// the one given (an explicit flag or variable wins), else the one the file
// holds, else a new one; and it writes them back, so the next run keeps
// them. prepareDataDir has removed the file of a world that is not resumed.
func worldKeys(path, apiKey, registryToken string) (upKeys, error) {
	var k upKeys
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &k); err != nil {
			return k, fmt.Errorf("%s: %w", path, err)
		}
	case !os.IsNotExist(err):
		return k, err
	}
	for _, f := range []struct {
		v     *string
		given string
	}{{&k.SupervisorAPIKey, apiKey}, {&k.RegistryAdminToken, registryToken}} {
		switch {
		case f.given != "":
			*f.v = f.given
		case *f.v == "":
			if *f.v, err = newKey(); err != nil {
				return k, err
			}
		}
	}
	b, err = json.MarshalIndent(k, "", "  ")
	if err != nil {
		return k, err
	}
	return k, writePrivateFile(path, append(b, '\n'))
}

// newKey is 16 random bytes in hex, like the keys the world generates.
func newKey() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// writePrivateFile replaces path with data, readable by its owner only
// (also when path existed with a wider mode): a file created beside it is
// renamed over it, so a reader never sees half of it.
func writePrivateFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, there is none
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// upExports are the shell lines that make the seed page's curl examples
// work against the world. The supervisor's address and key are also given
// under their legacy RESIN_ names, which gateway apps written for the
// earlier releases of this API read.
func upExports(st *world.Stack) string {
	var b strings.Builder
	export := func(name, value string) { fmt.Fprintf(&b, "export %s=%s\n", name, shellWord(value)) }
	export("BALENA_SUPERVISOR_ADDRESS", st.Proxy.URL)
	export("BALENA_SUPERVISOR_API_KEY", st.Proxy.APIKey)
	export("RESIN_SUPERVISOR_ADDRESS", st.Proxy.URL)
	export("RESIN_SUPERVISOR_API_KEY", st.Proxy.APIKey)
	export("DEPHARNESS_CLOUD_URL", st.CloudURL)
	export("FAKE_CLOUD_ADMIN_TOKEN", st.Cloud.AdminToken())
	export("DEPHARNESS_REGISTRY", st.RegistryAddr)
	export("FAKE_REGISTRY_ADMIN_TOKEN", st.RegistryToken)
	return b.String()
}

// shellWord returns v as one word of a POSIX shell: as it is when that is
// safe (the generated keys and addresses), else in single quotes.
func shellWord(v string) string {
	if v != "" && strings.IndexFunc(v, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.,:/@%+=", r))
	}) < 0 {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// nextSteps is what up prints on stdout once the world is up, apart from
// the logs (stderr): where things are, the exports, and what to do next.
func nextSteps(st *world.Stack, dataDir, envFile, exports string, exitsAfterRollout bool) string {
	if abs, err := filepath.Abs(envFile); err == nil {
		envFile = abs
	}
	var b strings.Builder
	if st.Resumed {
		fmt.Fprintf(&b, "depharness up: resumed the world in %s (its gateway, apps, devices and keys; --fresh starts a new one)\n", dataDir)
	} else {
		fmt.Fprintf(&b, "depharness up: a new world in %s (the next up resumes it)\n", dataDir)
	}
	fmt.Fprintf(&b, "\n  supervisor API  %s\n", st.Proxy.URL)
	if st.FleetViewURL != "" {
		fmt.Fprintf(&b, "  fleet view      %s   (open it in a browser)\n", st.FleetViewURL)
	}
	fmt.Fprintf(&b, "  fake cloud      %s   fake registry %s\n", st.CloudURL, st.RegistryAddr)
	fmt.Fprintf(&b, "\n%s\nNext, in another shell:\n", exports)
	fmt.Fprintf(&b, "  source %s\n", shellWord(envFile))
	b.WriteString(`  curl "$BALENA_SUPERVISOR_ADDRESS/v1/devices?apikey=$BALENA_SUPERVISOR_API_KEY"` + "\n")
	b.WriteString("  depharness verify --target-cmd 'exec /path/to/your-supervisor'   # the compliance suite\n")
	if exitsAfterRollout {
		b.WriteString("\nup exits once the rollout has converged (Ctrl-C stops it sooner).\n")
	} else {
		b.WriteString("\nCtrl-C stops the world.\n")
	}
	return b.String()
}

// quietByDefault makes up log warnings and errors only unless --log-level
// or LOG_LEVEL says otherwise: its parts' INFO lines (every device
// provisioned, every target applied) would drown the next steps, and the
// progress lines say what they did.
func quietByDefault(f *flags) {
	if fl := f.Lookup("log-level"); fl != nil {
		fl.DefValue = "warn"
		_ = fl.Value.Set("warn")
	}
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
