// Package refproxy runs the project's reference proxy as a compliance-suite
// target: Main reads the harness variables of CONTRACT.md ("Harness ⇄ target
// interface") from an environment and runs proxy.New(cfg).Run(ctx) until
// ctx ends. The suite's own test (TestFeatures) re-executes its test binary
// with TriggerEnv set so that the proxy runs as a real child process, which
// the harness can SIGKILL.
//
// It imports the proxy and its configuration; nothing imports it but the
// suite's tests and commands.
package refproxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/depharness/depharness/proxy"
	"github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/proxy/violation"
)

// TriggerEnv, set to "1" in a test binary's environment, makes its TestMain
// run the reference proxy (Main) instead of the tests.
const TriggerEnv = "DEPHARNESS_REFPROXY_CHILD"

// Config builds the proxy's configuration from the harness variables (and
// the proxy's own METRICS_ADDRESS, DEPHARNESS_VIOLATIONS).
func Config(getenv func(string) string) (config.Config, error) {
	var probs []string
	dur := func(name string) time.Duration {
		v := getenv(name)
		if v == "" {
			return 0
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			probs = append(probs, fmt.Sprintf("%s=%q: %v", name, v, err))
		}
		return d
	}
	num := func(name string) int64 {
		v := getenv(name)
		if v == "" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			probs = append(probs, fmt.Sprintf("%s=%q: %v", name, v, err))
		}
		return n
	}
	vs, err := violation.Parse(getenv("DEPHARNESS_VIOLATIONS"))
	if err != nil {
		probs = append(probs, err.Error())
	}
	hook := getenv("BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS")
	if hook == "" {
		hook = getenv("RESIN_DEPENDENT_DEVICES_HOOK_ADDRESS")
	}
	c := config.Config{
		APIEndpoint:       getenv("API_ENDPOINT"),
		DeviceUUID:        getenv("DEVICE_UUID"),
		DeviceID:          num("DEVICE_ID"),
		DeviceAPIKey:      getenv("DEVICE_API_KEY"),
		APIKey:            getenv("BALENA_SUPERVISOR_API_KEY"),
		Port:              int(num("BALENA_SUPERVISOR_PORT")),
		HookAddress:       hook,
		DataDir:           getenv("DATA_DIR"),
		PollInterval:      dur("TARGET_POLL_INTERVAL"),
		HookRetryInterval: dur("HOOK_RETRY_INTERVAL"),
		HookTimeout:       dur("HOOK_TIMEOUT"),
		MetricsAddress:    getenv("METRICS_ADDRESS"),
		Violations:        vs,
	}.WithDefaults()
	if len(probs) > 0 {
		return c, fmt.Errorf("bad harness variables: %s", strings.Join(probs, "; "))
	}
	return c, c.Validate()
}

// Main runs the reference proxy configured from getenv until ctx ends,
// logging to out.
func Main(ctx context.Context, getenv func(string) string, out io.Writer) error {
	cfg, err := Config(getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		return err
	}
	return p.Run(ctx)
}
