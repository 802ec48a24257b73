// Package outbox delivers the store's outbox to the cloud: device reports
// ('patch' rows, PATCH of the cloud device) and log lines ('log' rows, the
// gateway's log stream), and deletes rows only after the cloud took them
// (DEV-PUT-6, DEV-LOG-2).
//
// Log lines go in acceptance order, in batches (one request each). Patches
// are read in batches too, in seq order, and grouped by cloud device: each
// device's patches are sent one after the other in seq order (the order the
// contract protects is the cloud's view of one device), different devices
// concurrently with a bounded pool. A device's later patch is never sent
// before its earlier one succeeded (or was refused for good): when a patch
// fails because the cloud is unavailable, that device's remaining patches
// stay queued, in order, for the next round, while the other devices' rows
// of the batch are acknowledged.
//
// Every batch is acknowledged in ONE store transaction (the delivered and
// dropped rows, by seq), so acknowledging costs the store's single writer
// one transaction per batch, not one per row. If the acknowledgement itself
// fails, the delivered rows are remembered and acknowledged before anything
// else is read, so a row acknowledged or delivered is never sent again while
// the process runs. A crash between a delivery and its acknowledgement (or a
// shutdown whose acknowledgement fails) sends that batch's delivered rows
// again after the restart: delivery is at least once across a crash (a PATCH
// of the same fields is idempotent; a log line may then appear twice),
// exactly once otherwise, with one exception (DEV-LOG-2): a call whose
// outcome is unknown (sent whole, then no answer: timeout, connection
// lost) may have been taken, and its rows are sent again, first, before
// any newer row of their kind. The next call then waits longer (see
// callTimeout), so that a slow cloud is answered rather than sent the
// same rows a third time; and the cloud client resets abandoned
// connections, so that the abandoned request cannot reach the cloud later.
//
// While the cloud is unreachable or failing it retries with exponential
// backoff and jitter. Patches the cloud refuses for good (4xx other than
// 401, e.g. a deleted device) are dropped, logged and counted, so the
// queue can never wedge. A log batch the cloud refuses (400 or 413: it
// takes a request whole or refuses it whole) is split to find the refused
// line, which is dropped and counted by reason; any other failure of the
// log stream is transient.
//
// It depends on proxy/store, api/cloud, proxy/cloudclient (for error
// classification) and proxy/violation; it must not import the API, sync or
// hook packages, the fakes or the simulator.
package outbox

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/backoff"
	"github.com/depharness/depharness/internal/defaults"
	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/store"
	"github.com/depharness/depharness/proxy/violation"
	"github.com/prometheus/client_golang/prometheus"
)

// Cloud takes device patches and log lines. *cloudclient.Client implements
// it; errors are classified with cloudclient.IsRejected.
type Cloud interface {
	PatchDevice(ctx context.Context, id int64, patch cloudapi.DevicePatch) error
	SendLogs(ctx context.Context, lines []cloudapi.LogLine) error
}

// Store is the outbox's view of the store; *store.Store implements it.
type Store interface {
	NextOutboxBytes(ctx context.Context, kind store.OutboxKind, limit int, maxBytes int64) ([]store.OutboxRow, error)
	AckOutboxRows(ctx context.Context, kind store.OutboxKind, seqs []int64) (int64, error)
	OutboxDepth(ctx context.Context, kind store.OutboxKind) (int64, error)
}

// Defaults of Options.
const (
	DefaultRetryMin         = 250 * time.Millisecond
	DefaultRetryMax         = 5 * time.Second
	DefaultLogBatch         = 500
	DefaultLogBatchBytes    = 1 << 20
	DefaultPatchBatch       = 512
	DefaultPatchConcurrency = 16
	DefaultCallTimeout      = 30 * time.Second
	DefaultIdleCheck        = 10 * time.Second
	// settleTimeout bounds an acknowledgement made after Run's context
	// ended (what was delivered before shutdown is still acknowledged).
	settleTimeout = 5 * time.Second
)

// Options configure New. Store and Cloud are required.
type Options struct {
	Store Store
	Cloud Cloud
	// RetryMin is the first backoff after the cloud was unavailable
	// (default 250 ms); it doubles per failure up to RetryMax (default
	// 5 s: one small request per few seconds costs a down cloud little, and
	// delivery resumes soon after it is back), with jitter.
	RetryMin, RetryMax time.Duration
	// LogBatch is the most log lines sent in one request (default 500).
	LogBatch int
	// LogBatchBytes caps the payload bytes of the log lines sent in one
	// request (default 1 MiB); a line larger than the cap goes alone. It
	// also bounds what a drain holds in memory: one batch at a time.
	LogBatchBytes int64
	// PatchBatch is the most patches read, delivered and acknowledged as
	// one batch (default 512).
	PatchBatch int
	// PatchConcurrency is the most devices whose patches are being
	// delivered at once (default 16, the default cloud client's idle
	// connections per host).
	PatchConcurrency int
	// CallTimeout bounds one cloud call (default 30 s). After a call whose
	// outcome is unknown (sent, then no answer in time) the next call of
	// that kind may wait longer, up to maxSlowFactor × CallTimeout, so
	// that a slow cloud is answered rather than sent the same lines again
	// (see callTimeouts); the cloud client's own timeout must allow that.
	CallTimeout time.Duration
	// IdleCheck is how often an idle outbox looks for rows without being
	// notified (default 10 s): a safety net, Notify is the normal wake-up.
	IdleCheck time.Duration
	// Violations are deliberate contract violations for the self-check; nil
	// enables none.
	Violations violation.Set
	// Logger, if nil, discards.
	Logger *slog.Logger
	// Metrics, if nil, are built with NewMetrics(Registerer).
	Metrics *Metrics
	// Registerer, if nil, leaves the metrics unregistered.
	Registerer prometheus.Registerer
	// Rand, if nil, is seeded randomly. It jitters the backoff.
	Rand *rand.Rand
}

// Outbox delivers the store's outbox. Run it once; Notify wakes it.
type Outbox struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	wake    map[store.OutboxKind]chan struct{}
	randMu  sync.Mutex
	rand    *rand.Rand
	// unsettled holds, per kind, rows delivered or dropped whose
	// acknowledgement failed; only that kind's loop touches its entry.
	unsettled map[store.OutboxKind]*settlement
	// timeouts are the current call timeouts, per kind.
	timeouts map[store.OutboxKind]*callTimeout
	// answers counts, per kind, the calls the cloud answered (with a
	// status): what shows that it is reachable.
	answers map[store.OutboxKind]*atomic.Int64
	// seen are the store's counters last turned into metrics.
	countersMu sync.Mutex
	seen       store.OutboxCounters
}

// New returns an outbox for opts.
func New(opts Options) (*Outbox, error) {
	if opts.Store == nil || opts.Cloud == nil {
		return nil, errors.New("outbox: Store and Cloud are required")
	}
	if opts.Violations.On("put-commit-not-sent") {
		opts.Cloud = commitKeptLocal{opts.Cloud}
	}
	defaults.Positive(&opts.RetryMin, DefaultRetryMin)
	defaults.Positive(&opts.RetryMax, DefaultRetryMax)
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = opts.RetryMin
	}
	defaults.Positive(&opts.LogBatch, DefaultLogBatch)
	defaults.Positive(&opts.LogBatchBytes, DefaultLogBatchBytes)
	defaults.Positive(&opts.PatchBatch, DefaultPatchBatch)
	defaults.Positive(&opts.PatchConcurrency, DefaultPatchConcurrency)
	defaults.Positive(&opts.CallTimeout, DefaultCallTimeout)
	defaults.Positive(&opts.IdleCheck, DefaultIdleCheck)
	o := &Outbox{
		opts:    opts,
		log:     opts.Logger,
		metrics: opts.Metrics,
		wake:    map[store.OutboxKind]chan struct{}{store.OutboxPatch: make(chan struct{}, 1), store.OutboxLog: make(chan struct{}, 1)},
		rand:    opts.Rand,
		unsettled: map[store.OutboxKind]*settlement{
			store.OutboxPatch: {}, store.OutboxLog: {},
		},
		answers: map[store.OutboxKind]*atomic.Int64{store.OutboxPatch: {}, store.OutboxLog: {}},
		timeouts: map[store.OutboxKind]*callTimeout{
			store.OutboxPatch: {base: opts.CallTimeout}, store.OutboxLog: {base: opts.CallTimeout},
		},
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.rand == nil {
		o.rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if o.metrics == nil {
		var err error
		if o.metrics, err = NewMetrics(opts.Registerer); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Notify wakes the outbox: rows were added. It never blocks.
func (o *Outbox) Notify() {
	for _, ch := range o.wake {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Run delivers until ctx is done, then returns nil. Patches and log lines
// are delivered by two independent loops, each in seq order.
func (o *Outbox) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for kind, step := range map[store.OutboxKind]func(context.Context) (bool, error){
		store.OutboxPatch: o.deliverPatches,
		store.OutboxLog:   o.deliverLogs,
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.loop(ctx, kind, step)
		}()
	}
	wg.Wait()
	return nil
}

// loop runs step until ctx is done. step reports whether it delivered (or
// dropped) everything it read, so that more may be read at once; an error
// means the cloud or the store is unavailable: back off.
func (o *Outbox) loop(ctx context.Context, kind store.OutboxKind, step func(context.Context) (bool, error)) {
	failures := 0
	idle := time.NewTicker(o.opts.IdleCheck)
	defer idle.Stop()
	for ctx.Err() == nil {
		answered := o.answers[kind].Load()
		more, err := step(ctx)
		o.updateDepth(ctx, kind)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			o.metrics.retries.WithLabelValues(string(kind)).Inc()
			d := o.backoff(failures)
			if failures == 1 {
				o.log.Warn("cloud unavailable: outbox delivery paused", "kind", kind, "err", err, "retry_in", d)
			} else {
				o.log.Debug("outbox delivery failed again", "kind", kind, "err", err, "failures", failures, "retry_in", d)
			}
			if !sleep(ctx, d) {
				return
			}
			continue
		case failures > 0 && o.answers[kind].Load() != answered:
			// Only an answer of the cloud shows it is back: a round that
			// found nothing to send (or only undecodable rows) does not.
			o.log.Info("cloud available again: outbox delivery resumed", "kind", kind, "after_failures", failures)
			failures = 0
		}
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-o.wake[kind]:
		case <-idle.C:
		}
	}
}

// backoff is the wait after n consecutive failures: RetryMin·2^(n-1),
// capped at RetryMax, jittered into [½, 1] of that.
func (o *Outbox) backoff(n int) time.Duration {
	o.randMu.Lock()
	defer o.randMu.Unlock()
	return backoff.Jittered(o.opts.RetryMin, o.opts.RetryMax, n, o.rand)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// permanent reports whether the cloud refused a patch for good: 4xx other
// than 401 (the gateway's own key failing is not the row's fault), 408 and
// 429 (e.g. 404: the device is gone).
func permanent(err error) bool {
	var se *cloudclient.StatusError
	return cloudclient.IsRejected(err) && errors.As(err, &se) && se.Code != http.StatusUnauthorized
}

// lateDelay is how long after a delivery the late-delivery violations send
// again what the cloud already took.
const lateDelay = time.Second

// late calls send once, lateDelay from now, unless ctx ends first: a
// delivery the cloud already took, made again late (the violations
// outbox-late-older-patch and logs-resent-after-success).
func (o *Outbox) late(ctx context.Context, send func(context.Context) error) {
	go func() {
		if !sleep(ctx, lateDelay) {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, o.opts.CallTimeout)
		defer cancel()
		if err := send(cctx); err != nil {
			o.log.Debug("late delivery failed", "err", err)
		}
	}()
}

// Counters is what a Store may offer for the queue metrics;
// *store.Store does.
type Counters interface {
	OutboxCounters(ctx context.Context) (store.OutboxCounters, error)
}

// empty reports whether the store's counters (kept in memory, see
// Counters) say no row of kind is queued, so that a wake-up for the other
// kind costs no read; false for a Store without counters.
func (o *Outbox) empty(ctx context.Context, kind store.OutboxKind) bool {
	cs, ok := o.opts.Store.(Counters)
	if !ok {
		return false
	}
	c, err := cs.OutboxCounters(ctx)
	return err == nil && c.Rows[kind] == 0
}

func (o *Outbox) updateDepth(ctx context.Context, kind store.OutboxKind) {
	if ctx.Err() != nil {
		return
	}
	if cs, ok := o.opts.Store.(Counters); ok {
		c, err := cs.OutboxCounters(ctx)
		if err != nil {
			return
		}
		o.metrics.depth.WithLabelValues(string(kind)).Set(float64(c.Rows[kind]))
		o.metrics.bytes.WithLabelValues(string(kind)).Set(float64(c.Bytes[kind]))
		o.countersMu.Lock()
		if d := c.PatchesMerged - o.seen.PatchesMerged; d > 0 {
			o.metrics.merged.Add(float64(d))
		}
		if d := c.PatchesDropped - o.seen.PatchesDropped; d > 0 {
			o.metrics.queueDropped.Add(float64(d))
		}
		o.seen.PatchesMerged, o.seen.PatchesDropped = max(o.seen.PatchesMerged, c.PatchesMerged), max(o.seen.PatchesDropped, c.PatchesDropped)
		o.countersMu.Unlock()
		return
	}
	n, err := o.opts.Store.OutboxDepth(ctx, kind)
	if err != nil {
		return
	}
	o.metrics.depth.WithLabelValues(string(kind)).Set(float64(n))
}
