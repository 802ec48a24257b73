package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/depharness/depharness/internal/settings"
	"github.com/depharness/depharness/proxy"
	"github.com/depharness/depharness/proxy/config"
)

func newProxyCmd(env *cliEnv) *cobra.Command {
	var lo logOptions
	table, build := proxySettings()
	return newCommand("proxy", "run the reference proxy (the supervisor side of the dependent-device API)",
		"Run the reference proxy: the supervisor side of the dependent-device API. Its variables are\n"+
			"the harness interface of the contract and the operator's settings; a container sets them only.",
		append(logSettings(&lo, "info"), table...),
		func(cmd *cobra.Command) error {
			ctx := cmd.Context()
			log := lo.logger(env.stderr)
			cfg, err := build()
			if err != nil {
				return usageError{fmt.Errorf("bad configuration:\n%w", err)}
			}
			p, err := proxy.New(cfg, proxy.Options{Logger: log})
			if err != nil {
				// An unusable DATA_DIR is bad configuration too: exit 2 before listening.
				return usageError{err}
			}
			if err := p.Run(ctx); err != nil {
				return listenError(cmd, err,
					settings.Listener{Addr: cfg.ListenAddress(), Flags: []string{"port", "listen-host"}},
					settings.Listener{Addr: cfg.MetricsAddress, Flags: []string{"metrics-listen"}})
			}
			if ctx.Err() != nil && cfg.Allowances.Allows("exit-143") {
				// 128+SIGTERM, as a process ended by the signal reports itself
				// from a shell: any exit status after SIGTERM is allowed.
				return exitStatus(143)
			}
			return nil
		})
}

// proxySettings binds every setting of the reference proxy
// (config.Settings, the one table of its variables, flags, defaults and
// help) to a flag, so that `depharness proxy` honours the harness interface
// of the contract. build makes the configuration once the flags are set,
// through config.FromEnv over their values.
func proxySettings() (table []settings.Setting, build func() (config.Config, error)) {
	values := make(map[string]*string, len(config.Settings))
	for _, s := range config.Settings {
		v := new(string)
		values[s.Env] = v
		var legacy []string
		if s.Legacy != "" {
			legacy = []string{s.Legacy}
		}
		table = append(table, settings.Setting{
			Flag: s.Flag, Env: s.Env, Legacy: legacy, Help: s.Help, Required: s.Required,
			Value: settings.Checked(v, s.Default, s.Type, func(x string) error { return s.Set(new(config.Config), x) }),
		})
	}
	return table, func() (config.Config, error) {
		return config.FromEnv(func(name string) string {
			if v := values[name]; v != nil {
				return *v
			}
			return ""
		})
	}
}
