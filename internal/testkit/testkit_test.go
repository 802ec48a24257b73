package testkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps what a helper reports instead of
// failing the test that uses it, and runs its cleanups on demand.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	msgs     []string
	cleanups []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Logf(format string, args ...any) {
	r.Errorf("log: "+format, args...)
}

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func (r *recorder) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func (r *recorder) messages() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.msgs, "\n")
}

func TestRunStopsAtCleanupAndReportsNothingForACleanReturn(t *testing.T) {
	rec := &recorder{TB: t}
	var returned atomic.Bool
	Run(rec, func(ctx context.Context) error {
		<-ctx.Done()
		returned.Store(true)
		return nil
	})
	if returned.Load() {
		t.Fatal("run returned before its context was cancelled")
	}
	rec.cleanup()
	if !returned.Load() {
		t.Error("the cleanup did not wait for run to return")
	}
	if m := rec.messages(); m != "" {
		t.Errorf("reported %q, want nothing", m)
	}
}

func TestStopReportsAnErrorAndIsIdempotent(t *testing.T) {
	rec := &recorder{TB: t}
	boom := errors.New("boom")
	r := Run(rec, func(ctx context.Context) error {
		<-ctx.Done()
		return boom
	})
	if err := r.Stop(); !errors.Is(err, boom) {
		t.Errorf("Stop() = %v, want %v", err, boom)
	}
	if err := r.Stop(); !errors.Is(err, boom) {
		t.Errorf("second Stop() = %v, want the first call's %v", err, boom)
	}
	rec.cleanup()
	if m := rec.messages(); strings.Count(m, "boom") != 1 {
		t.Errorf("reported %q, want the error once", m)
	}
	if r.Context().Err() == nil {
		t.Error("the run's context is not cancelled after Stop")
	}
}

func TestEventuallyWaitsForTheConditionAndFailsAfterTheTimeout(t *testing.T) {
	rec := &recorder{TB: t}
	var n atomic.Int32
	EventuallyWithin(rec, 10*time.Second, "the third poll", func() bool { return n.Add(1) >= 3 })
	if got := n.Load(); got != 3 {
		t.Errorf("cond called %d times, want 3", got)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		EventuallyWithin(rec, 20*time.Millisecond, "never", func() bool { return false })
		t.Error("EventuallyWithin returned for a condition that never holds")
	}()
	<-done
	if m := rec.messages(); !strings.Contains(m, "waiting until never: context deadline exceeded") {
		t.Errorf("reported %q, want the timeout named", m)
	}
}

func TestLoggerWritesRecordsAtItsLevelToTheTestLog(t *testing.T) {
	rec := &recorder{TB: t}
	log := Logger(rec, slog.LevelWarn)
	log.Info("quiet")
	log.Warn("loud", "n", 1)
	if m := rec.messages(); !strings.Contains(m, "msg=loud n=1") || strings.Contains(m, "quiet") || strings.HasSuffix(m, "\n") {
		t.Errorf("test log %q, want the warning alone, without a trailing newline", m)
	}
}
