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

// Outbox kinds.
const (
	OutboxPatch = "patch" // payload: cloudapi.DevicePatch JSON
	OutboxLog   = "log"   // payload: cloudapi.LogLine JSON
)

// DefaultMaxLogRows bounds the buffered log lines when AppendLog is given no
// bound.
const DefaultMaxLogRows = 100000

// metaLogRows is the meta key of the number of 'log' rows in the outbox,
// kept in the same transactions that change it so that bounding the buffer
// costs no count of the table.
const metaLogRows = "outbox_log_rows"

// OutboxRow is one undelivered report or log line.
type OutboxRow struct {
	Seq        int64
	Kind       string
	DeviceUUID string
	CloudID    int64
	Payload    json.RawMessage
	CreatedAt  time.Time
}

// AppendLog buffers one log line of device uuid (payload: the
// cloudapi.LogLine JSON) and, if more than maxRows lines are then buffered,
// drops the oldest ones; it returns how many it dropped. maxRows ≤ 0 means
// DefaultMaxLogRows. ErrNotFound for an unknown device, ErrDeleted for one
// marked for deletion; nothing is written then.
func (s *Store) AppendLog(ctx context.Context, uuid string, payload []byte, maxRows int) (dropped int64, err error) {
	if maxRows <= 0 {
		maxRows = DefaultMaxLogRows
	}
	if !json.Valid(payload) {
		return 0, errors.New("store: log payload is not JSON")
	}
	var lookup, insert *sql.Stmt
	if lookup, err = s.prepared(ctx, s.w, deviceLookupForWrite); err == nil {
		insert, err = s.prepared(ctx, s.w, outboxInsert)
	}
	if err != nil {
		return 0, fmt.Errorf("store: append log %s: %w", uuid, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		var (
			cloudID int64
			marked  bool
		)
		err := tx.StmtContext(ctx, lookup).QueryRowContext(ctx, uuid).Scan(&cloudID, &marked)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if marked {
			return ErrDeleted
		}
		if _, err := tx.StmtContext(ctx, insert).ExecContext(ctx,
			OutboxLog, uuid, cloudID, string(payload), s.nowMillis()); err != nil {
			return err
		}
		n, err := logRows(ctx, tx)
		if err != nil {
			return err
		}
		if over := n - int64(maxRows); over > 0 {
			res, err := tx.ExecContext(ctx, `
DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE kind = 'log' ORDER BY seq LIMIT ?)`, over)
			if err != nil {
				return err
			}
			if dropped, err = res.RowsAffected(); err != nil {
				return err
			}
			n -= dropped
		}
		return setLogRows(ctx, tx, n)
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDeleted) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("store: append log %s: %w", uuid, err)
	}
	return dropped, nil
}

// logRows is the number of 'log' rows, read from meta, or counted once if
// meta does not have it yet.
func logRows(ctx context.Context, tx *sql.Tx) (int64, error) {
	var v string
	err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, metaLogRows).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		var n int64
		err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE kind = 'log'`).Scan(&n)
		return n, err
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("meta %s: %w", metaLogRows, err)
	}
	return n + 1, nil // the row just inserted
}

func setLogRows(ctx context.Context, tx *sql.Tx, n int64) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
		metaLogRows, strconv.FormatInt(n, 10))
	return err
}

// NextOutbox reads up to limit undelivered rows of kind, oldest first.
func (s *Store) NextOutbox(ctx context.Context, kind string, limit int) ([]OutboxRow, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1
	}
	st, err := s.prepared(ctx, s.r, nextOutbox)
	if err != nil {
		return nil, fmt.Errorf("store: next outbox: %w", err)
	}
	rows, err := st.QueryContext(ctx, kind, limit)
	if err != nil {
		return nil, fmt.Errorf("store: next outbox: %w", err)
	}
	defer rows.Close()
	var out []OutboxRow
	for rows.Next() {
		var (
			r       OutboxRow
			payload string
			created int64
		)
		if err := rows.Scan(&r.Seq, &r.Kind, &r.DeviceUUID, &r.CloudID, &payload, &created); err != nil {
			return nil, fmt.Errorf("store: next outbox: %w", err)
		}
		r.Payload = json.RawMessage(payload)
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
func (s *Store) AckOutbox(ctx context.Context, kind string, uptoSeq int64) (int64, error) {
	if err := checkKind(kind); err != nil {
		return 0, err
	}
	n, err := s.deleteOutbox(ctx, kind, `DELETE FROM outbox WHERE kind = ? AND seq <= ?`, uptoSeq)
	if err != nil {
		return 0, fmt.Errorf("store: ack outbox: %w", err)
	}
	return n, nil
}

// deleteOutbox runs del (a DELETE of outbox rows of kind, with arg as its
// second parameter) and, for log rows, takes what it deleted off the
// durable count of buffered log lines, in one transaction.
func (s *Store) deleteOutbox(ctx context.Context, kind, del string, arg any) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, del, kind, arg)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 || kind != OutboxLog {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE meta SET value = CAST(MAX(CAST(value AS INTEGER) - ?, 0) AS TEXT) WHERE key = ?`, n, metaLogRows)
		return err
	})
	return n, err
}

// AckOutboxRows deletes the rows of kind whose seq is in seqs, in one
// transaction: they were delivered (or dropped for good). Unlike
// AckOutbox it acknowledges any subset of the queue, so that rows held back
// (a device whose delivery failed) stay queued while later rows of other
// devices are acknowledged. Seqs of rows already gone are ignored. It
// returns how many rows it deleted.
func (s *Store) AckOutboxRows(ctx context.Context, kind string, seqs []int64) (int64, error) {
	if err := checkKind(kind); err != nil {
		return 0, err
	}
	if len(seqs) == 0 {
		return 0, nil
	}
	list, err := json.Marshal(seqs)
	if err != nil {
		return 0, fmt.Errorf("store: ack outbox rows: %w", err)
	}
	n, err := s.deleteOutbox(ctx, kind, `DELETE FROM outbox WHERE kind = ? AND seq IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return 0, fmt.Errorf("store: ack outbox rows: %w", err)
	}
	return n, nil
}

// OutboxDepth is the number of undelivered rows of kind.
func (s *Store) OutboxDepth(ctx context.Context, kind string) (int64, error) {
	if err := checkKind(kind); err != nil {
		return 0, err
	}
	st, err := s.prepared(ctx, s.r, outboxDepth)
	if err != nil {
		return 0, fmt.Errorf("store: outbox depth: %w", err)
	}
	var n int64
	if err := st.QueryRowContext(ctx, kind).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: outbox depth: %w", err)
	}
	return n, nil
}

const (
	nextOutbox = `
SELECT seq, kind, device_uuid, cloud_id, payload, created_at FROM outbox
WHERE kind = ? ORDER BY seq LIMIT ?`
	outboxDepth = `SELECT COUNT(*) FROM outbox WHERE kind = ?`
)

func checkKind(kind string) error {
	if kind != OutboxPatch && kind != OutboxLog {
		return fmt.Errorf("store: unknown outbox kind %q", kind)
	}
	return nil
}
