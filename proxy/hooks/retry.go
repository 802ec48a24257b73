package hooks

import (
	"time"
)

// When the next hook may go: pacing (HOOK-PACE) and backoff after failures.

// earliest is the earliest time, not before now, that the next hook may go
// to st (HOOK-PACE): a retry interval after the last one this run sent, or
// after the attempt stored in the store (stored; from before a restart), or
// after the floor this run started with (see lease.go). The stored time is
// kept in milliseconds, so it gets a slack of a tenth of the interval.
func (d *Dispatcher) earliest(st *devState, stored, now time.Time) time.Time {
	if d.opts.Violations.On("hook-no-pacing") {
		return later(now, st.lastSent.Add(d.opts.RetryInterval/10))
	}
	t := now
	if !st.lastSent.IsZero() {
		pace := d.opts.RetryInterval
		if d.opts.Violations.Allows("cadence-2x") {
			pace *= 2 // slower than the reference, within HOOK-202's 3 intervals
		}
		t = later(t, st.lastSent.Add(pace))
	}
	if !stored.IsZero() {
		t = later(t, stored.Add(d.opts.RetryInterval+d.opts.RetryInterval/10+time.Millisecond))
	}
	if !d.floor.IsZero() { // a bound, rounded up: no slack needed
		t = later(t, d.floor.Add(d.opts.RetryInterval))
	}
	return t
}

// backoff is the delay after the n-th consecutive failure: the retry
// interval doubled per failure up to BackoffMax, jittered by ±20%, never
// below the retry interval nor above BackoffMax. Called from the scheduler
// goroutine only (Rand is not safe for concurrent use).
func (d *Dispatcher) backoff(n int) time.Duration {
	if d.opts.Violations.On("hook-no-pacing") {
		return d.opts.RetryInterval / 10
	}
	if d.opts.Violations.On("hook-no-backoff") {
		return d.opts.RetryInterval
	}
	if d.opts.Violations.On("hook-error-retry-late") {
		return 20 * d.opts.RetryInterval
	}
	b := d.opts.RetryInterval
	for i := 1; i < n && b < d.opts.BackoffMax; i++ {
		b *= 2
	}
	b = min(b, d.opts.BackoffMax)
	if d.opts.Violations.Allows("cadence-2x") {
		// Twice as long, still within HOOK-ERR's 10 retry intervals.
		b = min(2*b, d.opts.BackoffMax)
	}
	j := time.Duration(float64(b) * (0.8 + 0.4*d.opts.Rand.Float64()))
	return min(max(j, d.opts.RetryInterval), d.opts.BackoffMax)
}
