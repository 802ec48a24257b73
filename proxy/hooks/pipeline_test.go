package hooks

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/depharness/depharness/proxy/store"
)

// slowStore makes every hook-state write take delay.
type slowStore struct {
	*store.Store
	delay time.Duration
}

func (s *slowStore) WriteHookState(ctx context.Context, ws []store.HookWrite) ([]store.HookWriteResult, error) {
	time.Sleep(s.delay)
	return s.Store.WriteHookState(ctx, ws)
}

func TestAWriteOfTheOutcomeDoesNotHoldARequestSlot(t *testing.T) {
	const delay = 150 * time.Millisecond
	var inflight, peak atomic.Int32
	rv := newReceiver(t, func(hookReq, int) int {
		n := inflight.Add(1)
		if n > peak.Load() {
			peak.Store(n)
		}
		inflight.Add(-1)
		return http.StatusOK
	})
	uuids := []string{"d1", "d2", "d3", "d4"}
	w := newWorld(t, uuids...)
	w.downloaded("c1")
	start(t, w, Options{BaseAddress: rv.base(), Concurrency: 1, Store: &slowStore{Store: w.st, delay: delay}})
	var first, last time.Time
	for _, u := range uuids {
		h := rv.await(t, 1, updatesTo(u))[0]
		if first.IsZero() || h.At.Before(first) {
			first = h.At
		}
		if h.At.After(last) {
			last = h.At
		}
	}
	// One at a time, each holding the slot until its outcome is written,
	// the four would span three writes.
	if span := last.Sub(first); span >= 2*delay {
		t.Fatalf("got the hooks to 4 devices over %v with one request slot and writes of %v, want them sent while the earlier ones' outcomes are written (under %v)", span, delay, 2*delay)
	}
	if p := peak.Load(); p > 1 {
		t.Fatalf("got %d hooks in flight, want at most the bound 1", p)
	}
	for _, u := range uuids {
		w.awaitSettled(u)
	}
}

func TestATargetThatChangesWhileADeliveryWaitsForASlotIsReadAgain(t *testing.T) {
	release := make(chan struct{})
	rv := newReceiver(t, func(h hookReq, n int) int {
		if h.UUID == "slow" && n == 1 {
			<-release
		}
		return http.StatusOK
	})
	w := newWorld(t, "slow", "d1")
	w.downloaded("c1")
	w.report("d1", "c1", `{"A":"1"}`) // d1 owes nothing yet
	r := start(t, w, Options{BaseAddress: rv.base(), Concurrency: 1})
	rv.await(t, 1, updatesTo("slow")) // holds the one slot
	w.device("d1").Environment = map[string]string{"A": "2"}
	w.apply()
	r.d.Notify()
	time.Sleep(50 * time.Millisecond) // d1's delivery has read A=2 and waits for the slot
	w.device("d1").Environment = map[string]string{"A": "3"}
	supersededAt := time.Now()
	w.apply()
	r.d.Notify()
	time.Sleep(20 * time.Millisecond)
	close(release)
	w.awaitSettled("d1")
	got := rv.requests(updatesTo("d1"))
	for _, h := range got {
		if h.At.After(supersededAt) && !strings.Contains(h.Body, `"A":"3"`) {
			t.Fatalf("got an update hook to d1 with %s after its target became A=3", h.Body)
		}
	}
	if len(got) == 0 {
		t.Fatal("got no update hook to d1, want one with A=3")
	}
}
