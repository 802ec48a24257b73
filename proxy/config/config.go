// Package config is the reference proxy's configuration: the harness
// interface of CONTRACT.md ("Harness ⇄ target interface") plus the settings a
// production operator needs, with their defaults and validation.
//
// It imports only the standard library and api and proxy/violation.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/proxy/violation"
)

// Defaults of the settings that have one.
const (
	DefaultPort             = 48484
	DefaultListenHost       = "127.0.0.1"
	DefaultMetricsAddress   = "127.0.0.1:48485"
	DefaultDataDir          = "data"
	DefaultPollInterval     = 60 * time.Second
	DefaultHookRetry        = 30 * time.Second
	DefaultHookTimeout      = 30 * time.Second
	DefaultHookConcurrency  = 16
	DefaultAssetMaxBytes    = 1 << 30
	DefaultLogBufferLines   = 100000
	DefaultLogBufferBytes   = 64 << 20
	DefaultLogBatchBytes    = 1 << 20
	DefaultLogLineMaxBytes  = 256 << 10
	DefaultReportQueueBytes = 16 << 20
	// DefaultTargetStateMaxBytes is cloudclient.DefaultMaxStateBytes.
	DefaultTargetStateMaxBytes = 64 << 20
	// MinLogLineMaxBytes is the least LOG_LINE_MAX_BYTES: room for a
	// line's uuid, timestamp and isSystem and some message.
	MinLogLineMaxBytes  = 1 << 10
	DefaultAssetStall   = 30 * time.Second
	DefaultCloudTimeout = 30 * time.Second
)

// Config is the whole configuration of the reference proxy. Zero values of
// the optional fields mean their defaults (see WithDefaults).
type Config struct {
	// APIEndpoint is the cloud's base URL (API_ENDPOINT). Required.
	APIEndpoint string
	// DeviceUUID, DeviceID and DeviceAPIKey identify the gateway in the cloud
	// (DEVICE_UUID, DEVICE_ID, DEVICE_API_KEY). Required.
	DeviceUUID   string
	DeviceID     int64
	DeviceAPIKey string
	// APIKey is the key of the supervisor API (BALENA_SUPERVISOR_API_KEY).
	// Required.
	APIKey string
	// ListenHost is the API's listen host (DEPHARNESS_LISTEN_HOST, default
	// 127.0.0.1; 0.0.0.0 in a container).
	ListenHost string
	// Port is the API's port (BALENA_SUPERVISOR_PORT, default 48484); 0 picks
	// a free port only when set through Options in code.
	Port int
	// HookAddress is the hook base URL, ending in '/'
	// (BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS or RESIN_…).
	HookAddress string
	// DataDir holds the database and the assets cache (DATA_DIR).
	DataDir string
	// PollInterval is the target-state poll interval (TARGET_POLL_INTERVAL).
	PollInterval time.Duration
	// HookRetryInterval paces hooks to one device and is the 202 loop's
	// interval and the first backoff step (HOOK_RETRY_INTERVAL).
	HookRetryInterval time.Duration
	// HookTimeout bounds one hook request (HOOK_TIMEOUT).
	HookTimeout time.Duration
	// HookConcurrency bounds hooks in flight across devices
	// (HOOK_CONCURRENCY, default 16).
	HookConcurrency int
	// HookBackoffMax caps the backoff after failed hooks (HOOK_BACKOFF_MAX,
	// default 10 × HookRetryInterval).
	HookBackoffMax time.Duration
	// CloudTimeout bounds one request to the cloud: a target poll, a
	// provisioning or lookup call, a report or a batch of logs
	// (CLOUD_TIMEOUT, default 30s). A cloud that stops answering is noticed,
	// and its queued reports kept for the next try, after this long.
	CloudTimeout time.Duration
	// AssetMaxBytes limits one release's assets tar (ASSET_MAX_BYTES).
	AssetMaxBytes int64
	// AssetStallTimeout abandons and retries an image pull that received
	// nothing from the registry for this long (ASSET_STALL_TIMEOUT, default
	// 30s).
	AssetStallTimeout time.Duration
	// RegistryInsecure reaches every registry over plain HTTP
	// (REGISTRY_INSECURE=true); registries on loopback addresses always are.
	RegistryInsecure bool
	// RegistryInsecureHosts are the registries reached over plain HTTP when
	// not all are (REGISTRY_INSECURE=host[:port],…): a bare host matches
	// any port.
	RegistryInsecureHosts []string
	// LogBufferLines bounds the durable buffer of log lines waiting for the
	// cloud (LOG_BUFFER_LINES); when full the oldest are dropped and counted.
	LogBufferLines int
	// LogBufferBytes bounds the same buffer in bytes of buffered lines (as
	// sent to the cloud, LOG_BUFFER_BYTES, default 64 MiB); when full the
	// oldest lines are dropped and counted.
	LogBufferBytes int64
	// LogBatchBytes caps the bytes of one log-stream request
	// (LOG_BATCH_BYTES, default 1 MiB; a single line larger than the cap
	// goes alone). It also bounds the memory a drain holds.
	LogBatchBytes int64
	// LogLineMaxBytes bounds one log line as sent to the cloud
	// (LOG_LINE_MAX_BYTES, default 256 KiB): a longer message is cut, at a
	// character boundary, and ends with httpapi.LogTruncatedMark; counted.
	LogLineMaxBytes int
	// ReportQueueBytes bounds the queued reports in bytes
	// (REPORT_QUEUE_BYTES, default 16 MiB). A device's queued reports are
	// merged into one; beyond the bound the oldest devices' reports are
	// dropped and counted.
	ReportQueueBytes int64
	// TargetStateMaxBytes bounds the body of a target state read from the
	// cloud (TARGET_STATE_MAX_BYTES, default 64 MiB, about 650,000
	// dependent devices); a larger one fails the poll, which is retried.
	TargetStateMaxBytes int64
	// MetricsAddress is the Prometheus listener (METRICS_ADDRESS); "off"
	// disables it.
	MetricsAddress string
	// Violations are deliberate contract violations for the suite's
	// self-check only (DEPHARNESS_VIOLATIONS). Empty in any real use.
	Violations violation.Set
	// Allowances are deviations the contract allows (CONTRACT.md
	// "Latitude"), for the suite's self-check only (DEPHARNESS_ALLOWANCES).
	// Empty in any real use.
	Allowances violation.Set
	// ServerHeaderTimeout, ServerBodyTimeout and ServerIdleTimeout are the
	// listeners' read deadlines and idle timeout (SERVER_HEADER_TIMEOUT,
	// SERVER_BODY_TIMEOUT, SERVER_IDLE_TIMEOUT); zero means
	// internal/httpserver's defaults (10s, 30s, 60s). SRV-1 caps them at
	// MaxServerReadTimeout and MaxServerIdleTimeout. Shorter ones let a
	// test see a slow client cut off quickly.
	ServerHeaderTimeout, ServerBodyTimeout, ServerIdleTimeout time.Duration
}

// SRV-1's caps of the server settings.
const (
	MaxServerReadTimeout = 30 * time.Second
	MaxServerIdleTimeout = 120 * time.Second
)

// WithDefaults returns c with every unset optional field at its default.
func (c Config) WithDefaults() Config {
	c.ListenHost = cmp.Or(c.ListenHost, DefaultListenHost)
	c.HookAddress = cmp.Or(c.HookAddress, api.DefaultHookAddress)
	c.DataDir = cmp.Or(c.DataDir, DefaultDataDir)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.HookRetryInterval = cmp.Or(c.HookRetryInterval, DefaultHookRetry)
	c.HookTimeout = cmp.Or(c.HookTimeout, DefaultHookTimeout)
	c.HookConcurrency = cmp.Or(c.HookConcurrency, DefaultHookConcurrency)
	c.HookBackoffMax = cmp.Or(c.HookBackoffMax, 10*c.HookRetryInterval)
	c.AssetMaxBytes = cmp.Or(c.AssetMaxBytes, DefaultAssetMaxBytes)
	c.AssetStallTimeout = cmp.Or(c.AssetStallTimeout, DefaultAssetStall)
	c.CloudTimeout = cmp.Or(c.CloudTimeout, DefaultCloudTimeout)
	c.LogBufferLines = cmp.Or(c.LogBufferLines, DefaultLogBufferLines)
	c.LogBufferBytes = cmp.Or(c.LogBufferBytes, DefaultLogBufferBytes)
	c.LogBatchBytes = cmp.Or(c.LogBatchBytes, DefaultLogBatchBytes)
	c.LogLineMaxBytes = cmp.Or(c.LogLineMaxBytes, DefaultLogLineMaxBytes)
	c.ReportQueueBytes = cmp.Or(c.ReportQueueBytes, DefaultReportQueueBytes)
	c.TargetStateMaxBytes = cmp.Or(c.TargetStateMaxBytes, DefaultTargetStateMaxBytes)
	c.MetricsAddress = cmp.Or(c.MetricsAddress, DefaultMetricsAddress)
	return c
}

// Validate reports every problem of c (after WithDefaults) at once, each
// naming the environment variable to fix.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.APIEndpoint == "" {
		bad("API_ENDPOINT is required")
	} else if u, err := url.Parse(c.APIEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("API_ENDPOINT %q is not an http(s) URL", c.APIEndpoint)
	}
	if c.DeviceUUID == "" {
		bad("DEVICE_UUID is required")
	}
	if c.DeviceID <= 0 {
		bad("DEVICE_ID must be a positive integer")
	}
	if c.DeviceAPIKey == "" {
		bad("DEVICE_API_KEY is required")
	}
	if c.APIKey == "" {
		bad("BALENA_SUPERVISOR_API_KEY is required")
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("BALENA_SUPERVISOR_PORT %d is not a port", c.Port)
	}
	if net.ParseIP(c.ListenHost) == nil && c.ListenHost != "localhost" {
		bad("DEPHARNESS_LISTEN_HOST %q is not an IP address", c.ListenHost)
	}
	if u, err := url.Parse(c.HookAddress); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS %q is not an http(s) URL", c.HookAddress)
	} else if !strings.HasSuffix(c.HookAddress, "/") {
		bad("BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS %q must end in '/': the device uuid is appended to it", c.HookAddress)
	}
	for name, d := range map[string]time.Duration{
		"TARGET_POLL_INTERVAL": c.PollInterval, "HOOK_RETRY_INTERVAL": c.HookRetryInterval,
		"HOOK_TIMEOUT": c.HookTimeout, "HOOK_BACKOFF_MAX": c.HookBackoffMax,
		"ASSET_STALL_TIMEOUT": c.AssetStallTimeout, "CLOUD_TIMEOUT": c.CloudTimeout,
	} {
		if d <= 0 {
			bad("%s must be a positive duration", name)
		}
	}
	if c.HookBackoffMax < c.HookRetryInterval {
		bad("HOOK_BACKOFF_MAX (%s) must be at least HOOK_RETRY_INTERVAL (%s)", c.HookBackoffMax, c.HookRetryInterval)
	}
	if c.HookConcurrency < 1 {
		bad("HOOK_CONCURRENCY must be at least 1")
	}
	if c.AssetMaxBytes < 1 {
		bad("ASSET_MAX_BYTES must be positive")
	}
	if c.LogBufferLines < 1 {
		bad("LOG_BUFFER_LINES must be positive")
	}
	for name, d := range map[string]struct{ v, max time.Duration }{
		"SERVER_HEADER_TIMEOUT": {c.ServerHeaderTimeout, MaxServerReadTimeout},
		"SERVER_BODY_TIMEOUT":   {c.ServerBodyTimeout, MaxServerReadTimeout},
		"SERVER_IDLE_TIMEOUT":   {c.ServerIdleTimeout, MaxServerIdleTimeout},
	} {
		if d.v < 0 || d.v > d.max {
			bad("%s must be a positive duration of at most %s (SRV-1)", name, d.max)
		}
	}
	if c.LogLineMaxBytes < MinLogLineMaxBytes {
		bad("LOG_LINE_MAX_BYTES must be at least %d", MinLogLineMaxBytes)
	}
	if c.LogBufferBytes < int64(c.LogLineMaxBytes) {
		bad("LOG_BUFFER_BYTES (%d) must be at least LOG_LINE_MAX_BYTES (%d)", c.LogBufferBytes, c.LogLineMaxBytes)
	}
	if c.LogBatchBytes < 1 {
		bad("LOG_BATCH_BYTES must be positive")
	}
	if c.ReportQueueBytes < 1<<10 {
		bad("REPORT_QUEUE_BYTES must be at least 1024")
	}
	if c.TargetStateMaxBytes < 1<<10 {
		bad("TARGET_STATE_MAX_BYTES must be at least 1024")
	}
	if c.MetricsAddress != "off" {
		if _, _, err := net.SplitHostPort(c.MetricsAddress); err != nil {
			bad("METRICS_ADDRESS %q is not host:port or off", c.MetricsAddress)
		}
	}
	return errors.Join(errs...)
}

// ParseRegistryInsecure reads a REGISTRY_INSECURE value: a boolean (every
// registry, or none beyond the loopback ones) or a comma-separated list of
// registries, each a host or host:port without a scheme or path.
func ParseRegistryInsecure(v string) (all bool, hosts []string, err error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return false, nil, nil
	}
	if b, err := strconv.ParseBool(v); err == nil {
		return b, nil, nil
	}
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			return false, nil, fmt.Errorf("empty registry in %q", v)
		}
		host := strings.TrimSuffix(strings.TrimPrefix(e, "["), "]") // a bare IPv6 address
		if h, p, err := net.SplitHostPort(e); err == nil {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return false, nil, fmt.Errorf("registry %q: bad port", e)
			}
			host = h
		}
		if host == "" || (net.ParseIP(host) == nil && strings.ContainsAny(host, "/:@ []")) {
			return false, nil, fmt.Errorf("registry %q: want true, false or host[:port],… (no scheme or path)", e)
		}
		hosts = append(hosts, e)
	}
	return false, hosts, nil
}

// ListenAddress is the API's host:port.
func (c Config) ListenAddress() string {
	return net.JoinHostPort(c.ListenHost, strconv.Itoa(c.Port))
}
