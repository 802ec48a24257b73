package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/depharness/depharness/internal/settings"
	"github.com/depharness/depharness/internal/version"
	"github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/sim/gateway"
)

// newRoot builds the command tree: a new one for every run, so that the
// flags' variables start at their defaults.
func newRoot(env *cliEnv) *cobra.Command {
	root := &cobra.Command{
		Use:   "depharness",
		Short: "test harness and simulator suite for the balena Supervisor's dependent-device API",
		Long: "depharness: the reference proxy, the fake cloud and registry, the compliance suite, the\n" +
			"simulated fleet and gateway app, and the whole world in one process.",
		Version:       version.String(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          subcommandArgs,
		RunE:          func(*cobra.Command, []string) error { return nil }, // Args refuses first
		// Every command's settings come from the environment when the
		// command line does not give them.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := settings.Apply(cmd.Flags(), env.getenv); err != nil {
				return usageError{err}
			}
			return nil
		},
		CompletionOptions: cobra.CompletionOptions{DisableNoDescFlag: true},
	}
	root.SetOut(env.stdout)
	root.SetErr(env.stderr)
	root.SetVersionTemplate("depharness {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{settings.FlagError(cmd.Flags(), err)}
	})
	root.SetHelpFunc(func(cmd *cobra.Command, _ []string) { writeHelp(cmd.OutOrStdout(), cmd) })
	root.SetUsageFunc(func(cmd *cobra.Command) error { writeHelp(cmd.OutOrStderr(), cmd); return nil })
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "show the help of a command",
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, _ := c.Root().Find(args)
			switch {
			case len(rest) > 0 && cmd.HasSubCommands():
				return subcommandArgs(cmd, rest)
			case len(rest) > 0:
				return noArgs(cmd, rest)
			}
			cmd.InitDefaultHelpFlag()
			cmd.InitDefaultVersionFlag()
			writeHelp(c.OutOrStdout(), cmd)
			return nil
		},
	})
	root.AddCommand(newProxyCmd(env), newUpCmd(env), newVerifyCmd(env), newGatewayCmd(env), newLoadCmd(env),
		newChaosCmd(env), newFakeCloudCmd(env), newFakeRegistryCmd(env), newCloudCmd(env), newHealthcheckCmd(env))
	return root
}

// newCommand is a leaf command taking no arguments, whose flags are table:
// each variable named by the scheme under its path (DEPHARNESS_UP_…) unless
// the row names its own. run gets the command (its Context, its flags).
func newCommand(path, short, long string, table []settings.Setting, run func(cmd *cobra.Command) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   path[strings.LastIndex(path, " ")+1:],
		Short: short,
		Long:  long,
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return run(cmd) },
	}
	settings.Bind(cmd.Flags(), envPrefix(path), table...)
	return cmd
}

// envPrefix is the scheme's prefix of the variables of the command at path
// ("cloud push" → DEPHARNESS_CLOUD_PUSH).
func envPrefix(path string) string {
	return "DEPHARNESS_" + strings.ToUpper(strings.NewReplacer(" ", "_", "-", "_").Replace(path))
}

// noArgs refuses positional arguments.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q (every setting is a --flag)", args[0])
	}
	return nil
}

// subcommandArgs is the Args of a command made of subcommands: it runs
// only when none was named, or an unknown one.
func subcommandArgs(cmd *cobra.Command, args []string) error {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	what := "command"
	if cmd.HasParent() {
		what = "subcommand"
	}
	if len(args) == 0 {
		return usagef("a %s is required: %s", what, strings.Join(names, ", "))
	}
	if s := settings.Suggest(args[0], names); len(s) > 0 {
		return usagef("unknown %s %q%s", what, args[0], settings.DidYouMean("", s))
	}
	return usagef("unknown %s %q (%ss: %s)", what, args[0], what, strings.Join(names, ", "))
}

// writeHelp writes cmd's help: what it does, its usage line, its
// subcommands, and its flags with their variables and defaults.
func writeHelp(w io.Writer, cmd *cobra.Command) {
	text := cmd.Long
	if text == "" {
		text = cmd.Short
	}
	fmt.Fprintf(w, "%s\n\nUsage:\n  %s", text, cmd.CommandPath())
	if cmd.HasAvailableSubCommands() {
		fmt.Fprint(w, " <command>")
	}
	fmt.Fprint(w, " [flags]")
	if _, args, ok := strings.Cut(cmd.Use, " "); ok {
		fmt.Fprint(w, " "+args)
	}
	fmt.Fprintln(w)
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintln(w, "\nCommands:")
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() || c.Name() == "help" {
				fmt.Fprintf(w, "  %-16s %s\n", c.Name(), c.Short)
			}
		}
	}
	fmt.Fprintln(w, "\nFlags:")
	fmt.Fprint(w, settings.Usage(cmd.LocalFlags()))
	if cmd.HasAvailableInheritedFlags() {
		fmt.Fprintf(w, "\nFlags of every '%s' command:\n", cmd.Parent().CommandPath())
		fmt.Fprint(w, settings.Usage(cmd.InheritedFlags()))
	}
	if hasVariables(cmd) {
		fmt.Fprintln(w, "\nA flag not given is read from the environment variable in brackets, if set.")
	}
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags.\n", cmd.CommandPath())
	}
}

// hasVariables reports whether a flag of cmd has an environment variable.
func hasVariables(cmd *cobra.Command) bool {
	found := false
	cmd.Flags().VisitAll(func(f *pflag.Flag) { found = found || settings.Env(f) != "" })
	return found
}

// logOptions are the log settings of the commands that log.
type logOptions struct{ level, format string }

// logSettings are --log-level and --log-format, with level as the default
// level.
func logSettings(o *logOptions, level string) []settings.Setting {
	return []settings.Setting{
		{Flag: "log-level", Env: "DEPHARNESS_LOG_LEVEL", Legacy: []string{"LOG_LEVEL"}, Help: "least level logged (on stderr): debug, info, warn or error",
			Value: settings.Checked(&o.level, level, "level", func(s string) error {
				var l slog.Level
				if l.UnmarshalText([]byte(s)) != nil {
					return errors.New("expected one of debug, info, warn, error")
				}
				return nil
			})},
		{Flag: "log-format", Env: "DEPHARNESS_LOG_FORMAT", Legacy: []string{"LOG_FORMAT"}, Help: "log line format",
			Value: settings.OneOf(&o.format, "text", "text", "json")},
	}
}

// logger is the structured logger the log settings ask for, writing to w.
func (o *logOptions) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(o.level)) // checked when set
	opts := &slog.HandlerOptions{Level: lvl}
	if o.format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// listenError is a usage error naming the flags to change when err is a
// failure to listen on one of listeners; else it is err.
func listenError(cmd *cobra.Command, err error, listeners ...settings.Listener) error {
	if le := settings.ListenError(cmd.Flags(), err, listeners...); le != nil {
		return usageError{le}
	}
	return err
}

// The variables of the values several commands share: the fake cloud's and
// the fake registry's addresses and admin tokens (up exports them).
const (
	envCloudURL           = "DEPHARNESS_CLOUD_URL"
	envCloudAdminToken    = "DEPHARNESS_CLOUD_ADMIN_TOKEN"
	envRegistry           = "DEPHARNESS_REGISTRY"
	envRegistryAdminToken = "DEPHARNESS_REGISTRY_ADMIN_TOKEN"
)

// cloudURLSetting is --cloud, the fake cloud's base URL.
func cloudURLSetting(p *string, def, help string) settings.Setting {
	return settings.Setting{Flag: "cloud", Env: envCloudURL, Value: settings.Text(p, def), Help: help}
}

// cloudAdminTokenSetting is --admin-token, the fake cloud's control API
// token.
func cloudAdminTokenSetting(p *string, help string) settings.Setting {
	return settings.Setting{Flag: "admin-token", Env: envCloudAdminToken, Legacy: []string{"FAKE_CLOUD_ADMIN_TOKEN"},
		Value: settings.Text(p, ""), Help: help}
}

// registryTokenSetting is the fake registry's admin token, as
// --registry-token (or as flag, for the fake registry's own --admin-token).
func registryTokenSetting(p *string, help string, flag ...string) settings.Setting {
	name := "registry-token"
	if len(flag) > 0 {
		name = flag[0]
	}
	return settings.Setting{Flag: name, Env: envRegistryAdminToken, Legacy: []string{"FAKE_REGISTRY_ADMIN_TOKEN"},
		Value: settings.Text(p, ""), Help: help}
}

// registrySetting is --registry, the host:port of the registry release
// images are built into.
func registrySetting(p *string, help string, legacy ...string) settings.Setting {
	return settings.Setting{Flag: "registry", Env: envRegistry, Legacy: legacy, Value: settings.Text(p, ""), Help: help}
}

// proxyTimingSettings are --poll-interval and --hook-retry-interval: the
// proxy's TARGET_POLL_INTERVAL and HOOK_RETRY_INTERVAL, for the proxy (or
// supervisor) the command starts, described by whose.
func proxyTimingSettings(poll, retry *time.Duration, defPoll, defRetry time.Duration, whose string) []settings.Setting {
	return []settings.Setting{
		{Flag: "poll-interval", Env: config.EnvPollInterval, Value: settings.Duration(poll, defPoll),
			Help: whose + " target poll interval (" + config.EnvPollInterval + ")"},
		{Flag: "hook-retry-interval", Env: config.EnvHookRetry, Value: settings.Duration(retry, defRetry),
			Help: whose + " hook retry interval (" + config.EnvHookRetry + ")"},
	}
}

// listenSetting is --listen of a server command.
func listenSetting(p *string, def string, legacy ...string) settings.Setting {
	return settings.Setting{Flag: "listen", Legacy: legacy, Value: settings.Text(p, def), Help: "host:port to listen on (port 0 picks a free one)"}
}

// policySetting is --policy, how the reference gateway answers update
// hooks: 200 by default everywhere (up, gateway, load), as the gateway
// package's own default.
func policySetting(p *string, legacy ...string) settings.Setting {
	return settings.Setting{Flag: "policy", Legacy: legacy, Value: settings.OneOf(p, string(gateway.PolicyAck), string(gateway.PolicyAck), string(gateway.PolicyAccepted)),
		Help: "how the reference gateway answers update hooks: 200 acknowledges at once and flashes in the background, " +
			"so the supervisor sends each target once (what a gateway app usually does); 202 makes the supervisor repeat the hook " +
			"every hook retry interval until the device reports the target (the 202 loop)"}
}
