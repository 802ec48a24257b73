package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/cobra"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/httpserver"
	"github.com/depharness/depharness/internal/settings"
	"github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
	"github.com/depharness/depharness/sim/load"
	"github.com/depharness/depharness/world"
)

// loadOptions are the load command's settings.
type loadOptions struct {
	log                                           logOptions
	scenario, policy, reportDir, proxyURL, apiKey string
	cloudURL, adminToken, registryAddr            string
	registryToken, proxyMetrics, gatewayUUID      string
	gatewayListen, cpuProfile, blockProfile       string
	memProfile, setupProfile, setupMemProfile     string
	pprofListen                                   string
	devices, hookConc, gwConc, fwBytes, ahead     int
	delCount, rstCount, logLines                  int
	seed                                          int64
	timeout, retry, poll, flash, churnDur, sample time.Duration
	maxConverge, maxP99                           time.Duration
}

func newLoadCmd(env *cliEnv) *cobra.Command {
	var o loadOptions
	// Progress goes to stderr too: log warnings and errors only, unless
	// asked otherwise.
	table := append(logSettings(&o.log, "warn"),
		settings.Setting{Flag: "devices", Legacy: []string{"LOAD_DEVICES"}, Value: settings.Int(&o.devices, load.DefaultDevices), Help: "simulated devices"},
		settings.Setting{Flag: "scenario", Legacy: []string{"LOAD_SCENARIO"}, Value: settings.Text(&o.scenario, load.ScenarioRollout),
			Help: "rollout, env, churn, logs, delete, restart, a comma-separated list, or all"},
		settings.Setting{Flag: "seed", Legacy: []string{"LOAD_SEED"}, Value: settings.Int64(&o.seed, 1),
			Help: "seed of the fleet, releases, and the devices waves pick"},
		policySetting(&o.policy, "LOAD_POLICY"),
		settings.Setting{Flag: "report-dir", Legacy: []string{"LOAD_REPORT_DIR"}, Value: settings.Text(&o.reportDir, "reports"),
			Help: "directory of the JSON and HTML reports"},
		settings.Setting{Flag: "timeout", Legacy: []string{"LOAD_TIMEOUT"}, Value: settings.Duration(&o.timeout, load.DefaultTimeout),
			Help: "how long each phase may take to converge"},
		settings.Setting{Flag: "proxy", Legacy: []string{"LOAD_PROXY"}, Value: settings.Text(&o.proxyURL, ""),
			Help: "an external supervisor's base URL; empty runs the in-process world"},
		settings.Setting{Flag: "api-key", Env: config.EnvAPIKey, Value: settings.Text(&o.apiKey, ""), Help: "the external supervisor's API key"},
		cloudURLSetting(&o.cloudURL, "", "the fake cloud the external supervisor is attached to"),
		cloudAdminTokenSetting(&o.adminToken, "the fake cloud's control API token"),
		registrySetting(&o.registryAddr, "external mode: host:port of a registry to build release images into; empty lets the cloud build them"),
		registryTokenSetting(&o.registryToken, "external mode: the --registry's admin token, sent with pushes"),
		settings.Setting{Flag: "proxy-metrics", Legacy: []string{"LOAD_PROXY_METRICS"}, Value: settings.Text(&o.proxyMetrics, ""),
			Help: "external mode: the supervisor's Prometheus /metrics URL, read during each phase; empty: none"},
		settings.Setting{Flag: "gateway-uuid", Env: config.EnvDeviceUUID, Value: settings.Text(&o.gatewayUUID, ""),
			Help: "external mode: the gateway device the supervisor runs as; empty: the cloud's only gateway"},
		settings.Setting{Flag: "gateway-listen", Legacy: []string{"LOAD_GATEWAY_LISTEN"}, Value: settings.Text(&o.gatewayListen, ""),
			Help: "the gateway's hook listener; empty: 127.0.0.1:0 in-process, 127.0.0.1:1337 with --proxy"},
		settings.Setting{Flag: "hook-concurrency", Env: config.EnvHookConcurrency, Value: settings.Int(&o.hookConc, config.DefaultHookConcurrency),
			Help: "in-process proxy: hooks in flight at once"},
		settings.Setting{Flag: "gateway-concurrency", Legacy: []string{"LOAD_GATEWAY_CONCURRENCY"}, Value: settings.Int(&o.gwConc, load.DefaultGatewayConcurrency),
			Help: "devices the gateway updates at once"},
		settings.Setting{Flag: "provision-ahead", Value: settings.Int(&o.ahead, load.DefaultProvisionAhead),
			Help: "devices the gateway provisions ahead of those that reported their first update: a large fleet's provisioning " +
				"otherwise runs ahead of its updates, and the supervisor's backlog of hooks and reports grows with the gap (0: no bound)"},
		settings.Setting{Flag: "flash-time", Legacy: []string{"LOAD_FLASH_TIME"}, Value: settings.Duration(&o.flash, load.DefaultFlashTime),
			Help: "time a device takes to flash a firmware"},
		settings.Setting{Flag: "firmware-bytes", Legacy: []string{"LOAD_FIRMWARE_BYTES"}, Value: settings.Int(&o.fwBytes, load.DefaultFirmwareBytes),
			Help: "size of each release's firmware"},
		settings.Setting{Flag: "delete-count", Legacy: []string{"LOAD_DELETE_COUNT"}, Value: settings.Int(&o.delCount, 0),
			Help: "devices of the deletion wave (0: a tenth, 1 to 1000)"},
		settings.Setting{Flag: "restart-count", Legacy: []string{"LOAD_RESTART_COUNT"}, Value: settings.Int(&o.rstCount, 0),
			Help: "devices of the restart wave (0: a tenth, 1 to 1000)"},
		settings.Setting{Flag: "log-lines", Legacy: []string{"LOAD_LOG_LINES"}, Value: settings.Int(&o.logLines, load.DefaultLogLines),
			Help: "log lines per device of the log storm"},
		settings.Setting{Flag: "churn-duration", Legacy: []string{"LOAD_CHURN_DURATION"}, Value: settings.Duration(&o.churnDur, load.DefaultChurnDuration),
			Help: "how long devices churn"},
		settings.Setting{Flag: "sample-interval", Legacy: []string{"LOAD_SAMPLE_INTERVAL"}, Value: settings.Duration(&o.sample, load.DefaultSampleEvery),
			Help: "shortest interval between convergence samples"},
		settings.Setting{Flag: "max-converge", Legacy: []string{"LOAD_MAX_CONVERGE"}, Value: settings.Duration(&o.maxConverge, 0),
			Help: "fail (exit 1) if a scenario takes longer to converge (0: no limit)"},
		settings.Setting{Flag: "max-p99", Legacy: []string{"LOAD_MAX_P99"}, Value: settings.Duration(&o.maxP99, 0),
			Help: "fail (exit 1) if a scenario's p99 latency of the gateway's supervisor API requests, all routes together, is higher (0: no limit)"},
		settings.Setting{Flag: "cpuprofile", Legacy: []string{"LOAD_CPUPROFILE"}, Value: settings.Text(&o.cpuProfile, ""),
			Help: "write a CPU profile of the scenarios (not the setup, not the floors) to this file"},
		settings.Setting{Flag: "setup-cpuprofile", Value: settings.Text(&o.setupProfile, ""),
			Help: "write a CPU profile of the setup (the world's start and the provisioning of the devices) to this file"},
		settings.Setting{Flag: "setup-memprofile", Value: settings.Text(&o.setupMemProfile, ""),
			Help: "write a heap profile, taken when the provisioning ends, to this file"},
		settings.Setting{Flag: "blockprofile", Legacy: []string{"LOAD_BLOCKPROFILE"}, Value: settings.Text(&o.blockProfile, ""),
			Help: "write a profile of blocking (waits on locks, channels, connections) during the scenarios to this file"},
		settings.Setting{Flag: "memprofile", Legacy: []string{"LOAD_MEMPROFILE"}, Value: settings.Text(&o.memProfile, ""),
			Help: "write a heap profile, taken when the scenarios end, to this file"},
		settings.Setting{Flag: "pprof-listen", Value: settings.Text(&o.pprofListen, ""),
			Help: "serve the Go runtime's profiles (/debug/pprof/) on this host:port while the run lasts, for a look at a long run " +
				"while it runs (go tool pprof http://host:port/debug/pprof/heap); empty: not served"},
	)
	timing := proxyTimingSettings(&o.poll, &o.retry, world.DefaultPollInterval, world.DefaultHookRetryInterval, "in-process proxy: its")
	timing[0].Help += "; not given: the default, or 20µs a device for a fleet of more than 25,000 (a poll reads " +
		"the whole target state, about 100 bytes a device, and polls one interval apart would take most of the machine)"
	table = append(table, timing...)
	return newCommand("load", "run load scenarios (rollout, env, churn, logs, delete, restart) and write a report",
		"Run load scenarios against the in-process world, or with --proxy against an external\n"+
			"supervisor attached to a fake cloud (--cloud, --admin-token): the reference gateway app and its\n"+
			"simulated fleet run in this process, serving hooks on --gateway-listen (point the supervisor's\n"+
			"hook address at http://<gateway-listen>/v1/devices/). Devices are provisioned into a new\n"+
			"dependent app; then each scenario runs and is timed until convergence. A report is written\n"+
			"to --report-dir as JSON and HTML, with each phase's floor: the time its HTTP round trips take\n"+
			"against a bare handler in this process. Exits 1 if a scenario does not converge within\n"+
			"--timeout or misses a threshold (--max-converge, --max-p99). The Go runtime's soft memory\n"+
			"limit is 3.5 GiB during the run unless GOMEMLIMIT says otherwise.",
		table, func(cmd *cobra.Command) error {
			if !cmd.Flags().Changed("poll-interval") {
				o.poll = loadPollInterval(o.devices)
			}
			err := runLoad(cmd.Context(), env, &o) // sets the effective --gateway-listen
			return listenError(cmd, err, settings.Listener{Addr: o.gatewayListen, Flags: []string{"gateway-listen"}})
		})
}

func runLoad(ctx context.Context, env *cliEnv, o *loadOptions) error {
	log := o.log.logger(env.stderr)
	scenarios, err := load.ParseScenarios(o.scenario)
	if err != nil {
		return usagef("--scenario: %v", err)
	}
	pol := gateway.Policy(o.policy)
	switch {
	case o.devices <= 0:
		return usagef("--devices must be positive, got %d", o.devices)
	case o.timeout <= 0:
		return usagef("--timeout must be positive")
	case o.gwConc <= 0:
		return usagef("--gateway-concurrency must be positive")
	case o.ahead < 0:
		return usagef("--provision-ahead must not be negative (0: no bound)")
	case o.flash < 0:
		return usagef("--flash-time must not be negative")
	case o.hookConc <= 0:
		return usagef("--hook-concurrency must be positive")
	case o.maxConverge < 0 || o.maxP99 < 0:
		return usagef("--max-converge and --max-p99 must not be negative")
	}
	external := o.proxyURL != ""
	if external && (o.cloudURL == "" || o.adminToken == "") {
		return usagef("--proxy needs --cloud and --admin-token (the fake cloud the supervisor is attached to)")
	}
	if !external && o.registryAddr != "" {
		return usagef("--registry is for --proxy runs; the in-process world has its own registry")
	}
	// A large fleet's heap would grow to twice what it holds before the
	// collector runs; a soft limit keeps the process within the machine.
	if env.getenv("GOMEMLIMIT") == "" {
		prev := debug.SetMemoryLimit(loadMemoryLimit)
		defer debug.SetMemoryLimit(prev)
	}
	started := time.Now()
	setupDone := func() {}
	opts := load.Options{
		Devices: o.devices, Seed: o.seed, Policy: pol, GatewayConcurrency: o.gwConc, ProvisionAhead: cmp.Or(o.ahead, -1),
		FlashTime:     fleet.Dist{Dist: fleet.DistFixed, Mean: fleet.Duration(o.flash)},
		FirmwareBytes: o.fwBytes, Timeout: o.timeout, SampleEvery: o.sample,
		Params:   load.Params{DeleteCount: o.delCount, RestartCount: o.rstCount, LogLines: o.logLines, ChurnDuration: o.churnDur},
		Progress: load.NewProgress(env.stderr),
		Logger:   log,
	}
	config := map[string]any{
		"devices": o.devices, "scenario": o.scenario, "seed": o.seed, "policy": string(pol), "timeout": o.timeout.String(),
		"gateway_concurrency": o.gwConc, "provision_ahead": o.ahead, "flash_time": o.flash.String(), "firmware_bytes": o.fwBytes, "sample_interval": o.sample.String(),
	}
	mode := "in-process"
	listen := o.gatewayListen
	if external {
		mode = "external"
		if listen == "" {
			listen = "127.0.0.1:1337"
		}
		opts.ProxyURL, opts.APIKey, opts.GatewayUUID = o.proxyURL, o.apiKey, o.gatewayUUID
		opts.Cloud = &cloud.ControlClient{BaseURL: o.cloudURL, Token: o.adminToken}
		if o.registryAddr != "" {
			if _, _, err := net.SplitHostPort(o.registryAddr); err != nil {
				return usagef("--registry %q: want host:port", o.registryAddr)
			}
			b := registry.NewBuilder(registry.BuilderOptions{Registry: o.registryAddr, Token: o.registryToken})
			opts.BuildRelease = func(ctx context.Context, repo string, files map[string][]byte) (string, error) {
				ref, _, err := b.Build(ctx, repo, registry.Layer{Files: files})
				return ref, err
			}
		}
		if o.proxyMetrics != "" {
			opts.SupervisorMetrics = load.ScrapeMetrics(o.proxyMetrics, nil)
		}
		config["proxy"], config["cloud"] = o.proxyURL, o.cloudURL
	} else {
		if listen == "" {
			listen = "127.0.0.1:0"
		}
		config["poll_interval"], config["hook_retry_interval"], config["hook_concurrency"] = o.poll.String(), o.retry.String(), o.hookConc
		opts.SupervisorConcurrency = o.hookConc
	}
	th := load.Thresholds{MaxConverge: o.maxConverge, MaxP99: o.maxP99}
	if th.MaxConverge > 0 {
		config["max_converge"] = th.MaxConverge.String()
	}
	if th.MaxP99 > 0 {
		config["max_p99"] = th.MaxP99.String()
	}
	if o.setupProfile != "" || o.setupMemProfile != "" {
		stop, err := startProfiles(o.setupProfile, "", o.setupMemProfile, log)
		if err != nil {
			return err
		}
		setupDone = sync.OnceFunc(stop)
		defer setupDone()
	}
	if o.pprofListen != "" {
		srv, err := servePprof(o.pprofListen)
		if err != nil {
			return usagef("cannot listen on %s: %v; change --pprof-listen", o.pprofListen, err)
		}
		defer srv.Close()
		log.Info("profiles served", "url", srv.URL+"/debug/pprof/")
	}
	o.gatewayListen = listen // the address a listen failure names
	hookLn, err := net.Listen("tcp", listen)
	if err != nil {
		return err // named by the caller
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
			Fakes: world.FakesOptions{Seed: o.seed, Logger: log},
			Proxy: world.ProxyOptions{DataDir: dir, HookAddress: hookAddr, PollInterval: o.poll, HookRetryInterval: o.retry, HookConcurrency: o.hookConc,
				TargetStateMaxBytes: targetStateBytes(o.devices)},
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
	rep := &load.Report{Scenario: o.scenario, Started: started.UTC(), Mode: mode, Config: config}
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
	provisioned := record(h.Provision(ctx))
	setupDone()
	if provisioned {
		stop, err := startProfiles(o.cpuProfile, o.blockProfile, o.memProfile, log)
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
	jsonPath, htmlPath, werr := load.WriteFiles(o.reportDir, rep)
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

// servePprof serves net/http/pprof's handlers on addr.
func servePprof(addr string) (*httpserver.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	return httpserver.Listen(addr, mux, httpserver.Options{})
}

// loadMemoryLimit is the Go runtime's soft memory limit during a load run,
// unless GOMEMLIMIT sets another: the collector works harder as the heap
// nears it instead of letting it grow to twice the live data. The process
// holds little memory the Go runtime does not count (SQLite's page caches,
// the binary), so its resident size stays within about 4 GiB while the
// live data fits; a million devices hold about 2.5 GiB at the rollout,
// and the collector would run back to back at 3 GiB.
const loadMemoryLimit = 3584 << 20

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

// loadPollInterval is the in-process proxy's poll interval for a fleet of
// n devices when --poll-interval is not given: every poll reads, checks and
// applies the whole target state, about 3.5µs of CPU a device, so 20µs a
// device keeps polling to a small share of the machine.
func loadPollInterval(n int) time.Duration {
	return max(world.DefaultPollInterval, time.Duration(n)*20*time.Microsecond)
}

// targetStateBytes is the in-process proxy's bound on a target state for a
// fleet of n devices (TARGET_STATE_MAX_BYTES): the fake cloud's state takes
// about 100 bytes a device, so 256 leaves room; never below the default.
func targetStateBytes(n int) int64 {
	return max(config.DefaultTargetStateMaxBytes, int64(n)*256)
}
