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
	EnvTargetStateMax    = "TARGET_STATE_MAX_BYTES"
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
	// Type says what a value looks like, for --help: int, duration, url,
	// host:port, list…
	Type string
	// Default is the value it takes when unset, as text that Set accepts;
	// empty means none (the setting is Required, or its default is
	// derived, as Help then says).
	Default string
	// Required settings have no default: FromEnv fails without them.
	Required bool
	// Help says what it is, for --help; it states a default only when that
	// is derived (Default is then empty).
	Help string
	// Set parses a value into its field of c.
	Set func(c *Config, value string) error
}

// Settings is every setting of the reference proxy.
var Settings = []Setting{
	{Env: EnvAPIEndpoint, Flag: "api-endpoint", Type: "url", Required: true, Help: "the cloud's base URL",
		Set: field(text, func(c *Config) *string { return &c.APIEndpoint })},
	{Env: EnvDeviceUUID, Flag: "device-uuid", Type: "string", Required: true, Help: "the gateway's uuid in the cloud",
		Set: field(text, func(c *Config) *string { return &c.DeviceUUID })},
	{Env: EnvDeviceID, Flag: "device-id", Type: "int", Required: true, Help: "the gateway's device id in the cloud",
		Set: field(wholeNumber64, func(c *Config) *int64 { return &c.DeviceID })},
	{Env: EnvDeviceAPIKey, Flag: "device-api-key", Type: "string", Required: true, Help: "the gateway's key for the cloud",
		Set: field(text, func(c *Config) *string { return &c.DeviceAPIKey })},
	{Env: EnvAPIKey, Flag: "api-key", Type: "string", Required: true, Help: "the key clients of the API must present",
		Set: field(text, func(c *Config) *string { return &c.APIKey })},
	{Env: EnvListenHost, Flag: "listen-host", Type: "host", Default: DefaultListenHost, Help: "host the API listens on",
		Set: field(text, func(c *Config) *string { return &c.ListenHost })},
	{Env: EnvPort, Flag: "port", Type: "int", Default: strconv.Itoa(DefaultPort), Help: "port the API listens on",
		Set: field(wholeNumber, func(c *Config) *int { return &c.Port })},
	{Env: EnvHookAddress, Legacy: EnvHookAddressLegacy, Flag: "hook-address", Type: "url", Default: api.DefaultHookAddress,
		Help: "hook base address; the device uuid is appended",
		Set:  field(text, func(c *Config) *string { return &c.HookAddress })},
	{Env: EnvDataDir, Flag: "data-dir", Type: "path", Default: DefaultDataDir, Help: "directory of the database and the assets cache",
		Set: field(text, func(c *Config) *string { return &c.DataDir })},
	{Env: EnvPollInterval, Flag: "poll-interval", Type: "duration", Default: DefaultPollInterval.String(),
		Help: "how often the target state is polled",
		Set:  field(duration, func(c *Config) *time.Duration { return &c.PollInterval })},
	{Env: EnvHookRetry, Flag: "hook-retry-interval", Type: "duration", Default: DefaultHookRetry.String(),
		Help: "hook pacing per device, the 202 loop's interval and the first backoff step",
		Set:  field(duration, func(c *Config) *time.Duration { return &c.HookRetryInterval })},
	{Env: EnvHookTimeout, Flag: "hook-timeout", Type: "duration", Default: DefaultHookTimeout.String(), Help: "timeout of one hook request",
		Set: field(duration, func(c *Config) *time.Duration { return &c.HookTimeout })},
	{Env: EnvHookConcurrency, Flag: "hook-concurrency", Type: "int", Default: strconv.Itoa(DefaultHookConcurrency),
		Help: "hooks in flight at once across devices",
		Set:  field(wholeNumber, func(c *Config) *int { return &c.HookConcurrency })},
	{Env: EnvHookBackoffMax, Flag: "hook-backoff-max", Type: "duration",
		Help: "cap of the backoff after failed hooks (default 10 × the hook retry interval)",
		Set:  field(duration, func(c *Config) *time.Duration { return &c.HookBackoffMax })},
	{Env: EnvAssetMaxBytes, Flag: "asset-max-bytes", Type: "int", Default: strconv.Itoa(DefaultAssetMaxBytes),
		Help: "largest assets tar of one release",
		Set:  field(wholeNumber64, func(c *Config) *int64 { return &c.AssetMaxBytes })},
	{Env: EnvAssetStall, Flag: "asset-stall-timeout", Type: "duration", Default: DefaultAssetStall.String(),
		Help: "abandon and retry an image pull that received nothing for this long",
		Set:  field(duration, func(c *Config) *time.Duration { return &c.AssetStallTimeout })},
	{Env: EnvCloudTimeout, Flag: "cloud-timeout", Type: "duration", Default: DefaultCloudTimeout.String(),
		Help: "timeout of one request to the cloud (poll, provisioning, report, logs)",
		Set:  field(duration, func(c *Config) *time.Duration { return &c.CloudTimeout })},
	{Env: EnvRegistryInsecure, Flag: "registry-insecure", Type: "bool|hosts", Default: "false",
		Help: "registries reached over plain HTTP: true (all), false, or host[:port],… (loopback registries always are)",
		Set: func(c *Config, v string) (err error) {
			c.RegistryInsecure, c.RegistryInsecureHosts, err = ParseRegistryInsecure(v)
			return err
		}},
	{Env: EnvLogBufferLines, Flag: "log-buffer-lines", Type: "int", Default: strconv.Itoa(DefaultLogBufferLines),
		Help: "log lines kept while the cloud is unreachable; the oldest are dropped beyond",
		Set:  field(wholeNumber, func(c *Config) *int { return &c.LogBufferLines })},
	{Env: EnvLogBufferBytes, Flag: "log-buffer-bytes", Type: "int", Default: strconv.Itoa(DefaultLogBufferBytes),
		Help: "bytes of log lines kept while the cloud is unreachable; the oldest are dropped beyond",
		Set:  field(wholeNumber64, func(c *Config) *int64 { return &c.LogBufferBytes })},
	{Env: EnvLogBatchBytes, Flag: "log-batch-bytes", Type: "int", Default: strconv.Itoa(DefaultLogBatchBytes),
		Help: "most bytes of log lines sent in one request (a larger line goes alone)",
		Set:  field(wholeNumber64, func(c *Config) *int64 { return &c.LogBatchBytes })},
	{Env: EnvLogLineMaxBytes, Flag: "log-line-max-bytes", Type: "int", Default: strconv.Itoa(DefaultLogLineMaxBytes),
		Help: "longest log line sent to the cloud; a longer message is cut and marked",
		Set:  field(wholeNumber, func(c *Config) *int { return &c.LogLineMaxBytes })},
	{Env: EnvReportQueueBytes, Flag: "report-queue-bytes", Type: "int", Default: strconv.Itoa(DefaultReportQueueBytes),
		Help: "bytes of queued reports (merged per device); the oldest are dropped beyond",
		Set:  field(wholeNumber64, func(c *Config) *int64 { return &c.ReportQueueBytes })},
	{Env: EnvTargetStateMax, Flag: "target-state-max-bytes", Type: "int", Default: strconv.Itoa(DefaultTargetStateMaxBytes),
		Help: "largest target state read from the cloud (about 100 bytes a dependent device); a larger one fails the poll",
		Set:  field(wholeNumber64, func(c *Config) *int64 { return &c.TargetStateMaxBytes })},
	{Env: EnvMetricsAddress, Flag: "metrics-listen", Type: "host:port", Default: DefaultMetricsAddress,
		Help: "Prometheus listener host:port, or off",
		Set:  field(text, func(c *Config) *string { return &c.MetricsAddress })},
	{Env: EnvServerHeader, Flag: "server-header-timeout", Type: "duration",
		Help: "read deadline of a request's headers (default 10s, at most 30s)",
		Set:  field(duration, func(c *Config) *time.Duration { return &c.ServerHeaderTimeout })},
	{Env: EnvServerBody, Flag: "server-body-timeout", Type: "duration",
		Help: "read deadline of a request's body, from its headers (default 30s, at most 30s)",
		Set:  field(duration, func(c *Config) *time.Duration { return &c.ServerBodyTimeout })},
	{Env: EnvServerIdle, Flag: "server-idle-timeout", Type: "duration",
		Help: "idle kept-alive connections closed after (default 60s, at most 120s)",
		Set:  field(duration, func(c *Config) *time.Duration { return &c.ServerIdleTimeout })},
	{Env: EnvViolations, Flag: "violations", Type: "list",
		Help: "deliberate contract violations, comma-separated; for the suite's self-check only",
		Set:  field(violation.Parse, func(c *Config) *violation.Set { return &c.Violations })},
	{Env: EnvAllowances, Flag: "allowances", Type: "list",
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

// wholeNumber, wholeNumber64 and duration parse a value, saying what was
// expected when it is not one (in the words of the CLI's other settings).
func wholeNumber(v string) (int, error) {
	n, err := wholeNumber64(v)
	if err == nil && int64(int(n)) != n {
		return 0, errors.New("expected a whole number, and this one is out of range")
	}
	return int(n), err
}

func wholeNumber64(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, errors.New("expected a whole number, and this one is out of range")
	}
	if err != nil {
		return 0, errors.New("expected a whole number")
	}
	return n, nil
}

func duration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errors.New("expected a duration with a unit, like 500ms or 2s")
	}
	return d, nil
}

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
