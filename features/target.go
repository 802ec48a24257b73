package features

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Target is a supervisor under test, started by the harness with the
// variables of CONTRACT.md's "Harness ⇄ target interface". It is started,
// stopped and started again on the same DATA_DIR within one scenario.
type Target interface {
	// Start starts the supervisor with env (the harness variables) and
	// returns once GET /ping answers 200, or with an error if it does not
	// within the readiness deadline or exits first.
	Start(ctx context.Context, env map[string]string) error
	// Stop asks the supervisor to stop (SIGTERM) and waits up to 10 s for
	// it to exit, with any status; then (or when ctx ends) it kills it.
	Stop(ctx context.Context) error
	// Kill kills the supervisor at once (SIGKILL), as in a crash.
	Kill() error
	// Running reports whether the supervisor is started and not yet gone.
	Running() bool
}

// TargetFactory makes the Target of one scenario; out receives the
// supervisor's output (the scenario log).
type TargetFactory func(out io.Writer) Target

// Restart stops t (gracefully, or by SIGKILL when kill is set) and starts
// it again with env.
func Restart(ctx context.Context, t Target, env map[string]string, kill bool) error {
	var err error
	if kill {
		err = t.Kill()
	} else {
		err = t.Stop(ctx)
	}
	if err != nil {
		return err
	}
	return t.Start(ctx, env)
}

// CommandOptions configures a CommandTarget.
type CommandOptions struct {
	// Command is run with "sh -c". It inherits the process environment plus
	// the harness variables (which win).
	Command string
	// Ready is the readiness deadline; 0 means 30s.
	Ready time.Duration
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL; 0
	// means 10s (CONTRACT.md: a target has up to 10 s to exit).
	StopGrace time.Duration
}

// CommandTarget runs a supervisor as a child process in its own process
// group, so that signals reach everything the command starts.
type CommandTarget struct {
	opts CommandOptions
	out  io.Writer

	tail *tailWriter // the last lines of the current run's output

	mu  sync.Mutex
	cmd *exec.Cmd
	run *background // cmd.Wait
}

// NewCommandTarget returns a CommandTarget writing the supervisor's stdout
// and stderr to out.
func NewCommandTarget(opts CommandOptions, out io.Writer) *CommandTarget {
	if opts.Ready <= 0 {
		opts.Ready = 30 * time.Second
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 10 * time.Second
	}
	if out == nil {
		out = io.Discard
	}
	return &CommandTarget{opts: opts, out: out, tail: newTailWriter(startErrorLines, startErrorLineBytes)}
}

// Start implements Target.
func (t *CommandTarget) Start(ctx context.Context, env map[string]string) error {
	t.mu.Lock()
	if t.cmd != nil {
		t.mu.Unlock()
		return errors.New("target: already started")
	}
	cmd := exec.Command("sh", "-c", t.opts.Command)
	cmd.Env = mergeEnv(os.Environ(), env)
	t.tail.reset()
	out := io.MultiWriter(t.out, t.tail)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.mu.Unlock()
		return fmt.Errorf("target: starting %q: %w", t.opts.Command, err)
	}
	run := inBackground(cmd.Wait)
	t.cmd, t.run = cmd, run
	t.mu.Unlock()

	port := env["BALENA_SUPERVISOR_PORT"]
	if err := awaitReady(ctx, "http://127.0.0.1:"+port+"/ping", t.opts.Ready, run.done); err != nil {
		_ = t.Kill()
		se := &StartError{Command: t.opts.Command, Err: err, Output: t.tail.lines()}
		if errors.Is(err, errExited) {
			se.Exit = exitStatus(run.wait())
		}
		return se
	}
	return nil
}

// background is a function running in a goroutine: done is closed when it
// has returned, and err is its result from then on.
type background struct {
	done chan struct{}
	err  error
}

func inBackground(f func() error) *background {
	b := &background{done: make(chan struct{})}
	go func() {
		b.err = f()
		close(b.done)
	}()
	return b
}

// wait is f's result, once it has returned.
func (b *background) wait() error {
	<-b.done
	return b.err
}

// running reports whether b is a function that has not returned yet.
func (b *background) running() bool {
	if b == nil {
		return false
	}
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

// How much of a target's output a StartError carries: its last lines, each
// cut to a bound (the whole output is in the scenario's log).
const (
	startErrorLines     = 12
	startErrorLineBytes = 400
)

// StartError is a target that did not get ready: it exited first (Exit is
// its status) or GET /ping did not answer 200 in time. It carries the last
// lines the target wrote, which usually say why.
type StartError struct {
	Command string
	// Err is what went wrong: errExited, a timeout, or a *PingRefusedError.
	Err error
	// Exit is the exit status of a target that exited ("exit status 127",
	// "killed by signal 9"), empty otherwise.
	Exit string
	// Output are the last lines of the target's output, bounded.
	Output []string
}

func (e *StartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "target %q: ", e.Command)
	if errors.Is(e.Err, errExited) && e.Exit != "" {
		fmt.Fprintf(&b, "exited (%s) before GET /ping answered 200", e.Exit)
	} else {
		b.WriteString(e.Err.Error())
	}
	b.WriteString(e.OutputText())
	return b.String()
}

// OutputText is the target's last output as an indented block after a
// line saying so, or a line saying it wrote nothing.
func (e *StartError) OutputText() string {
	if len(e.Output) == 0 {
		return "; it wrote no output"
	}
	return "; its last output:\n    " + strings.Join(e.Output, "\n    ")
}

func (e *StartError) Unwrap() error { return e.Err }

// exitStatus describes how a command ended: "exit status 127", "killed by
// signal 9".
func exitStatus(err error) string {
	var ee *exec.ExitError
	if err == nil {
		return "exit status 0"
	}
	if !errors.As(err, &ee) {
		return err.Error()
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ee.ExitCode())
}

// tailWriter keeps the last n lines written to it, each cut to max bytes.
type tailWriter struct {
	n, max int

	mu      sync.Mutex
	done    []string
	partial []byte
}

func newTailWriter(n, max int) *tailWriter { return &tailWriter{n: n, max: max} }

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range p {
		if c == '\n' {
			w.push()
			continue
		}
		if len(w.partial) <= w.max {
			w.partial = append(w.partial, c)
		}
	}
	return len(p), nil
}

func (w *tailWriter) push() {
	line := strings.TrimRight(strings.ToValidUTF8(string(w.partial), "?"), "\r")
	if len(w.partial) > w.max {
		line = strings.ToValidUTF8(line[:w.max], "") + " …"
	}
	w.partial = w.partial[:0]
	w.done = append(w.done, line)
	if len(w.done) > w.n {
		w.done = append(w.done[:0], w.done[len(w.done)-w.n:]...)
	}
}

func (w *tailWriter) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done, w.partial = nil, nil
}

// lines returns the kept lines, an unterminated last line included, and
// without blank lines.
func (w *tailWriter) lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.done)+1)
	for _, l := range w.done {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	if p := strings.TrimSpace(string(w.partial)); p != "" {
		out = append(out, strings.ToValidUTF8(p, "?"))
	}
	if len(out) > w.n {
		out = out[len(out)-w.n:]
	}
	return out
}

// PingRefusedError is a readiness failure of a target that is up and
// answering, but whose GET /ping without a key never answered 200: that
// breaks AUTH-3, a verdict on the target rather than a harness failure.
type PingRefusedError struct {
	Status   string // the last answer, e.g. "401 Unauthorized"
	Deadline time.Duration
}

func (e *PingRefusedError) Error() string {
	return fmt.Sprintf("GET /ping without a key answered %s, not 200, throughout the ready timeout of %s (AUTH-3)", e.Status, e.Deadline)
}

// errExited is a target that exited before it was ready.
var errExited = errors.New("exited before GET /ping answered 200")

// awaitReady polls url until it answers 200, the deadline passes, ctx ends
// or exited is closed. When the deadline passes while the target answers
// with another status, the error is a *PingRefusedError.
func awaitReady(ctx context.Context, url string, deadline time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last string
	answered := false
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last, answered = resp.Status, true
		} else if ctx.Err() == nil {
			// A request cut by the deadline itself says nothing new.
			last, answered = err.Error(), false
		}
		select {
		case <-exited:
			return errExited
		case <-ctx.Done():
			if answered {
				return &PingRefusedError{Status: last, Deadline: deadline}
			}
			return fmt.Errorf("GET /ping did not answer 200 within %s (last: %s)", deadline, last)
		case <-tick.C:
		}
	}
}

// signal sends sig to the process group of the running command and returns
// its done channel (nil if not running).
func (t *CommandTarget) signal(sig syscall.Signal) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cmd == nil {
		return nil
	}
	if t.run.running() {
		_ = syscall.Kill(-t.cmd.Process.Pid, sig)
	}
	return t.run.done
}

// reset forgets the run that has ended, and is its result.
func (t *CommandTarget) reset() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var err error
	if t.run != nil {
		err = t.run.wait()
	}
	t.cmd, t.run = nil, nil
	return err
}

// Stop implements Target.
func (t *CommandTarget) Stop(ctx context.Context) error {
	done := t.signal(syscall.SIGTERM)
	if done == nil {
		return nil
	}
	grace := time.NewTimer(t.opts.StopGrace)
	defer grace.Stop()
	select {
	case <-done:
		// Any exit status after SIGTERM is a stop (CONTRACT.md "Latitude"):
		// 0, 143, or ended by the signal itself.
		if err := t.reset(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				return fmt.Errorf("target: waiting for it after SIGTERM: %w", err)
			}
		}
		return nil
	case <-grace.C:
		_ = t.Kill()
		return fmt.Errorf("target did not exit within %s of SIGTERM (killed)", t.opts.StopGrace)
	case <-ctx.Done():
		_ = t.Kill()
		return fmt.Errorf("target stop abandoned (killed): %w", ctx.Err())
	}
}

// Kill implements Target.
func (t *CommandTarget) Kill() error {
	done := t.signal(syscall.SIGKILL)
	if done == nil {
		return nil
	}
	<-done
	t.reset()
	return nil
}

// Running implements Target.
func (t *CommandTarget) Running() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.run.running()
}

// mergeEnv returns base with the variables of over set (replacing any of
// the same name), in a stable order.
func mergeEnv(base []string, over map[string]string) []string {
	out := make([]string, 0, len(base)+len(over))
	for _, kv := range base {
		name := kv
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				name = kv[:i]
				break
			}
		}
		if _, ok := over[name]; !ok {
			out = append(out, kv)
		}
	}
	names := make([]string, 0, len(over))
	for k := range over {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		out = append(out, k+"="+over[k])
	}
	return out
}

// InProcessTarget runs a supervisor as a function in this process: Start
// calls Run in a goroutine with the harness variables as its environment;
// Stop cancels it and waits; Kill cancels it too (there is no crash in
// process: prefer a CommandTarget where a real SIGKILL matters).
type InProcessTarget struct {
	// Run is the supervisor's main: it serves until ctx ends.
	Run   func(ctx context.Context, getenv func(string) string, out io.Writer) error
	Ready time.Duration
	Out   io.Writer

	mu     sync.Mutex
	cancel context.CancelFunc
	run    *background // Run
}

// Start implements Target.
func (t *InProcessTarget) Start(ctx context.Context, env map[string]string) error {
	t.mu.Lock()
	if t.cancel != nil {
		t.mu.Unlock()
		return errors.New("target: already started")
	}
	vars := map[string]string{}
	for k, v := range env {
		vars[k] = v
	}
	out := t.Out
	if out == nil {
		out = io.Discard
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	run := inBackground(func() error { return t.Run(runCtx, func(k string) string { return vars[k] }, out) })
	t.cancel, t.run = cancel, run
	t.mu.Unlock()
	ready := t.Ready
	if ready <= 0 {
		ready = 30 * time.Second
	}
	if err := awaitReady(ctx, "http://127.0.0.1:"+env["BALENA_SUPERVISOR_PORT"]+"/ping", ready, run.done); err != nil {
		var runErr error
		if errors.Is(err, errExited) {
			runErr = run.wait()
		}
		_ = t.Kill()
		if runErr != nil {
			return fmt.Errorf("in-process target: %w: %v", err, runErr)
		}
		return fmt.Errorf("in-process target: %w", err)
	}
	return nil
}

func (t *InProcessTarget) end() error {
	t.mu.Lock()
	cancel, run := t.cancel, t.run
	t.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	err := run.wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cancel, t.run = nil, nil
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// Stop implements Target.
func (t *InProcessTarget) Stop(context.Context) error { return t.end() }

// Kill implements Target.
func (t *InProcessTarget) Kill() error { _ = t.end(); return nil }

// Running implements Target.
func (t *InProcessTarget) Running() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.run.running()
}
