package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/depharness/depharness/internal/settings"
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

// bgRun is one depharness command running in-process in the background.
type bgRun struct {
	name        string
	out, errOut *syncBuffer
	cancel      context.CancelFunc
	done        chan int
}

// startCommand runs args in-process under a context derived from ctx, with
// getenv as its environment (nil: an empty one). The command is cancelled
// when the test ends.
func startCommand(t *testing.T, ctx context.Context, getenv func(string) string, args ...string) *bgRun {
	t.Helper()
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	r := &bgRun{name: args[0], out: new(syncBuffer), errOut: new(syncBuffer), cancel: cancel, done: make(chan int, 1)}
	env := &cliEnv{stdout: r.out, stderr: r.errOut, getenv: getenv}
	go func() { r.done <- runMain(ctx, env, args) }()
	return r
}

// awaitReady polls ready every 10ms until it holds, failing the test if the
// command exits first or 10s pass.
func (r *bgRun) awaitReady(t *testing.T, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 10s; stdout:\n%s\nstderr:\n%s", r.name, r.out.String(), r.errOut.String())
		}
		select {
		case c := <-r.done:
			t.Fatalf("%s exited with %d; stderr:\n%s", r.name, c, r.errOut.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// wait returns the command's exit code once it ends by itself.
func (r *bgRun) wait() int { return <-r.done }

// stop cancels the command and returns its exit code, failing the test if it
// does not end within limit.
func (r *bgRun) stop(t *testing.T, limit time.Duration) int {
	t.Helper()
	r.cancel()
	select {
	case c := <-r.done:
		return c
	case <-time.After(limit):
		t.Fatalf("%s did not stop within %v of cancellation; stderr:\n%s", r.name, limit, r.errOut.String())
		return -1
	}
}

func TestUnknownCommandExitsTwoAndListsCommands(t *testing.T) {
	code, _, stderr := run(t, nil, "frobnicate")
	if code != 2 {
		t.Fatalf("exit code = %d, want 2", code)
	}
	for _, want := range []string{`unknown command "frobnicate" (commands: `, "proxy", "verify", "up", "fake-cloud", "Run 'depharness --help' for usage."} {
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
		{"no configuration at all", nil, "--api-key is required (or set BALENA_SUPERVISOR_API_KEY)"},
		{"a poll interval without a unit", map[string]string{"TARGET_POLL_INTERVAL": "5"},
			`invalid value "5" for TARGET_POLL_INTERVAL (--poll-interval): expected a duration with a unit, like 500ms or 2s`},
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
	table, build := proxySettings()
	fs := pflag.NewFlagSet("proxy", pflag.ContinueOnError)
	settings.Bind(fs, envPrefix("proxy"), table...)
	if err := fs.Parse([]string{"--port", "4321"}); err != nil {
		t.Fatal(err)
	}
	environ := map[string]string{"RESIN_DEPENDENT_DEVICES_HOOK_ADDRESS": "http://gw:1337/v1/devices/", "BALENA_SUPERVISOR_PORT": "1234"}
	if err := settings.Apply(fs, func(k string) string { return environ[k] }); err == nil || !strings.Contains(err.Error(), "--api-endpoint is required") {
		t.Errorf("Apply without the required settings: %v, want them named", err)
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
// (never "0" for a required id or "0s" for a derived bound), and says
// "(required)" for the required ones.
func TestProxyHelpShowsEverySettingWithItsTrueDefault(t *testing.T) {
	code, stdout, _ := run(t, nil, "proxy", "--help")
	if code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
	entries := map[string]string{} // flag → its help entry
	for _, e := range strings.Split(stdout, "\n  --")[1:] {
		name, _, _ := strings.Cut(e, " ")
		entries[name] = strings.Join(strings.Fields(e), " ") // unwrapped
	}
	for _, s := range config.Settings {
		e, ok := entries[s.Flag]
		if !ok {
			t.Errorf("--help lacks --%s", s.Flag)
			continue
		}
		if !strings.Contains(e, "["+s.Env+"]") {
			t.Errorf("--%s does not name %s:\n%s", s.Flag, s.Env, e)
		}
		def := "(default " + s.Default + ")"
		if got := strings.Contains(e, def); got != (s.Default != "") {
			t.Errorf("--%s shows %s: %v, want %v:\n%s", s.Flag, def, got, s.Default != "", e)
		}
		if s.Default == "" && strings.Count(e, "(default ") > strings.Count(s.Help, "(default ") {
			t.Errorf("--%s shows a default it does not have:\n%s", s.Flag, e)
		}
		if strings.Contains(e, "(required)") != s.Required {
			t.Errorf("--%s says (required): %v, want %v:\n%s", s.Flag, !s.Required, s.Required, e)
		}
	}
	if len(entries) != len(config.Settings)+2 { // + --log-level, --log-format (--help has a shorthand)
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
