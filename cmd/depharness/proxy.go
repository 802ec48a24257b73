package main

import (
	"context"
	"fmt"

	"github.com/depharness/depharness/proxy"
	"github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/proxy/violation"
)

func init() {
	commands["proxy"] = command{
		summary: "run the reference proxy (the supervisor side of the dependent-device API)",
		run:     runProxy,
	}
}

// proxyFlags binds every configuration variable of the reference proxy to a
// flag with its environment variable, so that `depharness proxy` honours the
// harness interface of CONTRACT.md.
func proxyFlags(f *flags) func() (config.Config, error) {
	endpoint := f.String("api-endpoint", config.EnvAPIEndpoint, "", "the cloud's base URL (required)")
	uuid := f.String("device-uuid", config.EnvDeviceUUID, "", "the gateway's uuid in the cloud (required)")
	id := f.Int64("device-id", config.EnvDeviceID, 0, "the gateway's device id in the cloud (required)")
	devKey := f.String("device-api-key", config.EnvDeviceAPIKey, "", "the gateway's key for the cloud (required)")
	apiKey := f.String("api-key", config.EnvAPIKey, "", "the key clients of the API must present (required)")
	host := f.String("listen-host", config.EnvListenHost, config.DefaultListenHost, "host the API listens on")
	port := f.Int("port", config.EnvPort, config.DefaultPort, "port the API listens on")
	hook := f.String("hook-address", config.EnvHookAddress+","+config.EnvHookAddressLegacy, "http://0.0.0.0:1337/v1/devices/", "hook base address; the device uuid is appended")
	dataDir := f.String("data-dir", config.EnvDataDir, config.DefaultDataDir, "directory of the database and the assets cache")
	poll := f.Duration("poll-interval", config.EnvPollInterval, config.DefaultPollInterval, "how often the target state is polled")
	retry := f.Duration("hook-retry-interval", config.EnvHookRetry, config.DefaultHookRetry, "hook pacing per device, the 202 loop's interval and the first backoff step")
	timeout := f.Duration("hook-timeout", config.EnvHookTimeout, config.DefaultHookTimeout, "timeout of one hook request")
	conc := f.Int("hook-concurrency", config.EnvHookConcurrency, config.DefaultHookConcurrency, "hooks in flight at once across devices")
	backoff := f.Duration("hook-backoff-max", config.EnvHookBackoffMax, 0, "cap of the backoff after failed hooks (default 10 × hook retry interval)")
	assetMax := f.Int64("asset-max-bytes", config.EnvAssetMaxBytes, config.DefaultAssetMaxBytes, "largest assets tar of one release")
	stall := f.Duration("asset-stall-timeout", config.EnvAssetStall, config.DefaultAssetStall, "abandon and retry an image pull that received nothing for this long")
	cloudTimeout := f.Duration("cloud-timeout", config.EnvCloudTimeout, config.DefaultCloudTimeout, "timeout of one request to the cloud (poll, provisioning, report, logs)")
	insecure := f.String("registry-insecure", config.EnvRegistryInsecure, "false", "registries reached over plain HTTP: true (all), false, or host[:port],… (loopback registries always are)")
	logBuf := f.Int("log-buffer-lines", config.EnvLogBufferLines, config.DefaultLogBufferLines, "log lines kept while the cloud is unreachable; the oldest are dropped beyond")
	logBytes := f.Int64("log-buffer-bytes", config.EnvLogBufferBytes, config.DefaultLogBufferBytes, "bytes of log lines kept while the cloud is unreachable; the oldest are dropped beyond")
	logBatch := f.Int64("log-batch-bytes", config.EnvLogBatchBytes, config.DefaultLogBatchBytes, "most bytes of log lines sent in one request (a larger line goes alone)")
	logLine := f.Int("log-line-max-bytes", config.EnvLogLineMaxBytes, config.DefaultLogLineMaxBytes, "longest log line sent to the cloud; a longer message is cut and marked")
	reportQueue := f.Int64("report-queue-bytes", config.EnvReportQueueBytes, config.DefaultReportQueueBytes, "bytes of queued reports (merged per device); the oldest are dropped beyond")
	metrics := f.String("metrics-address", config.EnvMetricsAddress, config.DefaultMetricsAddress, "Prometheus listener host:port, or off")
	srvHeader := f.Duration("server-header-timeout", config.EnvServerHeader, 0, "read deadline of a request's headers (default 10s, at most 30s)")
	srvBody := f.Duration("server-body-timeout", config.EnvServerBody, 0, "read deadline of a request's body, from its headers (default 30s, at most 30s)")
	srvIdle := f.Duration("server-idle-timeout", config.EnvServerIdle, 0, "idle kept-alive connections closed after (default 60s, at most 120s)")
	viol := f.String("violations", config.EnvViolations, "", "deliberate contract violations, comma-separated; for the suite's self-check only")
	return func() (config.Config, error) {
		vs, err := violation.Parse(*viol)
		if err != nil {
			return config.Config{}, err
		}
		allInsecure, insecureHosts, err := config.ParseRegistryInsecure(*insecure)
		if err != nil {
			return config.Config{}, fmt.Errorf("%s: %w", config.EnvRegistryInsecure, err)
		}
		c := config.Config{
			APIEndpoint: *endpoint, DeviceUUID: *uuid, DeviceID: *id, DeviceAPIKey: *devKey,
			APIKey: *apiKey, ListenHost: *host, Port: *port, HookAddress: *hook, DataDir: *dataDir,
			PollInterval: *poll, HookRetryInterval: *retry, HookTimeout: *timeout,
			HookConcurrency: *conc, HookBackoffMax: *backoff, AssetMaxBytes: *assetMax,
			AssetStallTimeout: *stall, RegistryInsecure: allInsecure, RegistryInsecureHosts: insecureHosts, CloudTimeout: *cloudTimeout,
			LogBufferLines: *logBuf, LogBufferBytes: *logBytes, LogBatchBytes: *logBatch, LogLineMaxBytes: *logLine,
			ReportQueueBytes: *reportQueue, MetricsAddress: *metrics, Violations: vs,
			ServerHeaderTimeout: *srvHeader, ServerBodyTimeout: *srvBody, ServerIdleTimeout: *srvIdle,
		}.WithDefaults()
		return c, c.Validate()
	}
}

func runProxy(ctx context.Context, env *cliEnv, args []string) error {
	f := newFlags(env, "proxy", "Run the reference proxy: the supervisor side of the dependent-device API.")
	build := proxyFlags(f)
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	cfg, err := build()
	if err != nil {
		return usageError{fmt.Errorf("bad configuration:\n%w", err)}
	}
	p, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		// An unusable DATA_DIR is bad configuration too: exit 2 before listening.
		return usageError{err}
	}
	return p.Run(ctx)
}
