package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/internal/syncbuf"
	"github.com/depharness/depharness/proxy/config"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes and the test.
type syncBuffer = syncbuf.Buffer

// run calls runMain in-process with the given environment.
func run(t *testing.T, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb syncBuffer
	env := &cliEnv{stdout: &out, stderr: &errb, getenv: func(k string) string { return environ[k] }}
	code = runMain(context.Background(), env, args)
	return code, out.String(), errb.String()
}

func TestUnknownCommandExitsTwoAndListsCommands(t *testing.T) {
	code, _, stderr := run(t, nil, "frobnicate")
	if code != 2 {
		t.Fatalf("exit code = %d, want 2", code)
	}
	for _, want := range []string{`unknown command "frobnicate"`, "proxy", "verify", "up", "fake-cloud"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestProxyRefusesBadConfigurationWithExitTwoBeforeListening(t *testing.T) {
	tests := []struct {
		name    string
		environ map[string]string
		want    string
	}{
		{"no configuration at all", nil, "BALENA_SUPERVISOR_API_KEY is required"},
		{"unparsable duration", map[string]string{"HOOK_RETRY_INTERVAL": "soon"}, "invalid value \"soon\" for HOOK_RETRY_INTERVAL"},
		{"unknown violation", map[string]string{"DEPHARNESS_VIOLATIONS": "nope"}, `unknown violation "nope"`},
		{"unknown allowance", map[string]string{"DEPHARNESS_ALLOWANCES": "slow-start,nope"}, `unknown allowance "nope"`},
		{"unwritable data dir", map[string]string{
			"API_ENDPOINT": "http://127.0.0.1:1", "DEVICE_UUID": "gw", "DEVICE_ID": "1", "DEVICE_API_KEY": "k",
			"BALENA_SUPERVISOR_API_KEY": "k", "DATA_DIR": "/proc/depharness-data", "BALENA_SUPERVISOR_PORT": "0",
			"METRICS_ADDRESS": "off",
		}, "DATA_DIR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, tt.environ, "proxy")
			if code != 2 {
				t.Fatalf("exit code = %d, want 2; stderr:\n%s", code, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, stderr)
			}
		})
	}
}

func TestEnvironmentVariablesFillFlagsAndLegacyNamesWork(t *testing.T) {
	f := newFlags(&cliEnv{stderr: &syncBuffer{}, getenv: func(k string) string {
		return map[string]string{"RESIN_DEPENDENT_DEVICES_HOOK_ADDRESS": "http://gw:1337/v1/devices/", "BALENA_SUPERVISOR_PORT": "1234"}[k]
	}}, "proxy", "")
	build := proxyFlags(f)
	if err := f.Parse([]string{"--port", "4321"}); err != nil {
		t.Fatal(err)
	}
	cfg, _ := build()
	if cfg.HookAddress != "http://gw:1337/v1/devices/" {
		t.Errorf("HookAddress = %q, want the legacy RESIN_ variable's value", cfg.HookAddress)
	}
	if cfg.Port != 4321 {
		t.Errorf("Port = %d, want the flag's 4321 over the variable's 1234", cfg.Port)
	}
}

// The proxy's flags come from config.Settings: each setting has its flag and
// variable, and --help shows a default exactly when the setting has one
// (never "0" for a required id or "0s" for a derived bound).
func TestProxyHelpShowsEverySettingWithItsTrueDefault(t *testing.T) {
	code, _, stderr := run(t, nil, "proxy", "--help")
	if code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	entries := map[string]string{} // flag → its help entry
	for _, e := range strings.Split(stderr, "\n  --")[1:] {
		name, _, _ := strings.Cut(e, " ")
		entries[name] = e
	}
	for _, s := range config.Settings {
		e, ok := entries[s.Flag]
		if !ok {
			t.Errorf("--help lacks --%s", s.Flag)
			continue
		}
		if !strings.Contains(e, "["+s.Env) {
			t.Errorf("--%s does not name %s:\n%s", s.Flag, s.Env, e)
		}
		def := fmt.Sprintf("(default %q)", s.Default)
		if got := strings.Contains(e, def); got != (s.Default != "") {
			t.Errorf("--%s shows %s: %v, want %v:\n%s", s.Flag, def, got, s.Default != "", e)
		}
		if s.Default == "" && strings.Contains(e, "(default \"") {
			t.Errorf("--%s shows a default it does not have:\n%s", s.Flag, e)
		}
	}
	if len(entries) != len(config.Settings)+2 { // + --log-level, --log-format
		t.Errorf("--help shows %d flags, want the %d settings and the two log flags", len(entries), len(config.Settings))
	}
}

func TestProxyExitsWith143AfterSIGTERMUnderTheAllowanceExit143(t *testing.T) {
	environ := map[string]string{
		"API_ENDPOINT": "http://127.0.0.1:1", "DEVICE_UUID": "gw", "DEVICE_ID": "1", "DEVICE_API_KEY": "k",
		"BALENA_SUPERVISOR_API_KEY": "k", "DATA_DIR": t.TempDir(), "BALENA_SUPERVISOR_PORT": "0",
		"METRICS_ADDRESS": "off",
	}
	for _, tc := range []struct {
		allowances string
		want       int
	}{{"", 0}, {"exit-143", 143}} {
		environ["DEPHARNESS_ALLOWANCES"] = tc.allowances
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond) // stands for SIGTERM
		var out, errb syncBuffer
		code := runMain(ctx, &cliEnv{stdout: &out, stderr: &errb, getenv: func(k string) string { return environ[k] }}, []string{"proxy"})
		cancel()
		if code != tc.want {
			t.Errorf("allowances %q: exit %d, want %d; stderr:\n%s", tc.allowances, code, tc.want, errb.String())
		}
	}
}
