// Package outbox delivers the store's outbox to the cloud: device reports
// ('patch' rows, PATCH of the cloud device) and log lines ('log' rows, the
// gateway's log stream), each kind strictly in acceptance order, and
// deletes rows only after the cloud took them (DEV-PUT-6, DEV-LOG-2).
//
// While the cloud is unreachable or failing it retries with exponential
// backoff and jitter; rows the cloud refuses for good (4xx, e.g. a deleted
// device) are dropped, logged and counted, so the queue can never wedge.
//
// It depends on proxy/store, proxy/cloudapi, proxy/cloudclient (for error
// classification) and proxy/violation; it must not import the API, sync or
// hook packages, the fakes or the simulator.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/depharness/depharness/proxy/cloudapi"
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

// Defaults of Options.
const (
	DefaultRetryMin    = 250 * time.Millisecond
	DefaultRetryMax    = 5 * time.Second
	DefaultLogBatch    = 500
	DefaultCallTimeout = 30 * time.Second
	DefaultIdleCheck   = 10 * time.Second
	patchBatch         = 100
)

// Options configure New. Store and Cloud are required.
type Options struct {
	Store *store.Store
	Cloud Cloud
	// RetryMin is the first backoff after the cloud was unavailable
	// (default 250 ms); it doubles per failure up to RetryMax (default
	// 5 s: one small request per few seconds costs a down cloud little, and
	// delivery resumes soon after it is back), with jitter.
	RetryMin, RetryMax time.Duration
	// LogBatch is the most log lines sent in one request (default 500).
	LogBatch int
	// CallTimeout bounds one cloud call (default 30 s).
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
	wake    map[string]chan struct{}
	randMu  sync.Mutex
	rand    *rand.Rand
}

// New returns an outbox for opts.
func New(opts Options) (*Outbox, error) {
	if opts.Store == nil || opts.Cloud == nil {
		return nil, errors.New("outbox: Store and Cloud are required")
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = DefaultRetryMax
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = opts.RetryMin
	}
	if opts.LogBatch <= 0 {
		opts.LogBatch = DefaultLogBatch
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.IdleCheck <= 0 {
		opts.IdleCheck = DefaultIdleCheck
	}
	o := &Outbox{
		opts:    opts,
		log:     opts.Logger,
		metrics: opts.Metrics,
		wake:    map[string]chan struct{}{store.OutboxPatch: make(chan struct{}, 1), store.OutboxLog: make(chan struct{}, 1)},
		rand:    opts.Rand,
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
	for kind, step := range map[string]func(context.Context) (bool, error){
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
func (o *Outbox) loop(ctx context.Context, kind string, step func(context.Context) (bool, error)) {
	failures := 0
	idle := time.NewTicker(o.opts.IdleCheck)
	defer idle.Stop()
	for ctx.Err() == nil {
		more, err := step(ctx)
		o.updateDepth(ctx, kind)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			o.metrics.retries.WithLabelValues(kind).Inc()
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
		case failures > 0:
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
	d := o.opts.RetryMin
	for i := 1; i < n && d < o.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, o.opts.RetryMax)
	o.randMu.Lock()
	f := 0.5 + 0.5*o.rand.Float64()
	o.randMu.Unlock()
	return time.Duration(float64(d) * f)
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

// permanent reports whether the cloud refused a row for good: 4xx other
// than 401 (the gateway's own key failing is not the row's fault), 408 and
// 429.
func permanent(err error) bool {
	var se *cloudclient.StatusError
	return cloudclient.IsRejected(err) && errors.As(err, &se) && se.Code != http.StatusUnauthorized
}

// deliverPatches sends the oldest patches one by one, in seq order, and
// acknowledges each after the cloud took it (or refused it for good). It
// reports whether it got through everything it read.
func (o *Outbox) deliverPatches(ctx context.Context) (bool, error) {
	rows, err := o.opts.Store.NextOutbox(ctx, store.OutboxPatch, patchBatch)
	if err != nil || len(rows) == 0 {
		return false, err
	}
	if o.opts.Violations.On("outbox-reorder") {
		for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
			rows[i], rows[j] = rows[j], rows[i]
		}
	}
	for _, r := range rows {
		var p cloudapi.DevicePatch
		if err := json.Unmarshal(r.Payload, &p); err != nil {
			o.log.Error("dropping an undecodable device patch", "seq", r.Seq, "device", r.DeviceUUID, "err", err)
			if err := o.drop(ctx, store.OutboxPatch, r.Seq, "undecodable", 1); err != nil {
				return false, err
			}
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, o.opts.CallTimeout)
		err := o.opts.Cloud.PatchDevice(cctx, r.CloudID, p)
		cancel()
		switch {
		case err == nil:
			if err := o.ack(ctx, store.OutboxPatch, r.Seq, 1); err != nil {
				return false, err
			}
		case permanent(err):
			o.log.Warn("cloud refused a device patch: dropped", "seq", r.Seq, "device", r.DeviceUUID, "cloud_id", r.CloudID, "err", err)
			if err := o.drop(ctx, store.OutboxPatch, r.Seq, "rejected", 1); err != nil {
				return false, err
			}
		case o.opts.Violations.On("put-lost-on-outage"):
			if err := o.drop(ctx, store.OutboxPatch, r.Seq, "unavailable", 1); err != nil {
				return false, err
			}
		default:
			return false, err
		}
	}
	return len(rows) == patchBatch, nil
}

// deliverLogs sends the oldest log lines in one batch and acknowledges them
// after the cloud took them. A batch the cloud refuses is split in halves
// until the refused line is found alone and dropped.
func (o *Outbox) deliverLogs(ctx context.Context) (bool, error) {
	rows, err := o.opts.Store.NextOutbox(ctx, store.OutboxLog, o.opts.LogBatch)
	if err != nil || len(rows) == 0 {
		return false, err
	}
	if err := o.sendLogRows(ctx, rows); err != nil {
		return false, err
	}
	return len(rows) == o.opts.LogBatch, nil
}

func (o *Outbox) sendLogRows(ctx context.Context, rows []store.OutboxRow) error {
	lines := make([]cloudapi.LogLine, 0, len(rows))
	for _, r := range rows {
		var l cloudapi.LogLine
		if err := json.Unmarshal(r.Payload, &l); err != nil {
			// Send what precedes it, then drop it, keeping the order.
			i := len(lines)
			if i > 0 {
				if err := o.sendLogRows(ctx, rows[:i]); err != nil {
					return err
				}
			}
			o.log.Error("dropping an undecodable log line", "seq", r.Seq, "device", r.DeviceUUID, "err", err)
			if err := o.drop(ctx, store.OutboxLog, r.Seq, "undecodable", 1); err != nil {
				return err
			}
			if rest := rows[i+1:]; len(rest) > 0 {
				return o.sendLogRows(ctx, rest)
			}
			return nil
		}
		lines = append(lines, l)
	}
	last := rows[len(rows)-1].Seq
	cctx, cancel := context.WithTimeout(ctx, o.opts.CallTimeout)
	err := o.opts.Cloud.SendLogs(cctx, lines)
	cancel()
	switch {
	case err == nil:
		return o.ack(ctx, store.OutboxLog, last, len(rows))
	case permanent(err) && len(rows) > 1:
		half := len(rows) / 2
		if err := o.sendLogRows(ctx, rows[:half]); err != nil {
			return err
		}
		return o.sendLogRows(ctx, rows[half:])
	case permanent(err):
		o.log.Warn("cloud refused a log line: dropped", "seq", rows[0].Seq, "device", rows[0].DeviceUUID, "err", err)
		return o.drop(ctx, store.OutboxLog, last, "rejected", 1)
	case o.opts.Violations.On("logs-lost-on-outage"):
		return o.drop(ctx, store.OutboxLog, last, "unavailable", len(rows))
	default:
		return err
	}
}

// ack deletes rows of kind up to seq after delivery of n of them.
func (o *Outbox) ack(ctx context.Context, kind string, seq int64, n int) error {
	if _, err := o.opts.Store.AckOutbox(ctx, kind, seq); err != nil {
		return fmt.Errorf("outbox: ack: %w", err)
	}
	o.metrics.delivered.WithLabelValues(kind).Add(float64(n))
	return nil
}

// drop deletes rows of kind up to seq that will never be delivered.
func (o *Outbox) drop(ctx context.Context, kind string, seq int64, reason string, n int) error {
	if _, err := o.opts.Store.AckOutbox(ctx, kind, seq); err != nil {
		return fmt.Errorf("outbox: drop: %w", err)
	}
	o.metrics.dropped.WithLabelValues(kind, reason).Add(float64(n))
	return nil
}

func (o *Outbox) updateDepth(ctx context.Context, kind string) {
	if ctx.Err() != nil {
		return
	}
	n, err := o.opts.Store.OutboxDepth(ctx, kind)
	if err != nil {
		return
	}
	o.metrics.depth.WithLabelValues(kind).Set(float64(n))
}
