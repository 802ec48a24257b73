package main

import (
	"context"
	"fmt"

	"github.com/depharness/depharness/proxy"
	"github.com/depharness/depharness/proxy/config"
)

func init() {
	commands["proxy"] = command{
		summary: "run the reference proxy (the supervisor side of the dependent-device API)",
		run:     runProxy,
	}
}

// proxyFlags binds every setting of the reference proxy (config.Settings)
// to a flag with its environment variable, so that `depharness proxy`
// honours the harness interface of CONTRACT.md. The returned function builds
// the configuration after Parse, through config.FromEnv over the flags'
// values.
func proxyFlags(f *flags) func() (config.Config, error) {
	values := make(map[string]*settingValue, len(config.Settings))
	for _, s := range config.Settings {
		v := &settingValue{setting: s, value: s.Default}
		env := s.Env
		if s.Legacy != "" {
			env += "," + s.Legacy
		}
		f.Var(v, s.Flag, env, s.Help)
		values[s.Env] = v
	}
	return func() (config.Config, error) {
		return config.FromEnv(func(name string) string {
			if v := values[name]; v != nil {
				return v.value
			}
			return ""
		})
	}
}

// settingValue is the flag.Value of one setting: the text given, checked
// by the setting's parser when it is set.
type settingValue struct {
	setting config.Setting
	value   string
}

func (v *settingValue) String() string { return v.value }

func (v *settingValue) Set(s string) error {
	if err := v.setting.Set(new(config.Config), s); err != nil {
		return err
	}
	v.value = s
	return nil
}

func runProxy(ctx context.Context, env *cliEnv, args []string) error {
	f := newFlags(env, "proxy", "Run the reference proxy: the supervisor side of the dependent-device API.")
	build := proxyFlags(f)
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
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
		return err
	}
	if ctx.Err() != nil && cfg.Allowances.Allows("exit-143") {
		// 128+SIGTERM, as a process ended by the signal reports itself
		// from a shell: any exit status after SIGTERM is allowed.
		return exitStatus(143)
	}
	return nil
}
