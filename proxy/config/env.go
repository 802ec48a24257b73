package config

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/depharness/depharness/api"
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
	EnvAllowances        = "DEPHARNESS_ALLOWANCES"
	EnvServerHeader      = "SERVER_HEADER_TIMEOUT"
	EnvServerBody        = "SERVER_BODY_TIMEOUT"
	EnvServerIdle        = "SERVER_IDLE_TIMEOUT"
)

// Setting is one setting of the reference proxy, bound once: FromEnv reads
// it from its variable and `depharness proxy` offers it as a flag.
type Setting struct {
	// Env is its environment variable; Legacy, if not empty, an older name
	// read when Env is unset.
	Env, Legacy string
	// Flag is the name of its flag, without dashes.
	Flag string
	// Default is the value it takes when unset, as text that Set accepts;
	// empty means none (the setting is required, or its default is derived,
	// as Help then says).
	Default string
	// Help says what it is, for --help.
	Help string
	// Set parses a value into its field of c.
	Set func(c *Config, value string) error
}

// Settings is every setting of the reference proxy.
var Settings = []Setting{
	{Env: EnvAPIEndpoint, Flag: "api-endpoint", Help: "the cloud's base URL (required)",
		Set: field(text, func(c *Config) *string { return &c.APIEndpoint })},
	{Env: EnvDeviceUUID, Flag: "device-uuid", Help: "the gateway's uuid in the cloud (required)",
		Set: field(text, func(c *Config) *string { return &c.DeviceUUID })},
	{Env: EnvDeviceID, Flag: "device-id", Help: "the gateway's device id in the cloud (required)",
		Set: field(int64Of, func(c *Config) *int64 { return &c.DeviceID })},
	{Env: EnvDeviceAPIKey, Flag: "device-api-key", Help: "the gateway's key for the cloud (required)",
		Set: field(text, func(c *Config) *string { return &c.DeviceAPIKey })},
	{Env: EnvAPIKey, Flag: "api-key", Help: "the key clients of the API must present (required)",
		Set: field(text, func(c *Config) *string { return &c.APIKey })},
	{Env: EnvListenHost, Flag: "listen-host", Default: DefaultListenHost, Help: "host the API listens on",
		Set: field(text, func(c *Config) *string { return &c.ListenHost })},
	{Env: EnvPort, Flag: "port", Default: strconv.Itoa(DefaultPort), Help: "port the API listens on",
		Set: field(strconv.Atoi, func(c *Config) *int { return &c.Port })},
	{Env: EnvHookAddress, Legacy: EnvHookAddressLegacy, Flag: "hook-address", Default: api.DefaultHookAddress,
		Help: "hook base address; the device uuid is appended",
		Set:  field(text, func(c *Config) *string { return &c.HookAddress })},
	{Env: EnvDataDir, Flag: "data-dir", Default: DefaultDataDir, Help: "directory of the database and the assets cache",
		Set: field(text, func(c *Config) *string { return &c.DataDir })},
	{Env: EnvPollInterval, Flag: "poll-interval", Default: DefaultPollInterval.String(),
		Help: "how often the target state is polled",
		Set:  field(time.ParseDuration, func(c *Config) *time.Duration { return &c.PollInterval })},
	{Env: EnvHookRetry, Flag: "hook-retry-interval", Default: DefaultHookRetry.String(),
		Help: "hook pacing per device, the 202 loop's interval and the first backoff step",
		Set:  field(time.ParseDuration, func(c *Config) *time.Duration { return &c.HookRetryInterval })},
	{Env: EnvHookTimeout, Flag: "hook-timeout", Default: DefaultHookTimeout.String(), Help: "timeout of one hook request",
		Set: field(time.ParseDuration, func(c *Config) *time.Duration { return &c.HookTimeout })},
	{Env: EnvHookConcurrency, Flag: "hook-concurrency", Default: strconv.Itoa(DefaultHookConcurrency),
		Help: "hooks in flight at once across devices",
		Set:  field(strconv.Atoi, func(c *Config) *int { return &c.HookConcurrency })},
	{Env: EnvHookBackoffMax, Flag: "hook-backoff-max",
		Help: "cap of the backoff after failed hooks (default 10 × the hook retry interval)",
		Set:  field(time.ParseDuration, func(c *Config) *time.Duration { return &c.HookBackoffMax })},
	{Env: EnvAssetMaxBytes, Flag: "asset-max-bytes", Default: strconv.Itoa(DefaultAssetMaxBytes),
		Help: "largest assets tar of one release",
		Set:  field(int64Of, func(c *Config) *int64 { return &c.AssetMaxBytes })},
	{Env: EnvAssetStall, Flag: "asset-stall-timeout", Default: DefaultAssetStall.String(),
		Help: "abandon and retry an image pull that received nothing for this long",
		Set:  field(time.ParseDuration, func(c *Config) *time.Duration { return &c.AssetStallTimeout })},
	{Env: EnvCloudTimeout, Flag: "cloud-timeout", Default: DefaultCloudTimeout.String(),
		Help: "timeout of one request to the cloud (poll, provisioning, report, logs)",
		Set:  field(time.ParseDuration, func(c *Config) *time.Duration { return &c.CloudTimeout })},
	{Env: EnvRegistryInsecure, Flag: "registry-insecure", Default: "false",
		Help: "registries reached over plain HTTP: true (all), false, or host[:port],… (loopback registries always are)",
		Set: func(c *Config, v string) (err error) {
			c.RegistryInsecure, c.RegistryInsecureHosts, err = ParseRegistryInsecure(v)
			return err
		}},
	{Env: EnvLogBufferLines, Flag: "log-buffer-lines", Default: strconv.Itoa(DefaultLogBufferLines),
		Help: "log lines kept while the cloud is unreachable; the oldest are dropped beyond",
		Set:  field(strconv.Atoi, func(c *Config) *int { return &c.LogBufferLines })},
	{Env: EnvLogBufferBytes, Flag: "log-buffer-bytes", Default: strconv.Itoa(DefaultLogBufferBytes),
		Help: "bytes of log lines kept while the cloud is unreachable; the oldest are dropped beyond",
		Set:  field(int64Of, func(c *Config) *int64 { return &c.LogBufferBytes })},
	{Env: EnvLogBatchBytes, Flag: "log-batch-bytes", Default: strconv.Itoa(DefaultLogBatchBytes),
		Help: "most bytes of log lines sent in one request (a larger line goes alone)",
		Set:  field(int64Of, func(c *Config) *int64 { return &c.LogBatchBytes })},
	{Env: EnvLogLineMaxBytes, Flag: "log-line-max-bytes", Default: strconv.Itoa(DefaultLogLineMaxBytes),
		Help: "longest log line sent to the cloud; a longer message is cut and marked",
		Set:  field(strconv.Atoi, func(c *Config) *int { return &c.LogLineMaxBytes })},
	{Env: EnvReportQueueBytes, Flag: "report-queue-bytes", Default: strconv.Itoa(DefaultReportQueueBytes),
		Help: "bytes of queued reports (merged per device); the oldest are dropped beyond",
		Set:  field(int64Of, func(c *Config) *int64 { return &c.ReportQueueBytes })},
	{Env: EnvMetricsAddress, Flag: "metrics-address", Default: DefaultMetricsAddress,
		Help: "Prometheus listener host:port, or off",
		Set:  field(text, func(c *Config) *string { return &c.MetricsAddress })},
	{Env: EnvServerHeader, Flag: "server-header-timeout",
		Help: "read deadline of a request's headers (default 10s, at most 30s)",
		Set:  field(time.ParseDuration, func(c *Config) *time.Duration { return &c.ServerHeaderTimeout })},
	{Env: EnvServerBody, Flag: "server-body-timeout",
		Help: "read deadline of a request's body, from its headers (default 30s, at most 30s)",
		Set:  field(time.ParseDuration, func(c *Config) *time.Duration { return &c.ServerBodyTimeout })},
	{Env: EnvServerIdle, Flag: "server-idle-timeout",
		Help: "idle kept-alive connections closed after (default 60s, at most 120s)",
		Set:  field(time.ParseDuration, func(c *Config) *time.Duration { return &c.ServerIdleTimeout })},
	{Env: EnvViolations, Flag: "violations",
		Help: "deliberate contract violations, comma-separated; for the suite's self-check only",
		Set:  field(violation.Parse, func(c *Config) *violation.Set { return &c.Violations })},
	{Env: EnvAllowances, Flag: "allowances",
		Help: "deviations the contract allows, comma-separated; for the suite's self-check only",
		Set:  field(violation.ParseAllowances, func(c *Config) *violation.Set { return &c.Allowances })},
}

// field makes a Setting.Set that parses a value into one field of Config.
func field[T any](parse func(string) (T, error), at func(*Config) *T) func(*Config, string) error {
	return func(c *Config, v string) error {
		x, err := parse(v)
		if err != nil {
			return err
		}
		*at(c) = x
		return nil
	}
}

func text(v string) (string, error) { return v, nil }

func int64Of(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) }

// Variables lists every variable FromEnv reads, legacy names included.
var Variables = func() []string {
	var vs []string
	for _, s := range Settings {
		vs = append(vs, s.Env)
		if s.Legacy != "" {
			vs = append(vs, s.Legacy)
		}
	}
	return vs
}()

// FromEnv builds a validated configuration from environment variables
// (getenv is os.Getenv or a test's map), one Setting at a time. Unset
// variables take their defaults; every unparsable or invalid one is
// reported, by name.
func FromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	var c Config
	for _, s := range Settings {
		name, v := s.Env, getenv(s.Env)
		if v == "" && s.Legacy != "" {
			name, v = s.Legacy, getenv(s.Legacy)
		}
		if v == "" {
			name, v = s.Env+" (default)", s.Default
		}
		if v == "" {
			continue
		}
		if err := s.Set(&c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", name, v, err))
		}
	}
	c = c.WithDefaults()
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return c, c.Validate()
}
