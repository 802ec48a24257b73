package config

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/depharness/depharness/proxy/violation"
)

// The environment variables of the reference proxy: the harness interface
// of CONTRACT.md, then the operator's settings.
const (
	EnvAPIEndpoint       = "API_ENDPOINT"
	EnvDeviceUUID        = "DEVICE_UUID"
	EnvDeviceID          = "DEVICE_ID"
	EnvDeviceAPIKey      = "DEVICE_API_KEY"
	EnvAPIKey            = "BALENA_SUPERVISOR_API_KEY"
	EnvPort              = "BALENA_SUPERVISOR_PORT"
	EnvHookAddress       = "BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS"
	EnvHookAddressLegacy = "RESIN_DEPENDENT_DEVICES_HOOK_ADDRESS"
	EnvDataDir           = "DATA_DIR"
	EnvPollInterval      = "TARGET_POLL_INTERVAL"
	EnvHookRetry         = "HOOK_RETRY_INTERVAL"
	EnvHookTimeout       = "HOOK_TIMEOUT"
	EnvListenHost        = "DEPHARNESS_LISTEN_HOST"
	EnvHookConcurrency   = "HOOK_CONCURRENCY"
	EnvHookBackoffMax    = "HOOK_BACKOFF_MAX"
	EnvAssetMaxBytes     = "ASSET_MAX_BYTES"
	EnvAssetStall        = "ASSET_STALL_TIMEOUT"
	EnvRegistryInsecure  = "REGISTRY_INSECURE"
	EnvCloudTimeout      = "CLOUD_TIMEOUT"
	EnvLogBufferLines    = "LOG_BUFFER_LINES"
	EnvLogBufferBytes    = "LOG_BUFFER_BYTES"
	EnvLogBatchBytes     = "LOG_BATCH_BYTES"
	EnvLogLineMaxBytes   = "LOG_LINE_MAX_BYTES"
	EnvReportQueueBytes  = "REPORT_QUEUE_BYTES"
	EnvMetricsAddress    = "METRICS_ADDRESS"
	EnvViolations        = "DEPHARNESS_VIOLATIONS"
	EnvServerHeader      = "SERVER_HEADER_TIMEOUT"
	EnvServerBody        = "SERVER_BODY_TIMEOUT"
	EnvServerIdle        = "SERVER_IDLE_TIMEOUT"
)

// Variables lists every variable FromEnv reads, for commands that bind
// them to flags (and the test that keeps both in step).
var Variables = []string{
	EnvAPIEndpoint, EnvDeviceUUID, EnvDeviceID, EnvDeviceAPIKey, EnvAPIKey, EnvPort,
	EnvHookAddress, EnvHookAddressLegacy, EnvDataDir, EnvPollInterval, EnvHookRetry, EnvHookTimeout,
	EnvListenHost, EnvHookConcurrency, EnvHookBackoffMax, EnvAssetMaxBytes, EnvAssetStall,
	EnvRegistryInsecure, EnvCloudTimeout, EnvLogBufferLines, EnvMetricsAddress, EnvViolations,
	EnvServerHeader, EnvServerBody, EnvServerIdle,
	EnvLogBufferBytes, EnvLogBatchBytes, EnvLogLineMaxBytes, EnvReportQueueBytes,
}

// FromEnv builds a validated configuration from environment variables
// (getenv is os.Getenv or a test's map). Unset variables take their
// defaults; every unparsable or invalid one is reported, by name.
func FromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	parse := func(name string, f func(string) error) {
		if v := getenv(name); v != "" {
			if err := f(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", name, v, err))
			}
		}
	}
	c := Config{Port: DefaultPort}
	c.APIEndpoint, c.DeviceUUID, c.DeviceAPIKey = getenv(EnvAPIEndpoint), getenv(EnvDeviceUUID), getenv(EnvDeviceAPIKey)
	c.APIKey, c.DataDir, c.ListenHost = getenv(EnvAPIKey), getenv(EnvDataDir), getenv(EnvListenHost)
	c.MetricsAddress = getenv(EnvMetricsAddress)
	if c.HookAddress = getenv(EnvHookAddress); c.HookAddress == "" {
		c.HookAddress = getenv(EnvHookAddressLegacy)
	}
	parse(EnvDeviceID, func(v string) (err error) { c.DeviceID, err = strconv.ParseInt(v, 10, 64); return })
	parse(EnvPort, func(v string) (err error) { c.Port, err = strconv.Atoi(v); return })
	parse(EnvHookConcurrency, func(v string) (err error) { c.HookConcurrency, err = strconv.Atoi(v); return })
	parse(EnvLogBufferLines, func(v string) (err error) { c.LogBufferLines, err = strconv.Atoi(v); return })
	parse(EnvAssetMaxBytes, func(v string) (err error) { c.AssetMaxBytes, err = strconv.ParseInt(v, 10, 64); return })
	parse(EnvLogBufferBytes, func(v string) (err error) { c.LogBufferBytes, err = strconv.ParseInt(v, 10, 64); return })
	parse(EnvLogBatchBytes, func(v string) (err error) { c.LogBatchBytes, err = strconv.ParseInt(v, 10, 64); return })
	parse(EnvLogLineMaxBytes, func(v string) (err error) { c.LogLineMaxBytes, err = strconv.Atoi(v); return })
	parse(EnvReportQueueBytes, func(v string) (err error) { c.ReportQueueBytes, err = strconv.ParseInt(v, 10, 64); return })
	parse(EnvRegistryInsecure, func(v string) (err error) {
		c.RegistryInsecure, c.RegistryInsecureHosts, err = ParseRegistryInsecure(v)
		return
	})
	for name, d := range map[string]*time.Duration{
		EnvPollInterval: &c.PollInterval, EnvHookRetry: &c.HookRetryInterval, EnvHookTimeout: &c.HookTimeout,
		EnvHookBackoffMax: &c.HookBackoffMax, EnvAssetStall: &c.AssetStallTimeout,
		EnvCloudTimeout: &c.CloudTimeout,
		EnvServerHeader: &c.ServerHeaderTimeout, EnvServerBody: &c.ServerBodyTimeout, EnvServerIdle: &c.ServerIdleTimeout,
	} {
		parse(name, func(v string) (err error) { *d, err = time.ParseDuration(v); return })
	}
	parse(EnvViolations, func(v string) (err error) { c.Violations, err = violation.Parse(v); return })
	c = c.WithDefaults()
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return c, c.Validate()
}
