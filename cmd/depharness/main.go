// Command depharness is the one CLI of the project: the reference proxy, the
// fakes, the compliance suite, the simulator and the in-process world, each a
// subcommand. Mains stay thin: flags → options → Run(ctx).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

// command is one subcommand. run parses args itself (with newFlags) and
// returns an error; a usageError means exit code 2.
type command struct {
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// commands is filled by the init functions of the subcommand files.
var commands = map[string]command{}

// cliEnv is what a subcommand gets from main: its output streams and the
// process environment, so tests can call a subcommand in-process.
type cliEnv struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

// usageError marks bad flags or configuration: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitStatus asks runMain for a given exit code, without a message.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// usagef returns a usageError with a formatted message.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, &cliEnv{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

// runMain dispatches to a subcommand and maps its error to an exit code.
func runMain(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(env.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "depharness: unknown command %q\n\n", args[0])
		printUsage(env.stderr)
		return 2
	}
	err := cmd.run(ctx, env, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(exitStatus)):
		var es exitStatus
		errors.As(err, &es)
		return int(es)
	case errors.As(err, new(usageError)):
		fmt.Fprintf(env.stderr, "depharness %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(env.stderr, "depharness %s: %v\n", args[0], err)
		return 1
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: depharness <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'depharness <command> --help' for a command's flags and environment variables.")
}

// flags is a flag set whose flags each have an environment variable
// equivalent: the flag wins, then the variable, then the default.
type flags struct {
	*flag.FlagSet
	env    *cliEnv
	envs   map[string]string // flag name → variable name
	logLvl *string
}

// newFlags returns a flag set for subcommand name. Every subcommand gets
// --log-level (LOG_LEVEL) and --log-format (LOG_FORMAT).
func newFlags(env *cliEnv, name, summary string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	f := &flags{FlagSet: fs, env: env, envs: map[string]string{}}
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "usage: depharness %s [flags]\n\n%s\n\nflags (environment variable in brackets):\n", name, summary)
		fs.VisitAll(func(fl *flag.Flag) {
			ev := ""
			if e := f.envs[fl.Name]; e != "" {
				ev = " [" + e + "]"
			}
			def := ""
			if fl.DefValue != "" {
				def = fmt.Sprintf(" (default %q)", fl.DefValue)
			}
			fmt.Fprintf(env.stderr, "  --%s%s\n    \t%s%s\n", fl.Name, ev, fl.Usage, def)
		})
	}
	f.logLvl = f.String("log-level", "LOG_LEVEL", "info", "log level: debug, info, warn or error")
	f.String("log-format", "LOG_FORMAT", "text", "log format: text or json")
	return f
}

// String defines a string flag with an environment variable equivalent (env
// may be "" for none). Further variable names may follow, comma-separated,
// as legacy aliases: "NEW,OLD".
func (f *flags) String(name, env, def, usage string) *string {
	p := f.FlagSet.String(name, def, usage)
	f.bindEnv(name, env)
	return p
}

// Bool defines a boolean flag with an environment variable equivalent.
func (f *flags) Bool(name, env string, def bool, usage string) *bool {
	p := f.FlagSet.Bool(name, def, usage)
	f.bindEnv(name, env)
	return p
}

// Int defines an integer flag with an environment variable equivalent.
func (f *flags) Int(name, env string, def int, usage string) *int {
	p := f.FlagSet.Int(name, def, usage)
	f.bindEnv(name, env)
	return p
}

// Int64 defines an int64 flag with an environment variable equivalent.
func (f *flags) Int64(name, env string, def int64, usage string) *int64 {
	p := f.FlagSet.Int64(name, def, usage)
	f.bindEnv(name, env)
	return p
}

// Duration defines a duration flag (Go syntax, "200ms") with an environment
// variable equivalent.
func (f *flags) Duration(name, env string, def time.Duration, usage string) *time.Duration {
	p := f.FlagSet.Duration(name, def, usage)
	f.bindEnv(name, env)
	return p
}

// Var defines a flag of any flag.Value with an environment variable
// equivalent (and legacy aliases, as String's).
func (f *flags) Var(v flag.Value, name, env, usage string) {
	f.FlagSet.Var(v, name, usage)
	f.bindEnv(name, env)
}

func (f *flags) bindEnv(name, env string) {
	if env != "" {
		f.envs[name] = env
	}
}

// Parse parses args; flags not given on the command line take their
// environment variable if set. A bad value in either is a usageError naming
// its source.
func (f *flags) Parse(args []string) error {
	if err := f.FlagSet.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if f.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(f.Args(), " "))
	}
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	for name, envs := range f.envs {
		if set[name] {
			continue
		}
		for _, e := range strings.Split(envs, ",") {
			if v := f.env.getenv(e); v != "" {
				if err := f.Set(name, v); err != nil {
					return usagef("invalid value %q for %s: %v", v, e, err)
				}
				break
			}
		}
	}
	return nil
}

// logger builds the subcommand's structured logger from --log-level and
// --log-format. Call it after Parse.
func (f *flags) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*f.logLvl)); err != nil {
		return nil, usagef("invalid log level %q", *f.logLvl)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format := f.Lookup("log-format").Value.String(); format {
	case "text":
		return slog.New(slog.NewTextHandler(f.env.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(f.env.stderr, opts)), nil
	default:
		return nil, usagef("invalid log format %q (text or json)", format)
	}
}

// isTerminal reports whether w is a character device (colours and
// progress bars are for terminals only).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
