// Command depharness is the one CLI of the project: the reference proxy, the
// fakes, the compliance suite, the simulator and the in-process world, each a
// subcommand. Mains stay thin: flags → options → Run(ctx).
//
// Every flag is a row of its command's table of settings
// (internal/settings), with its environment variable: the proxy's own
// variables (the contract's harness interface and the operator's settings,
// proxy/config.Settings) keep their names wherever a flag sets one of them;
// values several commands share have one name (BALENA_SUPERVISOR_ADDRESS,
// BALENA_SUPERVISOR_API_KEY, DEPHARNESS_CLOUD_URL,
// DEPHARNESS_CLOUD_ADMIN_TOKEN, DEPHARNESS_REGISTRY,
// DEPHARNESS_REGISTRY_ADMIN_TOKEN, DEPHARNESS_LOG_LEVEL,
// DEPHARNESS_LOG_FORMAT); every other flag's variable is
// DEPHARNESS_<COMMAND>_<FLAG>. Older names are still read.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// cliEnv is what a command gets from main: its output streams and the
// process environment, so tests can run a command in-process.
type cliEnv struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

// usageError marks bad flags or configuration: exit code 2, with a hint
// where the command's help is.
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

// runMain runs the command args name and maps its error to an exit code:
// 0, 1 for a failure, 2 for bad flags or configuration (said once, with
// where the help is), or the code an exitStatus asks for.
func runMain(ctx context.Context, env *cliEnv, args []string) int {
	root := newRoot(env)
	root.SetArgs(append([]string{}, args...)) // never nil: nil means os.Args

	cmd, err := root.ExecuteContextC(ctx)
	if cmd == nil {
		cmd = root
	}
	var es exitStatus
	switch {
	case err == nil:
		return 0
	case errors.As(err, &es):
		return int(es)
	case errors.As(err, new(usageError)):
		fmt.Fprintf(env.stderr, "%s: %v\nRun '%s --help' for usage.\n", cmd.CommandPath(), err, cmd.CommandPath())
		return 2
	default:
		fmt.Fprintf(env.stderr, "%s: %v\n", cmd.CommandPath(), err)
		return 1
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
