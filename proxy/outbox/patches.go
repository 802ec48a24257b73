package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/proxy/store"
)

// Delivering queued PATCHes: grouped by device, each device's in order,
// then settled in the store.

// settlement is what a round did with the rows it read: the seqs to
// acknowledge (delete), how many of them the cloud took, and how many were
// dropped, by reason.
type settlement struct {
	seqs      []int64
	delivered int
	dropped   map[string]int
}

func (s *settlement) deliver(seq int64) {
	s.seqs = append(s.seqs, seq)
	s.delivered++
}

func (s *settlement) drop(seq int64, reason string) {
	s.seqs = append(s.seqs, seq)
	if s.dropped == nil {
		s.dropped = map[string]int{}
	}
	s.dropped[reason]++
}

func (s *settlement) add(t *settlement) {
	s.seqs = append(s.seqs, t.seqs...)
	s.delivered += t.delivered
	for r, n := range t.dropped {
		if s.dropped == nil {
			s.dropped = map[string]int{}
		}
		s.dropped[r] += n
	}
}

// settle acknowledges the rows of kind in s, together with any left from an
// earlier failed acknowledgement, in one transaction, and counts them. On
// failure they are kept for the next settle: a round must settle before it
// reads, so no delivered row is read (and sent) again. It runs even after
// ctx ended, briefly, so that a shutdown acknowledges what it delivered.
func (o *Outbox) settle(ctx context.Context, kind store.OutboxKind, s *settlement) error {
	pending := o.unsettled[kind]
	if s != nil {
		pending.add(s)
	}
	if len(pending.seqs) == 0 {
		return nil
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if _, err := o.opts.Store.AckOutboxRows(actx, kind, pending.seqs); err != nil {
		return fmt.Errorf("outbox: ack %d %s rows: %w", len(pending.seqs), kind, err)
	}
	o.metrics.delivered.WithLabelValues(string(kind)).Add(float64(pending.delivered))
	for reason, n := range pending.dropped {
		o.metrics.dropped.WithLabelValues(string(kind), reason).Add(float64(n))
	}
	*pending = settlement{}
	return nil
}

// deliverPatches delivers one batch of the oldest patches: grouped by cloud
// device, each device's in seq order, devices concurrently; then it
// acknowledges the batch's delivered and dropped rows in one transaction.
// A device whose patch failed (cloud unavailable) keeps that patch and its
// later ones queued, and the round returns the failure (back off). It
// reports whether it read a full batch, so that more may be waiting.
func (o *Outbox) deliverPatches(ctx context.Context) (bool, error) {
	if err := o.settle(ctx, store.OutboxPatch, nil); err != nil {
		return false, err
	}
	if o.empty(ctx, store.OutboxPatch) {
		return false, nil
	}
	rows, err := o.opts.Store.NextOutboxBytes(ctx, store.OutboxPatch, o.opts.PatchBatch, 0)
	if err != nil || len(rows) == 0 {
		return false, err
	}
	if o.opts.Violations.On("outbox-reorder") {
		for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
			rows[i], rows[j] = rows[j], rows[i]
		}
	}
	chains := byDevice(rows)
	results := make([]chainResult, len(chains))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(o.opts.PatchConcurrency, len(chains)) {
		wg.Go(func() {
			for i := range work {
				results[i] = o.deliverChain(ctx, chains[i])
			}
		})
	}
	for i := range chains {
		work <- i
	}
	close(work)
	wg.Wait()

	var (
		done    settlement
		failed  int
		held    int
		failure error
	)
	for i := range results {
		done.add(&results[i].settlement)
		if results[i].err != nil {
			failed++
			held += results[i].held
			if failure == nil {
				failure = results[i].err
			}
		}
	}
	if err := o.settle(ctx, store.OutboxPatch, &done); err != nil {
		return false, err
	}
	if failure != nil {
		return false, fmt.Errorf("%d patches of %d devices held back: %w", held, failed, failure)
	}
	return len(rows) == o.opts.PatchBatch, nil
}

// byDevice splits rows into per-device chains, keeping the rows' order
// within each chain; chains are in the order of their first row.
func byDevice(rows []store.OutboxRow) [][]store.OutboxRow {
	index := map[int64]int{}
	var chains [][]store.OutboxRow
	for _, r := range rows {
		i, ok := index[r.CloudID]
		if !ok {
			i = len(chains)
			index[r.CloudID] = i
			chains = append(chains, nil)
		}
		chains[i] = append(chains[i], r)
	}
	return chains
}

// chainResult is what delivering one device's chain did: rows delivered or
// dropped, and, if the cloud was unavailable, the error and how many rows
// (the failed one and those after it) stay queued.
type chainResult struct {
	settlement
	err  error
	held int
}

// deliverChain sends one device's patches in order, stopping at the first
// that fails for a reason other than a refusal for good.
func (o *Outbox) deliverChain(ctx context.Context, rows []store.OutboxRow) chainResult {
	var res chainResult
	for i, r := range rows {
		if err := ctx.Err(); err != nil {
			res.err, res.held = err, len(rows)-i
			return res
		}
		var p cloudapi.DevicePatch
		if err := json.Unmarshal(r.Payload, &p); err != nil {
			o.log.Error("dropping an undecodable device patch", "seq", r.Seq, "device", r.DeviceUUID, "err", err)
			res.drop(r.Seq, "undecodable")
			continue
		}
		err := o.call(ctx, store.OutboxPatch, func(ctx context.Context) error { return o.opts.Cloud.PatchDevice(ctx, r.CloudID, p) })
		switch {
		case err == nil:
			res.deliver(r.Seq)
			if i == 0 && len(rows) > 1 && o.opts.Violations.On("outbox-late-older-patch") {
				o.late(ctx, func(ctx context.Context) error { return o.opts.Cloud.PatchDevice(ctx, r.CloudID, p) })
			}
		case permanent(err):
			o.log.Warn("cloud refused a device patch: dropped", "seq", r.Seq, "device", r.DeviceUUID, "cloud_id", r.CloudID, "err", err)
			res.drop(r.Seq, "rejected")
		case ctx.Err() != nil:
			// Shutting down: not the cloud's answer; keep the row.
			res.err, res.held = ctx.Err(), len(rows)-i
			return res
		case o.opts.Violations.On("put-lost-on-outage"):
			res.drop(r.Seq, "unavailable")
		default:
			res.err, res.held = err, len(rows)-i
			return res
		}
	}
	return res
}
