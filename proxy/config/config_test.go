package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func valid() Config {
	return Config{
		APIEndpoint: "http://127.0.0.1:48480", DeviceUUID: "gw", DeviceID: 1,
		DeviceAPIKey: "dk", APIKey: "k", Port: DefaultPort,
	}.WithDefaults()
}

func TestWithDefaultsFillsEveryOptionalField(t *testing.T) {
	c := valid()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil", err)
	}
	if c.HookRetryInterval != 30*time.Second || c.HookTimeout != 30*time.Second {
		t.Errorf("hook defaults = %s/%s, want 30s/30s", c.HookRetryInterval, c.HookTimeout)
	}
	if c.HookBackoffMax != 300*time.Second {
		t.Errorf("HookBackoffMax = %s, want 10 × retry interval", c.HookBackoffMax)
	}
	if c.HookAddress != "http://0.0.0.0:1337/v1/devices/" {
		t.Errorf("HookAddress = %q, want the seed's default", c.HookAddress)
	}
}

func TestValidateNamesEveryBadVariable(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"missing api key", func(c *Config) { c.APIKey = "" }, "BALENA_SUPERVISOR_API_KEY is required"},
		{"missing endpoint", func(c *Config) { c.APIEndpoint = "" }, "API_ENDPOINT is required"},
		{"endpoint not a URL", func(c *Config) { c.APIEndpoint = "localhost:1" }, "API_ENDPOINT"},
		{"device id zero", func(c *Config) { c.DeviceID = 0 }, "DEVICE_ID must be a positive integer"},
		{"hook address without slash", func(c *Config) { c.HookAddress = "http://h:1/v1/devices" }, "must end in '/'"},
		{"negative poll", func(c *Config) { c.PollInterval = -time.Second }, "TARGET_POLL_INTERVAL must be a positive duration"},
		{"backoff below retry", func(c *Config) { c.HookBackoffMax = time.Second }, "HOOK_BACKOFF_MAX"},
		{"negative stall timeout", func(c *Config) { c.AssetStallTimeout = -time.Second }, "ASSET_STALL_TIMEOUT must be a positive duration"},
		{"negative cloud timeout", func(c *Config) { c.CloudTimeout = -time.Second }, "CLOUD_TIMEOUT must be a positive duration"},
		{"bad metrics address", func(c *Config) { c.MetricsAddress = "nope" }, "METRICS_ADDRESS"},
		{"port out of range", func(c *Config) { c.Port = 70000 }, "BALENA_SUPERVISOR_PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsAllProblemsAtOnce(t *testing.T) {
	err := Config{}.WithDefaults().Validate()
	if err == nil {
		t.Fatal("Validate() of an empty config = nil, want errors")
	}
	for _, want := range []string{"API_ENDPOINT", "DEVICE_UUID", "DEVICE_ID", "DEVICE_API_KEY", "BALENA_SUPERVISOR_API_KEY"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestParseRegistryInsecure(t *testing.T) {
	for _, tc := range []struct {
		in    string
		all   bool
		hosts []string
		bad   bool
	}{
		{in: ""}, {in: "false"}, {in: "0"},
		{in: "true", all: true}, {in: "1", all: true},
		{in: "reg.lan", hosts: []string{"reg.lan"}},
		{in: " reg.lan , build.lan:5000,10.0.0.7:5000", hosts: []string{"reg.lan", "build.lan:5000", "10.0.0.7:5000"}},
		{in: "[fd00::1]:5000,[fd00::2]", hosts: []string{"[fd00::1]:5000", "[fd00::2]"}},
		{in: "http://reg.lan", bad: true},
		{in: "reg.lan/path", bad: true},
		{in: "reg.lan,,other", bad: true},
		{in: "reg.lan:http", bad: true},
		{in: "reg.lan:0", bad: true},
	} {
		all, hosts, err := ParseRegistryInsecure(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: got %v %v, want an error", tc.in, all, hosts)
			}
			continue
		}
		if err != nil || all != tc.all || !slices.Equal(hosts, tc.hosts) {
			t.Errorf("%q: got %v %q %v, want %v %q", tc.in, all, hosts, err, tc.all, tc.hosts)
		}
	}
}
