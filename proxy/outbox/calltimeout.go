package outbox

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/store"
)

// The timeout of one cloud call, adapted to how slowly the cloud answers.

// maxSlowFactor bounds how far callTimeout stretches CallTimeout.
const maxSlowFactor = 8

// MaxCallTimeout is the longest a call may wait for the cloud when
// Options.CallTimeout is callTimeout: the timeout a cloud client given to
// the outbox must allow.
func MaxCallTimeout(callTimeout time.Duration) time.Duration {
	return maxSlowFactor * callTimeout
}

// callTimeout is the timeout of the next cloud call of one kind. It starts
// at base (CallTimeout). A call whose outcome is unknown (sent, then no
// answer in time: the cloud may have taken it) doubles it, up to
// maxSlowFactor × base, so the next call (the same rows again) gives a
// slow cloud the time to answer instead of being sent the rows a third
// time (DEV-LOG-2: re-sent at most once for a cloud that answers within
// twice the timeout). An answer sets it to twice that answer's time,
// within [base, maxSlowFactor × base]: it stays long while the cloud stays
// slow, and returns to base once the cloud answers fast again.
type callTimeout struct {
	mu   sync.Mutex
	base time.Duration
	cur  time.Duration
}

func (t *callTimeout) get() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return max(t.cur, t.base)
}

func (t *callTimeout) unknown() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur = min(2*max(t.cur, t.base), maxSlowFactor*t.base)
}

func (t *callTimeout) answered(took time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur = min(max(2*took, t.base), maxSlowFactor*t.base)
}

// call makes one cloud call of kind with the kind's current timeout and
// records its outcome: answered (a status, refusals included), unknown
// (the request was sent and no answer came: it may have been applied), or
// neither (not sent, e.g. connection refused, or shutting down).
func (o *Outbox) call(ctx context.Context, kind store.OutboxKind, send func(context.Context) error) error {
	t := o.timeouts[kind]
	cctx, cancel := context.WithTimeout(ctx, t.get())
	start := time.Now()
	err := send(cctx)
	took := time.Since(start)
	cancel()
	var se *cloudclient.StatusError
	switch {
	case err == nil || errors.As(err, &se):
		o.answers[kind].Add(1)
		t.answered(took)
	case ctx.Err() == nil && cloudclient.OutcomeUnknown(err):
		t.unknown()
		o.metrics.unknown.WithLabelValues(string(kind)).Inc()
		o.log.Warn("cloud call sent without an answer: outcome unknown, the same rows will be sent again",
			"kind", kind, "err", err, "next_timeout", t.get())
	}
	return err
}
