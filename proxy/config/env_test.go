package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFromEnvReadsEveryVariable(t *testing.T) {
	env := map[string]string{
		EnvAPIEndpoint: "http://cloud:1", EnvDeviceUUID: "gw", EnvDeviceID: "7", EnvDeviceAPIKey: "dk",
		EnvAPIKey: "k", EnvPort: "1234", EnvHookAddressLegacy: "http://gw:1337/v1/devices/", EnvDataDir: "/d",
		EnvPollInterval: "100ms", EnvHookRetry: "200ms", EnvHookTimeout: "1s", EnvListenHost: "0.0.0.0",
		EnvHookConcurrency: "3", EnvHookBackoffMax: "2s", EnvAssetMaxBytes: "99", EnvAssetStall: "5s",
		EnvRegistryInsecure: "true", EnvLogBufferLines: "10", EnvMetricsAddress: "off",
		EnvLogBufferBytes: "5000", EnvLogBatchBytes: "3000", EnvLogLineMaxBytes: "2000", EnvReportQueueBytes: "4000",
		EnvCloudTimeout: "3s",
	}
	c, err := FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		APIEndpoint: "http://cloud:1", DeviceUUID: "gw", DeviceID: 7, DeviceAPIKey: "dk", APIKey: "k",
		ListenHost: "0.0.0.0", Port: 1234, HookAddress: "http://gw:1337/v1/devices/", DataDir: "/d",
		PollInterval: 100 * time.Millisecond, HookRetryInterval: 200 * time.Millisecond, HookTimeout: time.Second,
		HookConcurrency: 3, HookBackoffMax: 2 * time.Second, AssetMaxBytes: 99, AssetStallTimeout: 5 * time.Second,
		RegistryInsecure: true, LogBufferLines: 10, MetricsAddress: "off",
		LogBufferBytes: 5000, LogBatchBytes: 3000, LogLineMaxBytes: 2000, ReportQueueBytes: 4000, CloudTimeout: 3 * time.Second,
	}
	if len(c.Violations) != 0 {
		t.Errorf("Violations = %v, want none", c.Violations)
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("FromEnv =\n%+v\nwant\n%+v", c, want)
	}
}

func TestFromEnvReadsAListOfPlainHTTPRegistries(t *testing.T) {
	env := map[string]string{
		EnvAPIEndpoint: "http://cloud:1", EnvDeviceUUID: "gw", EnvDeviceID: "7", EnvDeviceAPIKey: "dk", EnvAPIKey: "k",
		EnvRegistryInsecure: "reg.lan,build.lan:5000",
	}
	c, err := FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.RegistryInsecure || !reflect.DeepEqual(c.RegistryInsecureHosts, []string{"reg.lan", "build.lan:5000"}) {
		t.Errorf("got %v %q, want the two registries only", c.RegistryInsecure, c.RegistryInsecureHosts)
	}
}

func TestFromEnvNamesEveryBadVariable(t *testing.T) {
	env := map[string]string{EnvDeviceID: "seven", EnvHookRetry: "soon", EnvViolations: "nope", EnvRegistryInsecure: "http://reg.lan"}
	_, err := FromEnv(func(k string) string { return env[k] })
	for _, want := range []string{`DEVICE_ID="seven"`, `HOOK_RETRY_INTERVAL="soon"`, `unknown violation "nope"`, `REGISTRY_INSECURE="http://reg.lan"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("FromEnv error %v does not name %s", err, want)
		}
	}
}

func TestFromEnvReadsTheServerDeadlinesWithinSRV1(t *testing.T) {
	base := map[string]string{
		EnvAPIEndpoint: "http://cloud:1", EnvDeviceUUID: "gw", EnvDeviceID: "7", EnvDeviceAPIKey: "dk", EnvAPIKey: "k",
	}
	env := func(extra map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return base[k]
		}
	}
	c, err := FromEnv(env(map[string]string{EnvServerHeader: "1s", EnvServerBody: "2s", EnvServerIdle: "3s"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerHeaderTimeout != time.Second || c.ServerBodyTimeout != 2*time.Second || c.ServerIdleTimeout != 3*time.Second {
		t.Errorf("server deadlines = %s, %s, %s; want 1s, 2s, 3s", c.ServerHeaderTimeout, c.ServerBodyTimeout, c.ServerIdleTimeout)
	}
	if c, err := FromEnv(env(nil)); err != nil || c.ServerHeaderTimeout != 0 || c.ServerBodyTimeout != 0 || c.ServerIdleTimeout != 0 {
		t.Errorf("unset: %+v, %v; want zero (the server's defaults)", c, err)
	}
	_, err = FromEnv(env(map[string]string{EnvServerHeader: "31s", EnvServerBody: "-1s", EnvServerIdle: "121s"}))
	for _, name := range []string{EnvServerHeader, EnvServerBody, EnvServerIdle} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("a value beyond SRV-1's bound: error %v does not name %s", err, name)
		}
	}
}
