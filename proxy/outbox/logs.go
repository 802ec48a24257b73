package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/store"
)

// Delivering queued log lines in batches.

// refusedLogs reports whether the cloud refused the content of a log
// stream request (DEV-LOG-2: 400 or 413) and gives the drop reason of a
// line found refused alone. Any other failure, other 4xx included, is
// transient: the lines stay queued.
func refusedLogs(err error) (reason string, ok bool) {
	var se *cloudclient.StatusError
	if !errors.As(err, &se) {
		return "", false
	}
	switch se.Code {
	case http.StatusBadRequest:
		return "refused_400", true
	case http.StatusRequestEntityTooLarge:
		return "refused_413", true
	}
	return "", false
}

// deliverLogs sends the oldest log lines in one batch (at most LogBatch
// lines and LogBatchBytes bytes) and acknowledges them after the cloud took
// them, in one transaction. The cloud takes a request whole or refuses it
// whole (CLOUD-LOGS): a batch it refuses (400 or 413) is split in halves,
// each sent on its own, until the refused line is found alone and dropped;
// a half the cloud took is never sent again. What was delivered or dropped
// before a failure is still acknowledged (once, with the rest of the
// batch's outcome). After a failure the next round starts again at the
// oldest line not acknowledged: after a request whose outcome is unknown,
// its lines are sent again first, before any newer line.
func (o *Outbox) deliverLogs(ctx context.Context) (bool, error) {
	if err := o.settle(ctx, store.OutboxLog, nil); err != nil {
		return false, err
	}
	if o.empty(ctx, store.OutboxLog) {
		return false, nil
	}
	rows, err := o.opts.Store.NextOutboxBytes(ctx, store.OutboxLog, o.opts.LogBatch, o.opts.LogBatchBytes)
	if err != nil || len(rows) == 0 {
		return false, err
	}
	var done settlement
	sendErr := o.sendLogRows(ctx, rows, &done)
	if err := o.settle(ctx, store.OutboxLog, &done); err != nil {
		return false, err
	}
	if sendErr != nil {
		return false, sendErr
	}
	// More may be waiting (a batch is cut by LogBatch or by the byte
	// cap): the next round finds out.
	return true, nil
}

// sendLogRows sends rows as one request (or, if the cloud refuses it, as
// halves), recording in done what the cloud took and what was dropped. It
// stops at the first failure, leaving the rest unrecorded (queued).
func (o *Outbox) sendLogRows(ctx context.Context, rows []store.OutboxRow, done *settlement) error {
	lines := make([]cloudapi.LogLine, 0, len(rows))
	for _, r := range rows {
		var l cloudapi.LogLine
		if err := json.Unmarshal(r.Payload, &l); err != nil {
			// Send what precedes it, then drop it, keeping the order.
			i := len(lines)
			if i > 0 {
				if err := o.sendLogRows(ctx, rows[:i], done); err != nil {
					return err
				}
			}
			o.log.Error("dropping an undecodable log line", "seq", r.Seq, "device", r.DeviceUUID, "err", err)
			done.drop(r.Seq, "undecodable")
			if rest := rows[i+1:]; len(rest) > 0 {
				return o.sendLogRows(ctx, rest, done)
			}
			return nil
		}
		lines = append(lines, l)
	}
	err := o.call(ctx, store.OutboxLog, func(ctx context.Context) error { return o.opts.Cloud.SendLogs(ctx, lines) })
	reason, refused := refusedLogs(err)
	switch {
	case err == nil:
		for _, r := range rows {
			done.deliver(r.Seq)
		}
		if o.opts.Violations.On("logs-resent-after-success") {
			o.late(ctx, func(ctx context.Context) error { return o.opts.Cloud.SendLogs(ctx, lines) })
		}
		return nil
	case refused && len(rows) > 1 && o.opts.Violations.On("logs-refused-batch-dropped"):
		for _, r := range rows {
			done.drop(r.Seq, reason)
		}
		return nil
	case refused && len(rows) > 1:
		half := len(rows) / 2
		if err := o.sendLogRows(ctx, rows[:half], done); err != nil {
			return err
		}
		return o.sendLogRows(ctx, rows[half:], done)
	case refused:
		o.log.Warn("cloud refused a log line: dropped", "seq", rows[0].Seq, "device", rows[0].DeviceUUID, "reason", reason, "err", err)
		done.drop(rows[0].Seq, reason)
		return nil
	case ctx.Err() == nil && o.opts.Violations.On("logs-lost-on-outage"):
		for _, r := range rows {
			done.drop(r.Seq, "unavailable")
		}
		return nil
	default:
		return err
	}
}
