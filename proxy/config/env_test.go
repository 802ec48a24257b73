package config

import (
	"maps"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/proxy/violation"
)

func TestFromEnvReadsEveryVariable(t *testing.T) {
	env := map[string]string{
		EnvAPIEndpoint: "http://cloud:1", EnvDeviceUUID: "gw", EnvDeviceID: "7", EnvDeviceAPIKey: "dk",
		EnvAPIKey: "k", EnvPort: "1234", EnvHookAddressLegacy: "http://gw:1337/v1/devices/", EnvDataDir: "/d",
		EnvPollInterval: "100ms", EnvHookRetry: "200ms", EnvHookTimeout: "1s", EnvListenHost: "0.0.0.0",
		EnvHookConcurrency: "3", EnvHookBackoffMax: "2s", EnvAssetMaxBytes: "99", EnvAssetStall: "5s",
		EnvRegistryInsecure: "true", EnvLogBufferLines: "10", EnvMetricsAddress: "off",
		EnvLogBufferBytes: "5000", EnvLogBatchBytes: "3000", EnvLogLineMaxBytes: "2000", EnvReportQueueBytes: "4000", EnvTargetStateMax: "9000",
		EnvCloudTimeout: "3s", EnvViolations: "logs-200", EnvAllowances: "pretty-json",
		EnvServerHeader: "4s", EnvServerBody: "6s", EnvServerIdle: "8s",
	}
	for _, s := range Settings {
		if env[s.Env] == "" && env[s.Legacy] == "" {
			t.Fatalf("the test sets no value for %s", s.Env)
		}
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
		LogBufferBytes: 5000, LogBatchBytes: 3000, LogLineMaxBytes: 2000, ReportQueueBytes: 4000, TargetStateMaxBytes: 9000, CloudTimeout: 3 * time.Second,
		Violations: violation.Set{"logs-200": true}, Allowances: violation.Set{"pretty-json": true},
		ServerHeaderTimeout: 4 * time.Second, ServerBodyTimeout: 6 * time.Second, ServerIdleTimeout: 8 * time.Second,
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
	env := map[string]string{EnvDeviceID: "seven", EnvHookRetry: "soon", EnvViolations: "nope", EnvAllowances: "pretty-json,lax", EnvRegistryInsecure: "http://reg.lan"}
	_, err := FromEnv(func(k string) string { return env[k] })
	for _, want := range []string{`DEVICE_ID="seven"`, `HOOK_RETRY_INTERVAL="soon"`, `unknown violation "nope"`, `unknown allowance "lax" (known: `, `REGISTRY_INSECURE="http://reg.lan"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("FromEnv error %v does not name %s", err, want)
		}
	}
}

// A value that does not parse is named with what was expected.
func TestFromEnvSaysWhatABadValueShouldHaveBeen(t *testing.T) {
	env := map[string]string{EnvPollInterval: "5", EnvHookConcurrency: "many", EnvDeviceID: "99999999999999999999"}
	_, err := FromEnv(func(k string) string { return env[k] })
	for _, want := range []string{
		`TARGET_POLL_INTERVAL="5": expected a duration with a unit, like 500ms or 2s`,
		`HOOK_CONCURRENCY="many": expected a whole number`,
		`DEVICE_ID="99999999999999999999": expected a whole number, and this one is out of range`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("FromEnv error %v lacks %q", err, want)
		}
	}
}

func TestEverySettingHasItsOwnVariableFlagHelpAndParser(t *testing.T) {
	envs, flags := map[string]bool{}, map[string]bool{}
	for _, s := range Settings {
		for _, e := range []string{s.Env, s.Legacy} {
			if e != "" && envs[e] {
				t.Errorf("variable %s is bound twice", e)
			}
			envs[e] = true
		}
		if s.Env == "" || s.Flag == "" || s.Type == "" || s.Help == "" || s.Set == nil {
			t.Errorf("setting %+v lacks a variable, flag, type, help or parser", s)
		}
		if flags[s.Flag] {
			t.Errorf("flag --%s is bound twice", s.Flag)
		}
		flags[s.Flag] = true
		if s.Default != "" && strings.Contains(s.Help, "(default") {
			t.Errorf("%s has a default and its help states another: %q", s.Env, s.Help)
		}
	}
}

// The defaults the table shows are the ones a Config gets: applying every
// setting's Default to an empty Config gives what WithDefaults gives (with
// the port, which only FromEnv defaults).
func TestSettingDefaultsAreTheConfigDefaults(t *testing.T) {
	var c Config
	for _, s := range Settings {
		if s.Default == "" {
			continue
		}
		before := c
		if err := s.Set(&c, s.Default); err != nil {
			t.Errorf("%s: default %q does not parse: %v", s.Env, s.Default, err)
		}
		if reflect.DeepEqual(before, c) && s.Env != EnvRegistryInsecure {
			t.Errorf("%s: default %q sets nothing", s.Env, s.Default)
		}
	}
	if want := (Config{Port: DefaultPort}).WithDefaults(); !reflect.DeepEqual(c.WithDefaults(), want) {
		t.Errorf("the table's defaults give\n%+v\nwant the Config defaults\n%+v", c.WithDefaults(), want)
	}
}

// A Required setting (which has no default) fails FromEnv when unset,
// naming its variable; every other may be left unset.
func TestOnlyTheRequiredSettingsMustBeSet(t *testing.T) {
	full := map[string]string{
		EnvAPIEndpoint: "http://cloud:1", EnvDeviceUUID: "gw", EnvDeviceID: "7", EnvDeviceAPIKey: "dk", EnvAPIKey: "k",
	}
	if _, err := FromEnv(func(k string) string { return full[k] }); err != nil {
		t.Fatalf("FromEnv with the required settings only: %v", err)
	}
	for _, s := range Settings {
		required := s.Required
		if required && s.Default != "" {
			t.Errorf("%s is required and has the default %q", s.Env, s.Default)
		}
		if _, set := full[s.Env]; set != required {
			t.Errorf("%s: required = %v, but the test's required set says %v", s.Env, required, set)
			continue
		}
		if !required {
			continue
		}
		env := maps.Clone(full)
		delete(env, s.Env)
		if _, err := FromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), s.Env) {
			t.Errorf("FromEnv without %s: error %v, want one naming it", s.Env, err)
		}
	}
}

// The README's table of flags and variables names every setting's
// variable and flag in a proxy row (cmd/depharness checks the whole table
// against the commands; this checks it holds the proxy's settings).
func TestTheREADMEListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "## Flags and environment variables")
	section, _, _ = strings.Cut(section, "\n## ")
	for _, s := range Settings {
		if !strings.Contains(section, "| proxy | `--"+s.Flag+"` | `"+s.Env+"`") {
			t.Errorf("README's table of flags and variables lacks the proxy's --%s (%s)", s.Flag, s.Env)
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
