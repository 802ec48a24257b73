package store

// What the writes of one transaction share beyond SQL: the writer's
// prepared statements bound to the transaction once, the outbox counts kept
// in memory (written to meta once per transaction, not once per write), and
// the devices the writes changed (for Store.DeviceChanges). A write that
// fails is undone to its savepoint in SQL and here alike: its function ran
// against a copy of this state taken before it (see committer.runTx).

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
)

// wtx is one write transaction as the write functions see it: the
// *sql.Tx, and the state above.
type wtx struct {
	*sql.Tx
	s *Store
	// bound holds the writer's prepared statements bound to Tx.
	bound map[*sql.Stmt]*sql.Stmt
	// counts are the outbox counts as of the writes that ran so far (the
	// committed ones at the start); dirty marks those to write to meta.
	counts [numOutboxKinds]outboxCounts
	dirty  [numOutboxKinds]bool
	// changed lists the uuids of devices the writes changed, in order;
	// changedAll says a write may have changed any device.
	changed    []string
	changedAll bool
	// declared says whether the running write named the devices it
	// changes (changedDevice, changedNoDevice); a write that did not may
	// have changed any.
	declared bool
	// merged and dropped are the reports merged and dropped by the writes
	// (for OutboxCounters).
	merged, dropped int64
}

// numOutboxKinds is the number of OutboxKinds; kindIndex numbers them.
const numOutboxKinds = 2

func kindIndex(k OutboxKind) int {
	if k == OutboxLog {
		return 1
	}
	return 0
}

// wtxMark is what a write may change of a wtx, for undoing it.
type wtxMark struct {
	counts          [numOutboxKinds]outboxCounts
	dirty           [numOutboxKinds]bool
	changed         int
	changedAll      bool
	merged, dropped int64
}

func (w *wtx) mark() wtxMark {
	w.declared = false
	return wtxMark{counts: w.counts, dirty: w.dirty, changed: len(w.changed), changedAll: w.changedAll, merged: w.merged, dropped: w.dropped}
}

// undo takes back what the write since m did.
func (w *wtx) undo(m wtxMark) {
	w.counts, w.dirty, w.changedAll, w.merged, w.dropped = m.counts, m.dirty, m.changedAll, m.merged, m.dropped
	clear(w.changed[m.changed:])
	w.changed = w.changed[:m.changed]
}

// kept records the end of a write that succeeded.
func (w *wtx) kept() {
	if !w.declared {
		w.changedAll = true
	}
}

// stmt is st, a statement prepared on the writer, bound to the transaction.
func (w *wtx) stmt(ctx context.Context, st *sql.Stmt) *sql.Stmt {
	if b := w.bound[st]; b != nil {
		return b
	}
	b := w.StmtContext(ctx, st)
	if w.bound == nil {
		w.bound = map[*sql.Stmt]*sql.Stmt{}
	}
	w.bound[st] = b
	return b
}

// changedDevice declares that the running write changed device uuid's row
// (or inserted or deleted it).
func (w *wtx) changedDevice(uuid string) {
	w.declared = true
	w.changed = append(w.changed, uuid)
}

// changedNoDevice declares that the running write changes no device row
// beyond those it names with changedDevice.
func (w *wtx) changedNoDevice() { w.declared = true }

// outboxCounts returns the outbox counts of kind as of the running write.
func (w *wtx) outboxCounts(kind OutboxKind) outboxCounts { return w.counts[kindIndex(kind)] }

// setOutboxCounts records new counts of kind, written to meta before the
// transaction commits.
func (w *wtx) setOutboxCounts(kind OutboxKind, c outboxCounts) {
	i := kindIndex(kind)
	w.counts[i] = outboxCounts{rows: max(c.rows, 0), bytes: max(c.bytes, 0)}
	w.dirty[i] = true
}

// flush writes the changed outbox counts to meta, last in the transaction.
func (w *wtx) flush(ctx context.Context) error {
	for _, kind := range []OutboxKind{OutboxPatch, OutboxLog} {
		i := kindIndex(kind)
		if !w.dirty[i] {
			continue
		}
		c := w.counts[i]
		if _, err := w.stmt(ctx, w.s.ws.countsWrite).ExecContext(ctx, metaRows(kind), strconv.FormatInt(c.rows, 10),
			metaBytes(kind), strconv.FormatInt(c.bytes, 10)); err != nil {
			return fmt.Errorf("store: write outbox counts: %w", err)
		}
	}
	return nil
}

// closeBound releases the statements bound to the transaction.
func (w *wtx) closeBound() {
	for _, b := range w.bound {
		b.Close()
	}
	clear(w.bound)
}
