package features

import (
	"context"
	"time"
)

// busySlots bound the scenarios that are busy at once: set up and not yet
// torn down, unless waiting out a negative window. A window ("no further
// hook while the contract would have repeated it", "no more log lines for N
// retry intervals") is a wait for nothing to happen: the supervisor idles,
// and load from other scenarios can only delay what the window looks for,
// never make it appear. A scenario gives its slot up for the window and
// takes one again after it, so that another scenario can start meanwhile.
// Checks whose verdict depends on when things happen (a hook repeated in
// time, a poll in every window) keep their slot throughout. A nil busySlots
// bounds nothing.
type busySlots chan struct{}

func newBusySlots(n int) busySlots { return make(busySlots, max(n, 1)) }

// take waits for a slot.
func (b busySlots) take(ctx context.Context) error {
	if b == nil {
		return nil
	}
	select {
	case b <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// give returns a slot.
func (b busySlots) give() {
	if b != nil {
		<-b
	}
}

// idle runs wait, a wait for nothing to happen, without holding the
// scenario's slot, and takes one again after it.
func (st *scenario) idle(ctx context.Context, wait func() error) error {
	if !st.holding {
		return wait()
	}
	st.cfg.slots.give()
	st.holding = false
	err := wait()
	if terr := st.cfg.slots.take(ctx); terr != nil {
		return terr
	}
	st.holding = true
	return err
}

// seenWithin runs await, idle, for up to d: whether it found what it waits
// for (returned nil) before then. The error is only the scenario's own end.
func (st *scenario) seenWithin(ctx context.Context, d time.Duration, await func(context.Context) error) (bool, error) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := st.idle(ctx, func() error { return await(wctx) }); err == nil {
		return true, nil
	}
	return false, ctx.Err()
}
