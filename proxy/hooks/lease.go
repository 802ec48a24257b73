package hooks

import (
	"context"
	"sync"
	"time"
)

// The send lease. A hook's attempt is recorded once it is answered, in the
// same write as its acknowledgement (one commit per hook, not two), so a
// crash can lose the record of a hook that reached the gateway. What stays
// durable is the lease: a time before which every hook sent so far
// started, extended ahead of the sends by a retry interval at a time.
// After a restart, the lease plus the hook timeout (or the restart, if
// earlier) counts as every device's last attempt: a hook whose record was
// lost started before the lease, so it was answered (or given up) before
// both, and pacing from there keeps HOOK-PACE across the crash, and owed hooks
// wait at most one retry interval more (HOOK-REF-1 allows three). A run
// that stops with every attempt it made recorded gives the lease back down
// to the floor it started with, so that a clean restart delays nothing.

// lease is the dispatcher's copy of the stored lease.
type lease struct {
	mu       sync.Mutex
	until    time.Time     // stored: hooks may start before it
	renewing chan struct{} // closed when the running extension ends; nil if none
}

// cover makes sure the stored lease lets a hook start now, with at least
// half a retry interval to spare; it extends the lease to a retry interval
// from now when less is left. Concurrent callers share one extension.
func (d *Dispatcher) cover(ctx context.Context) error {
	l := &d.lease
	for {
		now := d.opts.Now()
		l.mu.Lock()
		if now.Add(d.opts.RetryInterval / 2).Before(l.until) {
			l.mu.Unlock()
			return nil
		}
		if ch := l.renewing; ch != nil {
			l.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		ch := make(chan struct{})
		l.renewing = ch
		l.mu.Unlock()
		until := now.Add(d.opts.RetryInterval)
		err := d.opts.Store.SetHookSendLease(ctx, until)
		l.mu.Lock()
		if err == nil && until.After(l.until) {
			l.until = until
		}
		l.renewing = nil
		l.mu.Unlock()
		close(ch)
		if err != nil {
			return err
		}
	}
}

// resumeFloor is what a restart takes as every device's last attempt: the
// stored lease plus the hook timeout (a hook started before the lease ran
// out was answered, or given up, by then; its answer may be what a crash
// lost), or start if that is earlier (no hook of the previous run was
// answered after its end). Zero when no lease was ever stored.
func resumeFloor(stored, start time.Time, timeout time.Duration) time.Time {
	if stored.IsZero() {
		return stored
	}
	if end := stored.Add(timeout); end.Before(start) {
		return end
	}
	return start
}

// note remembers whether r is a hook sent whose attempt the store may not
// hold (the request or the write of its outcome was interrupted, or that
// write failed).
func (rs *runState) note(r result) {
	if r.sent && !r.recorded {
		rs.unrecorded = true
	}
}

// release, at the end of a run in which every hook sent has its attempt
// recorded, puts the stored lease back to the floor the run started with:
// what it sent paces through the stored attempts.
func (rs *runState) release(ctx context.Context) {
	d := rs.d
	d.lease.mu.Lock()
	leased := !d.lease.until.IsZero()
	d.lease.mu.Unlock()
	if !leased || rs.unrecorded {
		return
	}
	if err := d.opts.Store.SetHookSendLease(context.WithoutCancel(ctx), d.floor); err != nil {
		d.log.Warn("hooks: give back the send lease", "err", err)
		return
	}
	d.lease.mu.Lock()
	d.lease.until = time.Time{} // a later run extends it again before sending
	d.lease.mu.Unlock()
}
