package store

// The outbox: reports ('patch') and log lines ('log') accepted from the
// gateway and not yet delivered to the cloud, in acceptance order. Patches
// are written by ApplyReport; log lines by AppendLog, bounded (the oldest are
// dropped when full). proxy/outbox reads them in seq order and acknowledges
// (deletes) them after the cloud took them: a prefix of the queue
// (AckOutbox) or any set of rows (AckOutboxRows), each in one transaction.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// OutboxKind is what the rows of one queue of the outbox hold.
type OutboxKind string

// check refuses a kind that is none of the constants below (a conversion
// from an arbitrary string).
func (k OutboxKind) check() error {
	if k != OutboxPatch && k != OutboxLog {
		return fmt.Errorf("store: unknown outbox kind %q", string(k))
	}
	return nil
}

// Outbox kinds.
const (
	OutboxPatch OutboxKind = "patch" // payload: cloudapi.DevicePatch JSON
	OutboxLog   OutboxKind = "log"   // payload: cloudapi.LogLine JSON
)

// Default bounds of the outbox.
const (
	// DefaultMaxLogRows bounds the buffered log lines when AppendLog is
	// given no bound.
	DefaultMaxLogRows = 100000
	// DefaultMaxLogBytes bounds the buffered log lines' payload bytes when
	// AppendLogBounded is given no bound.
	DefaultMaxLogBytes = 64 << 20
	// DefaultReportQueueBytes bounds the queued reports' payload bytes when
	// Options.ReportQueueBytes is zero.
	DefaultReportQueueBytes = 16 << 20
)

// metaLogRows is the meta key of the number of 'log' rows in the outbox,
// kept in the same transactions that change it so that bounding the buffer
// costs no count of the table. The other counts follow the same pattern:
// outbox_<kind>_rows and outbox_<kind>_bytes (payload bytes).
const metaLogRows = "outbox_log_rows"

func metaRows(kind OutboxKind) string  { return "outbox_" + string(kind) + "_rows" }
func metaBytes(kind OutboxKind) string { return "outbox_" + string(kind) + "_bytes" }

// OutboxRow is one undelivered report or log line.
type OutboxRow struct {
	Seq        int64
	Kind       OutboxKind
	DeviceUUID string
	CloudID    int64
	Payload    json.RawMessage
	CreatedAt  time.Time
}

// AppendLog is AppendLogBounded with the default byte bound.
func (s *Store) AppendLog(ctx context.Context, uuid string, payload []byte, maxRows int) (dropped int64, err error) {
	return s.AppendLogBounded(ctx, uuid, payload, maxRows, 0)
}

// AppendLogBounded buffers one log line of device uuid (payload: the
// cloudapi.LogLine JSON) and, if more than maxRows lines or more than
// maxBytes payload bytes are then buffered, drops the oldest ones (never
// the line just added); it returns how many it dropped. maxRows ≤ 0 means
// DefaultMaxLogRows, maxBytes ≤ 0 DefaultMaxLogBytes. ErrNotFound for an
// unknown device, ErrDeleted for one marked for deletion; nothing is
// written then.
func (s *Store) AppendLogBounded(ctx context.Context, uuid string, payload []byte, maxRows int, maxBytes int64) (dropped int64, err error) {
	if maxRows <= 0 {
		maxRows = DefaultMaxLogRows
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxLogBytes
	}
	if !json.Valid(payload) {
		return 0, errors.New("store: log payload is not JSON")
	}
	err = s.writeTx(ctx, func(tx *wtx) error {
		tx.changedNoDevice()
		dropped = 0
		var (
			cloudID int64
			marked  bool
		)
		err := tx.stmt(ctx, s.ws.deviceLookup).QueryRowContext(ctx, uuid).Scan(&cloudID, &marked)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if marked {
			return ErrDeleted
		}
		dropped, err = s.enqueue(ctx, tx, OutboxLog, tx.outboxCounts(OutboxLog), uuid, cloudID, payload, int64(maxRows), maxBytes)
		return err
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDeleted) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("store: append log %s: %w", uuid, err)
	}
	return dropped, nil
}

// outboxCounts are the rows of one kind in the outbox and their payload
// bytes.
type outboxCounts struct{ rows, bytes int64 }

const (
	countsRead  = `SELECT (SELECT value FROM meta WHERE key = ?), (SELECT value FROM meta WHERE key = ?)`
	countsWrite = `INSERT INTO meta (key, value) VALUES (?, ?), (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`
)

// readCounts reads the counts of kind from meta, or counts the table once
// for a count meta does not have yet.
func readCounts(ctx context.Context, tx *sql.Tx, kind OutboxKind) (outboxCounts, error) {
	var c outboxCounts
	var rows, bytes sql.NullString
	err := tx.QueryRowContext(ctx, countsRead, metaRows(kind), metaBytes(kind)).Scan(&rows, &bytes)
	if err != nil {
		return c, err
	}
	if !rows.Valid || !bytes.Valid {
		err := tx.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox WHERE kind = ?`, string(kind)).Scan(&c.rows, &c.bytes)
		return c, err
	}
	if c.rows, err = strconv.ParseInt(rows.String, 10, 64); err != nil {
		return c, fmt.Errorf("meta %s: %w", metaRows(kind), err)
	}
	if c.bytes, err = strconv.ParseInt(bytes.String, 10, 64); err != nil {
		return c, fmt.Errorf("meta %s: %w", metaBytes(kind), err)
	}
	return c, nil
}

// enqueue inserts one outbox row of kind, with c the kind's counts before
// it, then drops the oldest rows of kind (never the new one) while more than
// maxRows rows or maxBytes payload bytes are queued. It returns how many it
// dropped and keeps the counts on tx.
func (s *Store) enqueue(ctx context.Context, tx *wtx, kind OutboxKind, c outboxCounts, uuid string, cloudID int64, payload []byte, maxRows, maxBytes int64) (int64, error) {
	res, err := tx.stmt(ctx, s.ws.outboxInsert).ExecContext(ctx,
		string(kind), uuid, cloudID, string(payload), s.nowMillis(), len(payload))
	if err != nil {
		return 0, err
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	c.rows++
	c.bytes += int64(len(payload))
	dropped, err := trimOldest(ctx, tx.Tx, kind, &c, maxRows, maxBytes, seq)
	if err != nil {
		return 0, err
	}
	tx.setOutboxCounts(kind, c)
	return dropped, nil
}

// trimOldest deletes the oldest rows of kind, never the row keep, until c
// is within maxRows and maxBytes, and takes them off c. It returns how many
// it deleted.
func trimOldest(ctx context.Context, tx *sql.Tx, kind OutboxKind, c *outboxCounts, maxRows, maxBytes, keep int64) (int64, error) {
	if c.rows <= maxRows && c.bytes <= maxBytes {
		return 0, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT seq, size FROM outbox WHERE kind = ? AND seq <> ? ORDER BY seq`, string(kind), keep)
	if err != nil {
		return 0, err
	}
	var seqs []int64
	rowsLeft, bytesLeft := c.rows, c.bytes
	for (rowsLeft > maxRows || bytesLeft > maxBytes) && rows.Next() {
		var seq, size int64
		if err := rows.Scan(&seq, &size); err != nil {
			rows.Close()
			return 0, err
		}
		seqs = append(seqs, seq)
		rowsLeft--
		bytesLeft -= size
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	list, err := json.Marshal(seqs)
	if err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq IN (SELECT value FROM json_each(?))`, string(list)); err != nil {
		return 0, err
	}
	c.rows, c.bytes = rowsLeft, bytesLeft
	return int64(len(seqs)), nil
}

// OutboxCounters are the outbox's sizes and the report queue's counters.
type OutboxCounters struct {
	// Rows and Bytes (payload bytes) queued, by kind.
	Rows, Bytes map[OutboxKind]int64
	// PatchesMerged counts, since Open, queued reports merged into a newer
	// report of the same device; PatchesDropped those dropped because the
	// report queue was over its byte bound.
	PatchesMerged, PatchesDropped int64
}

// OutboxCounters returns the outbox's sizes and counters. The sizes are
// those of the last committed transaction, kept in memory (and in meta,
// with every change), so that reading them costs no query.
func (s *Store) OutboxCounters(ctx context.Context) (OutboxCounters, error) {
	oc := OutboxCounters{Rows: map[OutboxKind]int64{}, Bytes: map[OutboxKind]int64{},
		PatchesMerged: s.patchesMerged.Load(), PatchesDropped: s.patchesDropped.Load()}
	if err := ctx.Err(); err != nil {
		return oc, err
	}
	counts := s.committedCounts()
	for _, kind := range []OutboxKind{OutboxPatch, OutboxLog} {
		c := counts[kindIndex(kind)]
		oc.Rows[kind], oc.Bytes[kind] = c.rows, c.bytes
	}
	return oc, nil
}

// NextOutboxBytes reads undelivered rows of kind, oldest first: at most
// limit rows, and no more payload bytes than maxBytes, except that the
// oldest row is always read (a row larger than maxBytes goes alone). Rows
// past the cap are not read from the database.
func (s *Store) NextOutboxBytes(ctx context.Context, kind OutboxKind, limit int, maxBytes int64) ([]OutboxRow, error) {
	return s.nextOutbox(ctx, kind, limit, maxBytes)
}

// NextOutbox reads up to limit undelivered rows of kind, oldest first.
func (s *Store) NextOutbox(ctx context.Context, kind OutboxKind, limit int) ([]OutboxRow, error) {
	return s.nextOutbox(ctx, kind, limit, 0)
}

func (s *Store) nextOutbox(ctx context.Context, kind OutboxKind, limit int, maxBytes int64) ([]OutboxRow, error) {
	if err := kind.check(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1
	}
	st, err := s.prepared(ctx, s.r, nextOutbox)
	if err != nil {
		return nil, fmt.Errorf("store: next outbox: %w", err)
	}
	rows, err := st.QueryContext(ctx, string(kind), limit)
	if err != nil {
		return nil, fmt.Errorf("store: next outbox: %w", err)
	}
	defer rows.Close()
	var (
		out   []OutboxRow
		total int64
	)
	for rows.Next() {
		var (
			r       OutboxRow
			payload []byte
			created int64
			size    int64
		)
		// size is read before the payload: a row that would pass the cap
		// ends the batch without its payload being copied.
		if err := rows.Scan(&r.Seq, &r.Kind, &r.DeviceUUID, &r.CloudID, &size, &created, &payload); err != nil {
			return nil, fmt.Errorf("store: next outbox: %w", err)
		}
		if maxBytes > 0 && len(out) > 0 && total+size > maxBytes {
			break
		}
		total += size
		r.Payload = payload
		r.CreatedAt = time.UnixMilli(created)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: next outbox: %w", err)
	}
	return out, nil
}

// AckOutbox deletes the rows of kind with seq ≤ uptoSeq: they were
// delivered (or dropped for good). It returns how many it deleted.
func (s *Store) AckOutbox(ctx context.Context, kind OutboxKind, uptoSeq int64) (int64, error) {
	if err := kind.check(); err != nil {
		return 0, err
	}
	n, err := s.deleteOutbox(ctx, kind, s.ws.outboxDeleteUpTo, uptoSeq)
	if err != nil {
		return 0, fmt.Errorf("store: ack outbox: %w", err)
	}
	return n, nil
}

// Deletions of outbox rows of a kind (the first parameter), returning the
// size of each deleted row.
const (
	outboxDeleteUpTo = `DELETE FROM outbox WHERE kind = ? AND seq <= ? RETURNING size`
	outboxDeleteSeqs = `DELETE FROM outbox WHERE kind = ? AND seq IN (SELECT value FROM json_each(?)) RETURNING size`
)

// deleteOutbox deletes the rows of kind that del (outboxDeleteUpTo or
// outboxDeleteSeqs, with arg) selects and takes them off the counts of
// kind, in one transaction.
func (s *Store) deleteOutbox(ctx context.Context, kind OutboxKind, del *sql.Stmt, arg any) (int64, error) {
	var n int64
	err := s.writeTx(ctx, func(tx *wtx) error {
		tx.changedNoDevice()
		n = 0
		rows, err := tx.stmt(ctx, del).QueryContext(ctx, string(kind), arg)
		if err != nil {
			return err
		}
		var size, bytes int64
		for rows.Next() {
			if err := rows.Scan(&size); err != nil {
				rows.Close()
				return err
			}
			n++
			bytes += size
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		if n > 0 {
			c := tx.outboxCounts(kind)
			c.rows -= n
			c.bytes -= bytes
			tx.setOutboxCounts(kind, c)
		}
		return nil
	})
	return n, err
}

// AckOutboxRows deletes the rows of kind whose seq is in seqs, in one
// transaction: they were delivered (or dropped for good). Unlike
// AckOutbox it acknowledges any subset of the queue, so that rows held back
// (a device whose delivery failed) stay queued while later rows of other
// devices are acknowledged. Seqs of rows already gone are ignored. It
// returns how many rows it deleted.
func (s *Store) AckOutboxRows(ctx context.Context, kind OutboxKind, seqs []int64) (int64, error) {
	if err := kind.check(); err != nil {
		return 0, err
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	list, err := json.Marshal(seqs)
	if err != nil {
		return 0, fmt.Errorf("store: ack outbox rows: %w", err)
	}
	n, err := s.deleteOutbox(ctx, kind, s.ws.outboxDeleteSeqs, string(list))
	if err != nil {
		return 0, fmt.Errorf("store: ack outbox rows: %w", err)
	}
	return n, nil
}

// OutboxDepth is the number of undelivered rows of kind.
func (s *Store) OutboxDepth(ctx context.Context, kind OutboxKind) (int64, error) {
	if err := kind.check(); err != nil {
		return 0, err
	}
	st, err := s.prepared(ctx, s.r, outboxDepth)
	if err != nil {
		return 0, fmt.Errorf("store: outbox depth: %w", err)
	}
	var n int64
	if err := st.QueryRowContext(ctx, string(kind)).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: outbox depth: %w", err)
	}
	return n, nil
}

const (
	nextOutbox = `
SELECT seq, kind, device_uuid, cloud_id, size, created_at, payload FROM outbox
WHERE kind = ? ORDER BY seq LIMIT ?`
	outboxDepth = `SELECT COUNT(*) FROM outbox WHERE kind = ?`
)
