// Package store is the reference proxy's durable state: dependent apps,
// dependent devices with their reported and target state, hook state
// (acknowledgements, marks for deletion, restart requests) and the outbox of
// reports and logs still to be delivered to the cloud.
//
// It is SQLite through modernc.org/sqlite (no cgo), in WAL mode with
// synchronous=NORMAL, which keeps every committed transaction across a crash
// of the process (kill -9). There is one writer connection; reads use a
// separate pool. Writes are group-committed: concurrent writes share one
// transaction, each in its own savepoint, and each returns once that
// transaction committed (see groupcommit.go). Schema changes are versioned
// migrations, applied in order at Open.
//
// It depends on the standard library, the SQLite driver and internal/jsonstr
// only; it must not import other proxy packages except api for shared value
// types.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" driver, for the readers
)

// FileName is the database's name inside the data directory.
const FileName = "depharness-proxy.sqlite"

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("store: not found")

// Store is the proxy's database. Its methods are safe for concurrent use.
type Store struct {
	w  *sql.DB    // the one writer connection
	r  *sql.DB    // readers
	gc *committer // runs the writes on w

	closeOnce sync.Once
	now       func() time.Time
	// stmts caches prepared statements of hot queries (see prepared).
	stmts stmtCache
	// ws are the hot writes' statements, prepared on the writer at Open.
	ws writerStmts
	// changes remembers which devices recent transactions changed.
	changes changeLog
	// mirror keeps the rows ApplyTarget compares with (targetrows.go).
	mirror targetMirror

	// countsMu guards counts: the outbox counts as last committed (meta
	// holds the same), which the committer's transactions start from.
	countsMu sync.Mutex
	counts   [numOutboxKinds]outboxCounts

	reportQueueBytes int64
	unmerged         bool
	// patchesMerged and patchesDropped count, since Open, queued reports
	// merged into a newer one and dropped because the queue was full.
	patchesMerged, patchesDropped atomic.Int64
}

// Options tune Open. The zero value is usable.
type Options struct {
	// Now, if nil, is time.Now.
	Now func() time.Time
	// ReportQueueBytes bounds the queued reports ('patch' outbox rows) in
	// payload bytes (default DefaultReportQueueBytes): beyond it the
	// oldest are dropped and counted (OutboxCounters).
	ReportQueueBytes int64
	// KeepReportsUnmerged queues every report as its own row (the
	// behaviour before merging). Only for the self-check violations that
	// need several queued reports of one device (outbox-reorder,
	// outbox-late-older-patch) and for tests of per-device ordering.
	KeepReportsUnmerged bool
}

// Open opens (creating if needed) the database in dir and applies pending
// migrations. dir must exist or be creatable and be writable.
func Open(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(10000)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	wq := url.Values{}
	for k, v := range q {
		wq[k] = v
	}
	wq.Set("_txlock", "immediate")
	wc, err := sqlite.NewConnector("file:" + path + "?" + wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	w := sql.OpenDB(detachedConnector{wc})
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.Ping(); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Store{w: w, now: opts.Now, reportQueueBytes: opts.ReportQueueBytes, unmerged: opts.KeepReportsUnmerged}
	if s.reportQueueBytes <= 0 {
		s.reportQueueBytes = DefaultReportQueueBytes
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.migrate(context.Background()); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: open readers: %w", err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	s.r = r
	if err := s.loadCounts(); err == nil {
		err = s.prepareWriter()
	}
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	if s.gc, err = newCommitter(s, w); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	return s, nil
}

// Close waits for the writes already submitted and closes the database.
// Writes submitted afterwards fail.
func (s *Store) Close() error {
	s.closeOnce.Do(s.gc.close)
	return errors.Join(s.r.Close(), s.w.Close())
}

// migrations are applied in order; the database records how many ran in
// PRAGMA user_version. Append only: never edit a migration that has shipped.
var migrations = []string{
	// 1: initial schema.
	`
CREATE TABLE apps (
	id             INTEGER PRIMARY KEY,         -- dependent app id in the cloud
	name           TEXT    NOT NULL,
	parent_app     INTEGER NOT NULL DEFAULT 0,
	config         TEXT    NOT NULL DEFAULT '{}', -- JSON object, from the target
	target_commit  TEXT,                         -- release commit in the target; NULL: none
	target_image   TEXT,                         -- registry reference of that release
	release_id     INTEGER,
	current_commit TEXT,                         -- downloaded commit whose assets tar is ready; NULL: none
	in_target      INTEGER NOT NULL DEFAULT 1    -- 0 once removed from the cloud target
);

CREATE TABLE devices (
	id                 INTEGER PRIMARY KEY AUTOINCREMENT, -- local row id (api.Device.ID)
	uuid               TEXT    NOT NULL UNIQUE,
	app_id             INTEGER NOT NULL,
	device_type        TEXT    NOT NULL,
	logs_channel       TEXT,
	cloud_id           INTEGER NOT NULL,                  -- api.Device.DeviceID
	name               TEXT    NOT NULL DEFAULT '',
	note               TEXT,
	status             TEXT    NOT NULL DEFAULT '',
	is_online          INTEGER,                           -- NULL, 0 or 1
	download_progress  REAL,
	reported_commit    TEXT,                              -- NULL: never reported
	environment        TEXT,                              -- reported JSON object; NULL: never reported
	config             TEXT,                              -- reported JSON object; NULL: never reported
	target_environment TEXT    NOT NULL DEFAULT '{}',      -- JSON object, from the target
	target_config      TEXT    NOT NULL DEFAULT '{}',      -- JSON object, from the target
	in_target          INTEGER NOT NULL DEFAULT 0,        -- 1 once seen in a cloud target
	marked_for_delete  INTEGER NOT NULL DEFAULT 0,        -- 1: GET/PUT/logs answer 410, delete hook pending
	restart_requested  INTEGER NOT NULL DEFAULT 0,        -- cloud restart counter last seen
	restart_acked      INTEGER NOT NULL DEFAULT 0,        -- restart requests acknowledged by the gateway
	update_acked       TEXT,                              -- canonical JSON of the last acknowledged update target
	hook_last_at       INTEGER,                           -- unix ms of the last hook attempt (pacing)
	target_changed_at  INTEGER,                           -- unix ms the current update target appeared
	created_at         INTEGER NOT NULL                   -- unix ms
);
CREATE INDEX devices_app ON devices(app_id);
CREATE INDEX devices_marked ON devices(marked_for_delete) WHERE marked_for_delete = 1;

-- Reports (kind 'patch') and log lines (kind 'log') accepted from the gateway
-- and not yet delivered to the cloud, in acceptance order.
CREATE TABLE outbox (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	kind        TEXT    NOT NULL CHECK (kind IN ('patch', 'log')),
	device_uuid TEXT    NOT NULL,
	cloud_id    INTEGER NOT NULL,
	payload     TEXT    NOT NULL, -- cloudapi.DevicePatch or cloudapi.LogLine as JSON
	created_at  INTEGER NOT NULL
);
CREATE INDEX outbox_kind_seq ON outbox(kind, seq);

-- Small durable facts: the last target state's ETag, counters.
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`,
	// 2: devices provisioned here and not yet seen in a cloud target.
	`CREATE INDEX devices_unseen ON devices(id) WHERE in_target = 0 AND marked_for_delete = 0;`,
	// 3: outbox rows know their payload's size in bytes (the buffers are
	// bounded in bytes, batches capped in bytes), and a device's queued
	// report is found by its uuid (reports of one device are merged).
	`
ALTER TABLE outbox ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
UPDATE outbox SET size = length(CAST(payload AS BLOB));
CREATE INDEX outbox_kind_device ON outbox(kind, device_uuid, seq);
`,
}

func (s *Store) migrate(ctx context.Context) error {
	var version int
	if err := s.w.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("store: read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("store: database schema version %d is newer than this program's %d", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("store: migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("store: migration %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("store: migration %d: %w", i+1, err)
		}
	}
	return nil
}

// Generation is a number that changes whenever a write may have changed
// the database: it moves after each write transaction ends and before its
// writers are answered. A reader that reads Generation, then the database,
// may reuse what it derived for as long as Generation still returns the
// same number: no write finished in between.
func (s *Store) Generation() uint64 { return s.gc.gen.Load() }

// write runs fn in a write transaction and returns once that transaction
// committed: fn's changes are kept if it returns nil, and undone if it
// returns an error (or panics: that becomes an error). The transaction may
// hold the writes of concurrent callers too, each in its own savepoint, run
// one after the other (fn sees the changes of those before it): fn must not
// depend on being alone in its transaction. If ctx ends before fn started, fn
// is not run and write returns ctx.Err(); once started, fn's statements are
// not interrupted by the end of ctx (see groupcommit.go), though database/sql
// refuses new ones.
func (s *Store) write(ctx context.Context, fn func(*sql.Tx) error) error {
	return s.gc.do(ctx, func(w *wtx) error { return fn(w.Tx) }, false)
}

// writeTx is write for a function that uses what the transaction's writes
// share (see wtx): the writer's prepared statements, the outbox counts, and
// the declaration of the devices it changes (without one, any device may
// have changed).
func (s *Store) writeTx(ctx context.Context, fn func(*wtx) error) error {
	return s.gc.do(ctx, fn, false)
}

// writeAnnounced is write for the writes of callers announced with
// ExpectWrites (hook state): their batch may wait a little for the others'.
func (s *Store) writeAnnounced(ctx context.Context, fn func(*wtx) error) error {
	return s.gc.do(ctx, fn, true)
}

// ExpectWrites announces a caller that will write hook state soon (a hook
// delivery whose request is under way: its attempt and outcome).
// While fewer writes are queued than callers are announced, a batch holding
// hook state waits a little (at most 500 µs) for theirs, so that they share
// one transaction; other writes never wait. Call the returned function once
// the caller is done.
func (s *Store) ExpectWrites() (done func()) {
	s.gc.expected.Add(1)
	var once sync.Once
	return func() { once.Do(func() { s.gc.expected.Add(-1) }) }
}

// loadCounts reads the outbox counts from meta (counting the table for
// those meta does not hold yet).
func (s *Store) loadCounts() error {
	tx, err := s.w.Begin()
	if err != nil {
		return fmt.Errorf("store: read outbox counts: %w", err)
	}
	defer tx.Rollback()
	var counts [numOutboxKinds]outboxCounts
	for _, kind := range []OutboxKind{OutboxPatch, OutboxLog} {
		c, err := readCounts(context.Background(), tx, kind)
		if err != nil {
			return fmt.Errorf("store: read outbox counts: %w", err)
		}
		counts[kindIndex(kind)] = c
	}
	s.countsMu.Lock()
	s.counts = counts
	s.countsMu.Unlock()
	return nil
}

// newWtx starts the shared state of a write transaction from the
// committed state.
func (s *Store) newWtx(tx *sql.Tx) *wtx {
	w := &wtx{Tx: tx, s: s}
	s.countsMu.Lock()
	w.counts = s.counts
	s.countsMu.Unlock()
	return w
}

// published makes the in-memory state of w, a transaction that committed
// and moves the generation to gen, the committed state.
func (s *Store) published(w *wtx, gen uint64) {
	s.countsMu.Lock()
	s.counts = w.counts
	s.countsMu.Unlock()
	s.patchesMerged.Add(w.merged)
	s.patchesDropped.Add(w.dropped)
	s.changes.record(gen, w.changed, w.changedAll)
}

// commitFailed is published for a transaction whose commit failed, moving
// the generation to gen: SQLite normally undid it whole, but nothing in
// memory relies on that: the outbox counts are read again from the
// database, and every device counts as changed (readers read again, the
// rows ApplyTarget keeps are read again).
func (s *Store) commitFailed(gen uint64) {
	s.changes.record(gen, nil, true)
	s.mirror.ok = false
	_ = s.loadCounts() // on failure they stay as they were
}

// committedCounts are the outbox counts as last committed.
func (s *Store) committedCounts() [numOutboxKinds]outboxCounts {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	return s.counts
}

// nowMillis is the store clock in milliseconds since the Unix epoch.
func (s *Store) nowMillis() int64 { return s.now().UnixMilli() }
