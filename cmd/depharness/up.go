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

	"github.com/spf13/cobra"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/settings"
	"github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
	"github.com/depharness/depharness/sim/load"
	"github.com/depharness/depharness/world"
)

// upOptions are up's settings.
type upOptions struct {
	log                                          logOptions
	dataDir, profile, hookAddr, policy           string
	listen, metrics, cloudListen, registryListen string
	gatewayListen, gatewayMetrics, fleetView     string
	adminToken, registryToken, apiKey, envFile   string
	fresh, noGateway, rollout, exitAfter         bool
	devices                                      int
	seed                                         int64
	poll, retry                                  time.Duration
}

func newUpCmd(env *cliEnv) *cobra.Command {
	var o upOptions
	// up logs warnings and errors only by default: its parts' INFO lines
	// (every device provisioned, every target applied) would drown the
	// next steps, and the progress lines say what they did.
	table := append(logSettings(&o.log, "warn"),
		settings.Setting{Flag: "data-dir", Legacy: []string{"DEPHARNESS_DATA_DIR"}, Value: settings.Text(&o.dataDir, "data"),
			Help: "state directory: the cloud's model (cloud.json), the registry's blobs (registry/), the proxy's DATA_DIR (proxy/), the world's keys (keys.json) and its export lines (env); a world found there is resumed, with its keys"},
		settings.Setting{Flag: "fresh", Legacy: []string{"DEPHARNESS_FRESH"}, Value: settings.Bool(&o.fresh, false),
			Help: "discard the world in --data-dir (and its keys) and start a new one"},
		settings.Setting{Flag: "devices", Legacy: []string{"DEPHARNESS_DEVICES"}, Value: settings.Int(&o.devices, 20),
			Help: "number of simulated dependent devices"},
		settings.Setting{Flag: "profile", Legacy: []string{"DEPHARNESS_PROFILE"}, Value: settings.Text(&o.profile, ""),
			Help: "fleet profile JSON file (its count is overridden by --devices)"},
		settings.Setting{Flag: "seed", Legacy: []string{"DEPHARNESS_SEED"}, Value: settings.Int64(&o.seed, 1),
			Help: "seed of the fakes and the fleet"},
		settings.Setting{Flag: "no-gateway", Legacy: []string{"DEPHARNESS_NO_GATEWAY"}, Value: settings.Bool(&o.noGateway, false),
			Help: "start no gateway app: hooks go to --hook-address (your own gateway app)"},
		settings.Setting{Flag: "hook-address", Env: config.EnvHookAddress, Value: settings.Text(&o.hookAddr, "http://127.0.0.1:1337/v1/devices/"),
			Help: "hook base address with --no-gateway"},
		policySetting(&o.policy, "GATEWAY_POLICY"),
		settings.Setting{Flag: "listen", Legacy: []string{"DEPHARNESS_PROXY_LISTEN"}, Value: settings.Text(&o.listen, "127.0.0.1:48484"),
			Help: "the proxy API's listen address"},
		settings.Setting{Flag: "metrics-listen", Env: config.EnvMetricsAddress, Value: settings.Text(&o.metrics, config.DefaultMetricsAddress),
			Help: "the proxy's metrics listen address"},
		settings.Setting{Flag: "cloud-listen", Legacy: []string{"FAKE_CLOUD_LISTEN"}, Value: settings.Text(&o.cloudListen, "127.0.0.1:48480"),
			Help: "the fake cloud's listen address"},
		settings.Setting{Flag: "registry-listen", Legacy: []string{"FAKE_REGISTRY_LISTEN"}, Value: settings.Text(&o.registryListen, "127.0.0.1:48481"),
			Help: "the fake registry's listen address (keep it across runs: release images name it)"},
		settings.Setting{Flag: "gateway-listen", Legacy: []string{"GATEWAY_LISTEN"}, Value: settings.Text(&o.gatewayListen, "127.0.0.1:1337"),
			Help: "the reference gateway's hook listen address"},
		settings.Setting{Flag: "gateway-metrics-listen", Legacy: []string{"GATEWAY_METRICS_LISTEN"}, Value: settings.Text(&o.gatewayMetrics, "127.0.0.1:48486"),
			Help: "the gateway's metrics listen address"},
		settings.Setting{Flag: "fleet-view-listen", Legacy: []string{"GATEWAY_FLEET_VIEW_LISTEN"}, Value: settings.Text(&o.fleetView, "127.0.0.1:48487"),
			Help: "the live fleet view's listen address (open it in a browser); empty disables it"},
		cloudAdminTokenSetting(&o.adminToken, "the fake cloud's control API token; empty generates one"),
		registryTokenSetting(&o.registryToken, "the fake registry's admin token for pushes and its control API; empty: the world's, else a generated one"),
		settings.Setting{Flag: "api-key", Env: config.EnvAPIKey, Value: settings.Text(&o.apiKey, ""),
			Help: "the proxy's API key; empty: the world's, else a generated one"},
		settings.Setting{Flag: "env-file", Legacy: []string{"DEPHARNESS_ENV_FILE"}, Value: settings.Text(&o.envFile, ""),
			Help: "also write the export lines to this file (they are always in --data-dir's env)"},
		settings.Setting{Flag: "rollout", Legacy: []string{"DEPHARNESS_ROLLOUT"}, Value: settings.Bool(&o.rollout, true),
			Help: "once the fleet converges, push a new release of the first app and follow its rollout"},
		settings.Setting{Flag: "exit-after-rollout", Legacy: []string{"DEPHARNESS_EXIT_AFTER_ROLLOUT"}, Value: settings.Bool(&o.exitAfter, false),
			Help: "exit 0 once the demo rollout has converged (for scripts)"},
	)
	table = append(table, proxyTimingSettings(&o.poll, &o.retry, world.DefaultPollInterval, world.DefaultHookRetryInterval, "the proxy's")...)
	return newCommand("up", "bring the whole world up in one process: fake cloud and registry, reference proxy, gateway, fleet",
		"Start the fake cloud, the fake registry, the reference proxy, the reference gateway app and a\n"+
			"fleet of simulated devices in one process, with a seeded demo world, then roll a new release out.",
		table, func(cmd *cobra.Command) error {
			err := runUp(cmd.Context(), env, &o)
			return listenError(cmd, err,
				settings.Listener{Addr: o.listen, Flags: []string{"listen"}},
				settings.Listener{Addr: o.metrics, Flags: []string{"metrics-listen"}},
				settings.Listener{Addr: o.cloudListen, Flags: []string{"cloud-listen"}},
				settings.Listener{Addr: o.registryListen, Flags: []string{"registry-listen"}},
				settings.Listener{Addr: o.gatewayListen, Flags: []string{"gateway-listen"}},
				settings.Listener{Addr: o.gatewayMetrics, Flags: []string{"gateway-metrics-listen"}},
				settings.Listener{Addr: o.fleetView, Flags: []string{"fleet-view-listen"}})
		})
}

func runUp(ctx context.Context, env *cliEnv, o *upOptions) error {
	if o.devices < 0 {
		return usagef("--devices must not be negative, got %d", o.devices)
	}
	log := o.log.logger(env.stderr)
	pol := gateway.Policy(o.policy)
	var err error
	prof := fleet.Profile{Seed: o.seed, FlashTime: fleet.Dist{Dist: "uniform", Min: fleet.Duration(200 * time.Millisecond), Max: fleet.Duration(time.Second)}, LogRate: 0.2}
	if o.profile != "" {
		if prof, err = fleet.LoadProfile(o.profile); err != nil {
			return usagef("--profile: %v", err)
		}
	}
	prof.Count = o.devices
	dirs, err := prepareDataDir(o.dataDir, o.fresh)
	if err != nil {
		return usagef("data dir: %v", err)
	}
	keys, err := worldKeys(dirs.keys, o.apiKey, o.registryToken)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	proxyDir := dirs.proxy
	opts := world.StackOptions{
		Fakes: world.FakesOptions{
			CloudListen: o.cloudListen, RegistryListen: o.registryListen, AdminToken: o.adminToken, RegistryToken: keys.RegistryAdminToken, Seed: o.seed, Logger: log,
			CloudStateFile: dirs.cloudState, RegistryDir: dirs.registry,
		},
		Proxy: world.ProxyOptions{
			DataDir: proxyDir, Listen: o.listen, MetricsListen: o.metrics, APIKey: keys.SupervisorAPIKey,
			PollInterval: o.poll, HookRetryInterval: o.retry,
		},
		NoGateway: o.noGateway, GatewayListen: o.gatewayListen, GatewayMetricsListen: o.gatewayMetrics, FleetViewListen: o.fleetView,
		Policy: pol, Profile: prof, Demo: true, Logger: log,
	}
	if o.noGateway {
		opts.Proxy.HookAddress = o.hookAddr
		opts.GatewayMetricsListen = ""
	}
	st, err := world.StartStack(ctx, opts)
	if err != nil {
		return err
	}
	defer st.Close()

	exports := upExports(st)
	for _, p := range []string{dirs.env, o.envFile} {
		if p == "" {
			continue
		}
		if err := writePrivateFile(p, []byte(exports)); err != nil {
			return fmt.Errorf("env file: %w", err)
		}
	}
	log.Debug("world up", "proxy", st.Proxy.URL, "cloud", st.CloudURL, "registry", st.RegistryAddr,
		"proxy_metrics", st.Proxy.MetricsURL, "apps", len(st.Apps), "devices", prof.Count, "resumed", st.Resumed)
	fmt.Fprint(env.stdout, nextSteps(st, o.dataDir, dirs.env, exports, o.exitAfter && !o.noGateway))
	if o.noGateway {
		<-ctx.Done()
		return nil
	}
	prog := load.NewProgress(env.stderr)
	if err := followRollout(ctx, st, prog, "initial release", prof.Count); err != nil {
		return nil // interrupted
	}
	if o.rollout && len(st.Apps) > 0 {
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
	if o.exitAfter {
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
	export(envCloudURL, st.CloudURL)
	export(envCloudAdminToken, st.Cloud.AdminToken())
	export(envRegistry, st.RegistryAddr)
	export(envRegistryAdminToken, st.RegistryToken)
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
