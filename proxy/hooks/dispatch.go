package hooks

import (
	"container/heap"
	"context"
	"fmt"
	"time"

	"github.com/depharness/depharness/proxy/store"
)

// The run loop: it launches due deliveries up to the concurrency bound and
// folds their results back into the schedule.

// result is what a worker reports back to the scheduler.
type result struct {
	st        *devState
	sent      bool      // a hook was sent
	recorded  bool      // its attempt is in the store
	attempt   time.Time // when its request ended (answer, error or timeout)
	delivered bool      // the hook reached its goal (200, or 202 for an update)
	failed    bool      // not delivered: back off
	notDueAt  time.Time // not sent because pacing: due then
	more      bool      // still owed a hook after this one
	kind      Kind      // kind owed next if more
	workKey   workKey   // what is owed next
	stop      bool      // context cancelled
}

// Run dispatches hooks until ctx is done. It returns nil on cancellation and
// an error only if the store cannot be read at start.
func (d *Dispatcher) Run(ctx context.Context) error {
	rs := newRunState(d)
	for _, k := range []Kind{KindUpdate, KindDelete, KindRestart} {
		d.metrics.pending.WithLabelValues(string(k)).Set(0)
	}
	stored, err := d.opts.Store.HookSendLease(ctx)
	if err != nil {
		return fmt.Errorf("hooks: %w", err)
	}
	d.floor = resumeFloor(stored, d.opts.Now(), d.opts.Timeout)
	reader, err := d.opts.Store.NewHookWorkReader(ctx)
	if err != nil {
		return fmt.Errorf("hooks: %w", err)
	}
	defer reader.Close()
	rs.reader = reader
	if err := rs.rebuild(ctx); err != nil {
		return err
	}
	if d.opts.Violations.On("hook-resume-late") {
		// Owed hooks wait 10 retry intervals after every start.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * d.opts.RetryInterval):
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	rescan := time.NewTicker(d.opts.RescanInterval)
	defer rescan.Stop()
	// A rebuild reads every pending device: after a read that took T, the
	// next waits until 3T have passed, so that a burst of Notify calls costs
	// at most a quarter of the scheduler's time.
	// A Notify re-reads the devices changed since the last read; a rescan
	// reads every pending device (full).
	var rebuildAt time.Time
	full := false
	for {
		if !rebuildAt.IsZero() && !time.Now().Before(rebuildAt) {
			rebuildAt = time.Time{}
			read := rs.catchUp
			if full {
				read, full = rs.rebuild, false
			}
			if err := read(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("hooks: rebuild schedule", "err", err)
			}
		}
		rs.refill(ctx)
		rs.launchDue(ctx)
		wait := time.Hour
		if len(rs.heap) > 0 && rs.inFlight < d.workers() {
			wait = max(rs.heap[0].due.Sub(d.opts.Now()), 0)
		}
		if !rebuildAt.IsZero() {
			wait = min(wait, max(time.Until(rebuildAt), 0))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			for rs.inFlight > 0 {
				rs.note(<-rs.results)
				rs.inFlight--
			}
			rs.release(ctx)
			return nil
		case <-d.notify:
			rebuildAt = rs.lastRebuildEnd.Add(3 * rs.lastRebuildTook)
		case <-rescan.C:
			full = true
			rebuildAt = rs.lastRebuildEnd.Add(3 * rs.lastRebuildTook)
		case <-d.dirtyCh:
			d.mu.Lock()
			dirty := d.dirty
			d.dirty = map[string]bool{}
			d.mu.Unlock()
			for u := range dirty {
				rs.refresh(ctx, u)
			}
		case r := <-rs.results:
			rs.inFlight--
			rs.note(r)
			rs.handle(r)
		case <-timer.C:
		}
	}
}

// launchDue starts workers for due devices while the bound on deliveries
// under way allows (see Dispatcher.workers).
func (rs *runState) launchDue(ctx context.Context) {
	now := rs.d.opts.Now()
	for len(rs.heap) > 0 && rs.inFlight < rs.d.workers() && !rs.heap[0].due.After(now) {
		st := heap.Pop(&rs.heap).(*devState)
		st.inFlight = true
		st.recheck = false
		rs.inFlight++
		go func() { rs.results <- rs.d.deliver(ctx, rs.reader, st) }()
	}
}

// handle applies a worker's result to the schedule.
func (rs *runState) handle(r result) {
	d, st := rs.d, r.st
	st.inFlight = false
	if r.stop {
		return
	}
	if r.sent {
		st.lastSent = r.attempt
	}
	recheck := st.recheck
	st.recheck = false
	if !r.more && !recheck {
		rs.forget(st)
		return
	}
	now := d.opts.Now()
	if r.more {
		if r.workKey != st.workKey {
			st.workKey = r.workKey
			st.failures = 0
			st.backoffUntil = time.Time{}
		}
		rs.setKind(st, r.kind)
		switch {
		case !r.notDueAt.IsZero():
			rs.place(st, r.notDueAt)
		case r.failed:
			st.failures++
			base := st.lastSent
			if base.IsZero() {
				base = now
			}
			st.backoffUntil = later(now, base.Add(d.backoff(st.failures)))
			rs.place(st, st.backoffUntil)
		case d.opts.Violations.On("hook-pace-per-kind") && r.kind != st.recall().lastKind:
			// Another kind is owed: sent at once, paced per kind only.
			rs.place(st, now)
		default:
			if r.delivered {
				st.failures = 0
				st.backoffUntil = time.Time{}
			}
			rs.place(st, d.earliest(st, time.Time{}, now))
		}
	}
	if recheck {
		// The store changed while the hook was in flight: re-read at once.
		// The worker still honours pacing and backoff (backoffUntil).
		rs.place(st, now)
	}
}

// workKey identifies the work a device is owed; a change of key resets
// backoff. For an update it holds the target's canonical JSON, which the
// store shares among the devices with the same target: a pending device's
// key costs no bytes of its own. The zero key: nothing owed.
type workKey struct {
	kind  Kind
	canon string
}

// nextWork is the kind of hook w gets next and the key of that work; ""
// and the zero key when nothing is to be sent.
func (d *Dispatcher) nextWork(w store.HookWork) (kind Kind, key workKey) {
	v := d.opts.Violations
	switch {
	case w.Delete:
		if v.On("delete-hook-not-sent") {
			return "", workKey{}
		}
		return KindDelete, workKey{kind: KindDelete}
	case w.RestartsDue > 0 && !v.On("restart-hook-not-sent"):
		return KindRestart, workKey{kind: KindRestart}
	case w.Update != nil:
		return KindUpdate, workKey{kind: KindUpdate, canon: w.UpdateCanonical}
	}
	return "", workKey{}
}
