// Package testkit holds the helpers the module's tests share: a component's
// Run(ctx) for a test's duration, stopped and checked at its end, polling
// until a condition holds, logs that go to the test's log, and the members
// of a tar.
//
// It is for tests only: only _test.go files import it (internal/depcheck
// enforces this). It imports only the standard library.
package testkit

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// StopTimeout is how long Running.Stop waits for a run to return after its
// context is cancelled.
const StopTimeout = 10 * time.Second

// Running is a run function started by Run.
type Running struct {
	t      testing.TB
	ctx    context.Context
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// Run calls run in a goroutine with a context that Stop cancels. The test's
// cleanup calls Stop if the test did not.
func Run(t testing.TB, run func(context.Context) error) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{t: t, ctx: ctx, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx) }()
	t.Cleanup(func() { r.Stop() })
	return r
}

// Context is the context run was given; it ends when Stop is called.
func (r *Running) Context() context.Context { return r.ctx }

// Stop cancels run's context and waits up to StopTimeout for it to return.
// It fails the test (t.Errorf) if run returns an error, or does not return
// in time. Later calls return at once, with the first call's error.
func (r *Running) Stop() error {
	r.t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
			if r.err != nil {
				r.t.Errorf("Run = %v, want nil after cancel", r.err)
			}
		case <-time.After(StopTimeout):
			r.t.Errorf("Run did not return %s after cancel", StopTimeout)
		}
	})
	return r.err
}

// EventuallyTimeout is how long Eventually waits for its condition.
const EventuallyTimeout = 20 * time.Second

// Eventually polls cond every few milliseconds until it holds, and fails
// the test (t.Fatalf) if it still does not after EventuallyTimeout.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyWithin(t, EventuallyTimeout, what, cond)
}

// EventuallyWithin is Eventually with its own timeout.
func EventuallyWithin(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	Await(ctx, t, what, cond)
}

// Await polls cond every few milliseconds until it holds, and fails the
// test (t.Fatalf) if ctx ends first.
func Await(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting until %s: %v", what, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// LogWriter is an io.Writer that sends each write to t.Logf, without its
// trailing newline.
func LogWriter(t testing.TB) io.Writer { return logWriter{t} }

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// Logger is a text logger of records at level and above that writes to
// t.Logf.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(LogWriter(t), &slog.HandlerOptions{Level: level}))
}
