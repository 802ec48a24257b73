package hooks

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/depharness/depharness/proxy/store"
)

// lossyStore loses every hook-state write while lose is set: what a crash
// between a hook's answer and the commit of its record leaves behind.
type lossyStore struct {
	*store.Store
	lose atomic.Bool
}

func (s *lossyStore) WriteHookState(ctx context.Context, ws []store.HookWrite) ([]store.HookWriteResult, error) {
	if s.lose.Load() {
		return nil, errors.New("lost in a crash")
	}
	return s.Store.WriteHookState(ctx, ws)
}

func TestAHookWhoseRecordACrashLostStillPacesTheNextAfterTheRestart(t *testing.T) {
	const slow = 400 * time.Millisecond
	var failing atomic.Bool
	failing.Store(true)
	rv := newReceiver(t, func(h hookReq, n int) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	w := newWorld(t, "d1")
	w.downloaded("c1")
	ls := &lossyStore{Store: w.st}
	ls.lose.Store(true)
	r := start(t, w, Options{BaseAddress: rv.base(), RetryInterval: slow, Store: ls})
	before := rv.await(t, 1, updatesTo("d1"))
	r.stop()
	if hw, err := w.st.HookWorkFor(context.Background(), "d1"); err != nil || !hw.LastAttempt.IsZero() {
		t.Fatalf("got last attempt %v (err %v) stored, want none: the record was to be lost", hw.LastAttempt, err)
	}
	lease, err := w.st.HookSendLease(context.Background())
	if err != nil || !lease.After(before[0].At) {
		t.Fatalf("got send lease %v (err %v), want one after the hook sent at %v", lease, err, before[0].At)
	}
	w.reopen()

	failing.Store(false)
	r = start(t, w, Options{BaseAddress: rv.base(), RetryInterval: slow})
	got := rv.await(t, 2, updatesTo("d1"))
	if g := got[1].At.Sub(got[0].At); g < slow-3*time.Millisecond {
		t.Fatalf("got the first hook after the restart %v after the last one before, whose record was lost, want at least %v", g, slow)
	}
	w.awaitSettled("d1")
	r.stop()
}

func TestAnAttemptIsRecordedWithItsAcknowledgementInOneWrite(t *testing.T) {
	rv := newReceiver(t, nil)
	w := newWorld(t, "d1")
	w.downloaded("c1")
	cs := &countingStore{Store: w.st}
	r := start(t, w, Options{BaseAddress: rv.base(), Store: cs})
	sent := rv.await(t, 1, updatesTo("d1"))
	w.awaitSettled("d1")
	r.stop()
	if n := cs.writes.Load(); n != 1 {
		t.Fatalf("got %d hook-state writes for one hook answered 200, want 1 (attempt and acknowledgement together)", n)
	}
	hw, err := w.st.HookWorkFor(context.Background(), "d1")
	if err != nil {
		t.Fatal(err)
	}
	if hw.LastAttempt.Before(sent[0].At.Truncate(time.Millisecond)) {
		t.Fatalf("got last attempt %v, want the hook's answer, after it arrived at %v", hw.LastAttempt, sent[0].At)
	}
}

// countingStore counts hook-state writes.
type countingStore struct {
	*store.Store
	writes atomic.Int64
}

func (s *countingStore) WriteHookState(ctx context.Context, ws []store.HookWrite) ([]store.HookWriteResult, error) {
	s.writes.Add(1)
	return s.Store.WriteHookState(ctx, ws)
}

func TestResumeFloor(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const timeout = 5 * time.Second
	for _, c := range []struct {
		stored, start, want time.Time
	}{
		{time.Time{}, t0, time.Time{}}, // never leased: nothing to guard
		// Leased until t0, restarted long after: a hook started before t0
		// was answered or timed out by t0+timeout.
		{t0, t0.Add(time.Minute), t0.Add(timeout)},
		// Restarted after the lease ran out, but while a hook started
		// before it could still have been answered: from the restart.
		{t0, t0.Add(2 * time.Second), t0.Add(2 * time.Second)},
		{t0.Add(time.Second), t0, t0}, // restarted before the lease ran out
		{t0, t0, t0},
	} {
		if got := resumeFloor(c.stored, c.start, timeout); !got.Equal(c.want) {
			t.Errorf("resumeFloor(%v, %v, %v) = %v, want %v", c.stored, c.start, timeout, got, c.want)
		}
	}
}

func TestACleanStopGivesTheSendLeaseBackSoThatARestartDelaysNothing(t *testing.T) {
	const slow = 600 * time.Millisecond
	rv := newReceiver(t, nil)
	w := newWorld(t, "a", "c")
	w.downloaded("c1")
	w.report("c", "c1", `{"A":"1"}`) // c owes nothing, and gets no hook, before the restart
	r := start(t, w, Options{BaseAddress: rv.base(), RetryInterval: slow})
	rv.await(t, 1, updatesTo("a"))
	w.awaitSettled("a")
	r.stop()
	if l, err := w.st.HookSendLease(context.Background()); err != nil || !l.IsZero() {
		t.Fatalf("got send lease %v (err %v) after a clean stop with every attempt recorded, want none", l, err)
	}
	w.device("c").Environment = map[string]string{"A": "2"}
	w.apply()
	restarted := time.Now()
	r = start(t, w, Options{BaseAddress: rv.base(), RetryInterval: slow})
	got := rv.await(t, 1, updatesTo("c"))
	if g := got[0].At.Sub(restarted); g >= slow/2 {
		t.Fatalf("got c's first hook %v after a clean restart, want it at once (under %v): c was never sent one", g, slow/2)
	}
	r.stop()
}
