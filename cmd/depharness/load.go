package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	proxyconfig "github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
	"github.com/depharness/depharness/sim/load"
	"github.com/depharness/depharness/world"
)

func init() {
	commands["load"] = command{
		summary: "run load scenarios (rollout, env, churn, logs, delete, restart) and write a report",
		run:     runLoad,
	}
}

func runLoad(ctx context.Context, env *cliEnv, args []string) error {
	f := newFlags(env, "load", "Run load scenarios against the in-process world, or with --proxy against an external\n"+
		"supervisor attached to a fake cloud (--cloud, --admin-token): the reference gateway app and its\n"+
		"simulated fleet run in this process, serving hooks on --gateway-listen (point the supervisor's\n"+
		"hook address at http://<gateway-listen>/v1/devices/). Devices are provisioned into a new\n"+
		"dependent app; then each scenario runs and is timed until convergence. A report is written\n"+
		"to --report-dir as JSON and HTML, with each phase's floor: the time its HTTP round trips take\n"+
		"against a bare handler in this process. Exits 1 if a scenario does not converge within\n"+
		"--timeout or misses a threshold (--max-converge, --max-p99). The Go runtime's soft memory\n"+
		"limit is 3 GiB during the run unless GOMEMLIMIT says otherwise.")
	devices := f.Int("devices", "LOAD_DEVICES", load.DefaultDevices, "simulated devices")
	scenario := f.String("scenario", "LOAD_SCENARIO", load.ScenarioRollout, "rollout, env, churn, logs, delete, restart, a comma-separated list, or all")
	seed := f.Int64("seed", "LOAD_SEED", 1, "seed of the fleet, releases, and the devices waves pick")
	policy := f.String("policy", "LOAD_POLICY", string(gateway.PolicyAck), "the gateway's answer to update hooks: 200 or 202")
	reportDir := f.String("report-dir", "LOAD_REPORT_DIR", "reports", "directory of the JSON and HTML reports")
	timeout := f.Duration("timeout", "LOAD_TIMEOUT", load.DefaultTimeout, "how long each phase may take to converge")
	proxyURL := f.String("proxy", "LOAD_PROXY", "", "an external supervisor's base URL; empty runs the in-process world")
	apiKey := f.String("api-key", "BALENA_SUPERVISOR_API_KEY", "", "the external supervisor's API key")
	cloudURL := f.String("cloud", "DEPHARNESS_CLOUD_URL", "", "the fake cloud the external supervisor is attached to")
	adminToken := f.String("admin-token", "FAKE_CLOUD_ADMIN_TOKEN", "", "the fake cloud's control API token")
	registryAddr := f.String("registry", "DEPHARNESS_REGISTRY", "", "external mode: host:port of a registry to build release images into; empty lets the cloud build them")
	registryToken := f.String("registry-token", "FAKE_REGISTRY_ADMIN_TOKEN", "", "external mode: the --registry's admin token, sent with pushes")
	proxyMetrics := f.String("proxy-metrics", "LOAD_PROXY_METRICS", "", "external mode: the supervisor's Prometheus /metrics URL, read during each phase; empty: none")
	gatewayUUID := f.String("gateway-uuid", "DEVICE_UUID", "", "external mode: the gateway device the supervisor runs as; empty: the cloud's only gateway")
	gatewayListen := f.String("gateway-listen", "LOAD_GATEWAY_LISTEN", "", "the gateway's hook listener; empty: 127.0.0.1:0 in-process, 127.0.0.1:1337 with --proxy")
	retry := f.Duration("hook-retry-interval", "HOOK_RETRY_INTERVAL", world.DefaultHookRetryInterval, "in-process proxy: HOOK_RETRY_INTERVAL")
	poll := f.Duration("poll-interval", "TARGET_POLL_INTERVAL", world.DefaultPollInterval, "in-process proxy: TARGET_POLL_INTERVAL")
	hookConc := f.Int("hook-concurrency", "HOOK_CONCURRENCY", 0, "in-process proxy: hooks in flight (0: the proxy's default)")
	gwConc := f.Int("gateway-concurrency", "LOAD_GATEWAY_CONCURRENCY", load.DefaultGatewayConcurrency, "devices the gateway updates at once")
	flash := f.Duration("flash-time", "LOAD_FLASH_TIME", load.DefaultFlashTime, "time a device takes to flash a firmware")
	fwBytes := f.Int("firmware-bytes", "LOAD_FIRMWARE_BYTES", load.DefaultFirmwareBytes, "size of each release's firmware")
	delCount := f.Int("delete-count", "LOAD_DELETE_COUNT", 0, "devices of the deletion wave (0: a tenth, 1 to 1000)")
	rstCount := f.Int("restart-count", "LOAD_RESTART_COUNT", 0, "devices of the restart wave (0: a tenth, 1 to 1000)")
	logLines := f.Int("log-lines", "LOAD_LOG_LINES", load.DefaultLogLines, "log lines per device of the log storm")
	churnDur := f.Duration("churn-duration", "LOAD_CHURN_DURATION", load.DefaultChurnDuration, "how long devices churn")
	sample := f.Duration("sample-interval", "LOAD_SAMPLE_INTERVAL", load.DefaultSampleEvery, "shortest interval between convergence samples")
	maxConverge := f.Duration("max-converge", "LOAD_MAX_CONVERGE", 0, "fail (exit 1) if a scenario takes longer to converge (0: no limit)")
	maxP99 := f.Duration("max-p99", "LOAD_MAX_P99", 0, "fail (exit 1) if a scenario's p99 latency of the gateway's supervisor API requests, all routes together, is higher (0: no limit)")
	cpuProfile := f.String("cpuprofile", "LOAD_CPUPROFILE", "", "write a CPU profile of the scenarios (not the setup, not the floors) to this file")
	// Progress goes to stderr too: log warnings and errors only, unless
	// asked otherwise.
	if fl := f.Lookup("log-level"); fl != nil {
		fl.DefValue = "warn"
		_ = fl.Value.Set("warn")
	}
	blockProfile := f.String("blockprofile", "LOAD_BLOCKPROFILE", "", "write a profile of blocking (waits on locks, channels, connections) during the scenarios to this file")
	memProfile := f.String("memprofile", "LOAD_MEMPROFILE", "", "write a heap profile, taken when the scenarios end, to this file")
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	scenarios, err := load.ParseScenarios(*scenario)
	if err != nil {
		return usagef("--scenario: %v", err)
	}
	pol, err := gateway.ParsePolicy(*policy)
	if err != nil {
		return usagef("--policy: %v", err)
	}
	switch {
	case *devices <= 0:
		return usagef("--devices must be positive, got %d", *devices)
	case *timeout <= 0:
		return usagef("--timeout must be positive")
	case *gwConc <= 0:
		return usagef("--gateway-concurrency must be positive")
	case *flash < 0:
		return usagef("--flash-time must not be negative")
	case *hookConc < 0:
		return usagef("--hook-concurrency must not be negative")
	case *maxConverge < 0 || *maxP99 < 0:
		return usagef("--max-converge and --max-p99 must not be negative")
	}
	external := *proxyURL != ""
	if external && (*cloudURL == "" || *adminToken == "") {
		return usagef("--proxy needs --cloud and --admin-token (the fake cloud the supervisor is attached to)")
	}
	if !external && *registryAddr != "" {
		return usagef("--registry is for --proxy runs; the in-process world has its own registry")
	}
	// A large fleet's heap would grow to twice what it holds before the
	// collector runs; a soft limit keeps the process within the machine.
	if env.getenv("GOMEMLIMIT") == "" {
		prev := debug.SetMemoryLimit(loadMemoryLimit)
		defer debug.SetMemoryLimit(prev)
	}
	started := time.Now()
	opts := load.Options{
		Devices: *devices, Seed: *seed, Policy: pol, GatewayConcurrency: *gwConc,
		FlashTime:     fleet.Dist{Dist: fleet.DistFixed, Mean: fleet.Duration(*flash)},
		FirmwareBytes: *fwBytes, Timeout: *timeout, SampleEvery: *sample,
		Params:   load.Params{DeleteCount: *delCount, RestartCount: *rstCount, LogLines: *logLines, ChurnDuration: *churnDur},
		Progress: load.NewProgress(env.stderr),
		Logger:   log,
	}
	config := map[string]any{
		"devices": *devices, "scenario": *scenario, "seed": *seed, "policy": string(pol), "timeout": timeout.String(),
		"gateway_concurrency": *gwConc, "flash_time": flash.String(), "firmware_bytes": *fwBytes, "sample_interval": sample.String(),
	}
	mode := "in-process"
	listen := *gatewayListen
	if external {
		mode = "external"
		if listen == "" {
			listen = "127.0.0.1:1337"
		}
		opts.ProxyURL, opts.APIKey, opts.GatewayUUID = *proxyURL, *apiKey, *gatewayUUID
		opts.Cloud = &cloud.ControlClient{BaseURL: *cloudURL, Token: *adminToken}
		if *registryAddr != "" {
			if _, _, err := net.SplitHostPort(*registryAddr); err != nil {
				return usagef("--registry %q: want host:port", *registryAddr)
			}
			b := registry.NewBuilder(registry.BuilderOptions{Registry: *registryAddr, Token: *registryToken})
			opts.BuildRelease = func(ctx context.Context, repo string, files map[string][]byte) (string, error) {
				ref, _, err := b.Build(ctx, repo, registry.Layer{Files: files})
				return ref, err
			}
		}
		if *proxyMetrics != "" {
			opts.SupervisorMetrics = load.ScrapeMetrics(*proxyMetrics, nil)
		}
		config["proxy"], config["cloud"] = *proxyURL, *cloudURL
	} else {
		if listen == "" {
			listen = "127.0.0.1:0"
		}
		hooks := *hookConc
		config["hook_concurrency"] = hooks
		if hooks == 0 {
			hooks = proxyconfig.DefaultHookConcurrency
			config["hook_concurrency"] = fmt.Sprintf("default (%d)", hooks)
		}
		config["poll_interval"], config["hook_retry_interval"] = poll.String(), retry.String()
		opts.SupervisorConcurrency = hooks
	}
	th := load.Thresholds{MaxConverge: *maxConverge, MaxP99: *maxP99}
	if th.MaxConverge > 0 {
		config["max_converge"] = th.MaxConverge.String()
	}
	if th.MaxP99 > 0 {
		config["max_p99"] = th.MaxP99.String()
	}
	hookLn, err := net.Listen("tcp", listen)
	if err != nil {
		return usagef("--gateway-listen %s: %v", listen, err)
	}
	defer hookLn.Close()
	opts.HookListener = hookLn
	hookAddr := "http://" + hookLn.Addr().String() + "/v1/devices/"
	config["gateway_hook_address"] = hookAddr

	if !external {
		dir, err := os.MkdirTemp("", "depharness-load-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		st, err := world.StartStack(ctx, world.StackOptions{
			Fakes: world.FakesOptions{Seed: *seed, Logger: log},
			Proxy: world.ProxyOptions{DataDir: dir, HookAddress: hookAddr, PollInterval: *poll, HookRetryInterval: *retry, HookConcurrency: *hookConc},
			// The load harness runs the gateway app and its fleet itself,
			// instrumented; the world provides cloud, registry and proxy.
			NoGateway: true, Logger: log,
		})
		if err != nil {
			return err
		}
		defer st.Close()
		opts.ProxyURL, opts.APIKey, opts.GatewayUUID = st.Proxy.URL, st.Proxy.APIKey, st.Identity.UUID
		opts.Cloud = &cloud.ControlClient{BaseURL: st.CloudURL, Token: st.Cloud.AdminToken()}
		opts.SupervisorMetrics = func(context.Context) ([]*dto.MetricFamily, error) { return st.Proxy.Registry.Gather() }
		opts.CloudMetrics = func(context.Context) ([]*dto.MetricFamily, error) { return st.CloudMetrics.Gather() }
		opts.RegistryMetrics = load.ScrapeMetrics("http://"+st.RegistryAddr+"/metrics", nil)
		opts.CloudLookup = func(ctx context.Context, uuids []string) ([]load.CloudDevice, error) {
			out := make([]load.CloudDevice, 0, len(uuids))
			// A predicate that holds at once: one read under the model's lock.
			err := st.Cloud.Await(ctx, func(v *cloud.View) bool {
				for _, u := range uuids {
					d, ok := v.CloudDevice(u)
					if !ok {
						continue
					}
					cd := load.CloudDevice{UUID: u, IsOnline: d.IsOnline, LogCount: v.LogCount(u)}
					if d.IsOnCommit != nil {
						cd.IsOnCommit = *d.IsOnCommit
					}
					out = append(out, cd)
				}
				return true
			})
			return out, err
		}
		log.Info("world up", "proxy", st.Proxy.URL, "cloud", st.CloudURL, "proxy_metrics", st.Proxy.MetricsURL)
	}
	h, err := load.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer h.Close()
	config["app"] = fmt.Sprintf("%s (%d)", h.App().Name, h.App().ID)
	rep := &load.Report{Scenario: *scenario, Started: started.UTC(), Mode: mode, Config: config}
	var failed []string
	record := func(res *load.Result, err error) bool {
		if res != nil {
			rep.Phases = append(rep.Phases, res)
		}
		if err != nil {
			name := "?"
			if res != nil {
				name = res.Scenario
			}
			failed = append(failed, fmt.Sprintf("%s: %v", name, err))
			return false
		}
		return true
	}
	if record(h.Provision(ctx)) {
		stop, err := startProfiles(*cpuProfile, *blockProfile, *memProfile, log)
		if err != nil {
			return err
		}
		for _, sc := range scenarios {
			if ctx.Err() != nil {
				break
			}
			record(h.Run(ctx, sc))
		}
		stop()
	}
	// Every phase's floor, with the world idle and the profiles stopped.
	for _, r := range rep.Phases {
		if ctx.Err() != nil {
			break
		}
		if err := load.MeasureFloor(ctx, r); err != nil {
			log.Warn("measuring the floor", "phase", r.Scenario, "err", err)
		}
	}
	rep.Finished = time.Now().UTC()
	rep.Passed = len(failed) == 0 && ctx.Err() == nil
	rep.Judge(th)
	rep.Process = load.ReadProcessStats()
	rep.Process.WallSeconds = time.Since(started).Seconds()
	jsonPath, htmlPath, werr := load.WriteFiles(*reportDir, rep)
	if werr != nil {
		return fmt.Errorf("writing the report: %w", werr)
	}
	summarize(env, rep, jsonPath, htmlPath)
	if ctx.Err() != nil {
		return nil // interrupted
	}
	if len(failed) > 0 {
		return errors.New("did not converge: " + strings.Join(failed, "; "))
	}
	if bad := rep.FailedThresholds(); len(bad) > 0 {
		msgs := make([]string, len(bad))
		for i, t := range bad {
			msgs[i] = t.String()
		}
		return errors.New("thresholds not met: " + strings.Join(msgs, "; "))
	}
	return nil
}

// startProfiles starts the CPU and block profiles asked for; stop ends them
// and writes their files, and the heap profile's.
func startProfiles(cpuPath, blockPath, memPath string, log *slog.Logger) (stop func(), err error) {
	var stops []func()
	if cpuPath != "" {
		pf, err := os.Create(cpuPath)
		if err != nil {
			return nil, usagef("--cpuprofile: %v", err)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			pf.Close()
			return nil, err
		}
		stops = append(stops, func() { pprof.StopCPUProfile(); pf.Close() })
	}
	if blockPath != "" {
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		stops = append(stops, func() {
			runtime.SetBlockProfileRate(0)
			if err := writeProfile("block", blockPath); err != nil {
				log.Error("block profile", "err", err)
			}
		})
	}
	if memPath != "" {
		stops = append(stops, func() {
			runtime.GC() // the heap as it is, not as the last collection left it
			if err := writeProfile("heap", memPath); err != nil {
				log.Error("heap profile", "err", err)
			}
		})
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}, nil
}

// loadMemoryLimit is the Go runtime's soft memory limit during a load run,
// unless GOMEMLIMIT sets another: the collector works harder as the heap
// nears it instead of letting it grow to twice the live data.
const loadMemoryLimit = 3 << 30

// writeProfile writes the named runtime profile to path.
func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// floorText says what a phase's floor was: "floor 612 ms for 49214 round
// trips, ratio 3.9×".
func floorText(f *load.Floor) string {
	switch {
	case f == nil:
		return "no floor"
	case f.Error != "":
		return "floor not measured: " + f.Error
	case f.RoundTrips == 0:
		return "no round trips, no floor"
	}
	scaled := ""
	if f.Sent < f.RoundTrips {
		scaled = fmt.Sprintf(" (%d of them sent, the time scaled)", f.Sent)
	}
	return fmt.Sprintf("floor %s for %d round trips%s, ratio %.1f×", load.FormatSeconds(f.Seconds), f.RoundTrips, scaled, f.Ratio)
}

// summarize prints one line per phase and the report's paths on stdout.
func summarize(env *cliEnv, rep *load.Report, jsonPath, htmlPath string) {
	for _, r := range rep.Phases {
		verdict := "converged"
		if !r.Converged {
			verdict = "DID NOT CONVERGE"
		}
		var errs int64
		for _, n := range r.Errors {
			errs += n
		}
		fmt.Fprintf(env.stdout, "%-10s %s: %d/%d devices in %s, %d errors, %s of CPU; %s\n", r.Scenario, verdict, r.Reached, r.Want,
			load.FormatSeconds(r.Seconds), errs, load.FormatSeconds(r.CPUSeconds), floorText(r.Floor))
	}
	for _, t := range rep.Thresholds {
		fmt.Fprintf(env.stdout, "threshold  %s\n", t)
	}
	fmt.Fprintf(env.stdout, "peak RSS (VmHWM) %.1f MiB, Go heap in use %.1f MiB, %d goroutines\n",
		float64(rep.Process.PeakRSSBytes)/(1<<20), float64(rep.Process.HeapInuse)/(1<<20), rep.Process.Goroutines)
	fmt.Fprintf(env.stdout, "report: %s\n        %s\n", jsonPath, htmlPath)
}
