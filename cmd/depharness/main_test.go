package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/depharness/depharness/proxy/config"
)

// syncBuffer is a bytes.Buffer safe for a command's goroutines and the
// test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

func TestProxyCommandBindsEveryConfigurationVariable(t *testing.T) {
	f := newFlags(&cliEnv{stderr: &syncBuffer{}, getenv: func(string) string { return "" }}, "proxy", "")
	proxyFlags(f)
	bound := map[string]bool{}
	for _, envs := range f.envs {
		for _, e := range strings.Split(envs, ",") {
			bound[e] = true
		}
	}
	for _, v := range config.Variables {
		if !bound[v] {
			t.Errorf("config reads %s but `depharness proxy` has no flag for it", v)
		}
		delete(bound, v)
	}
	delete(bound, "LOG_LEVEL")
	delete(bound, "LOG_FORMAT")
	for v := range bound {
		t.Errorf("`depharness proxy` binds %s, which config.FromEnv does not read", v)
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
