package store

// Group commit. The writes of the Store (Store.write) are queued, and one
// goroutine at a time takes all the writes queued while the previous
// transaction ran (up to maxBatch, oldest first) and runs them in one
// transaction, each inside its own savepoint, and commits once. A write whose
// function fails is rolled back to its savepoint: its caller gets the error,
// the other writes of the batch are kept. A caller returns only once the
// transaction holding its write committed (or failed), so durability is that
// of one transaction per write; what is saved is the fixed cost of BEGIN and
// COMMIT, and the hand-over of the one writer connection between goroutines.
//
// A caller that will write soon (a hook delivery whose request is under way:
// its attempt and outcome) can announce itself (Store.ExpectWrites). While
// fewer writes are queued than callers announced, a batch that holds a
// write of theirs (hook state, Store.writeAnnounced) waits up to
// commitLinger for the others before it starts: a commit costs far more
// than the wait, and writes that arrive one by one would otherwise each pay
// for one. A batch of other writes only never waits.
//
// The writer connection's statements ignore the cancellation of the caller's
// context once they reach SQLite (see detachedConn): interrupting a statement
// that writes rolls back the whole transaction, which would lose the other
// writes of the batch. A caller whose context ends while its write is queued
// gets the context's error and its function never runs; once the function
// started it completes with its batch.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// maxBatch bounds the writes committed in one transaction.
const maxBatch = 256

// commitLinger bounds how long a batch waits for the writes of announced
// callers (Store.ExpectWrites).
const commitLinger = 500 * time.Microsecond

// errClosed is returned by writes submitted after Close.
var errClosed = errors.New("store: closed")

// States of a writeReq.
const (
	reqQueued    int32 = iota
	reqStarted         // fn runs (or ran) in a batch, which answers on done
	reqAbandoned       // fn will not run; done is answered by whoever abandoned it
)

// writeReq is one write, queued until a batch takes it.
type writeReq struct {
	ctx   context.Context
	fn    func(*wtx) error
	state atomic.Int32
	done  chan error // buffered: a batch never waits for a caller
	// announced: a write of the kind announced callers make, for which a
	// batch may wait for theirs.
	announced bool
	err       error // fn's own error, kept until the batch commits
}

// committer is the queue of writes and whoever runs them: the caller of a
// write that finds no transaction under way runs the batch holding its write
// itself (an uncontended write costs no hand-over between goroutines); if
// writes were queued meanwhile, a writer goroutine takes over and runs
// batches until the queue is empty.
type committer struct {
	db *sql.DB
	s  *Store // whose in-memory state the transactions update
	// Savepoint statements, prepared once on db and bound to each batch.
	save, release, rollbackTo *sql.Stmt

	mu      sync.Mutex
	queue   []*writeReq // FIFO; not empty only while active
	active  bool        // a caller or the writer goroutine runs batches
	closed  bool
	drained chan struct{} // closed once inactive after close (nil: nobody waits)

	// expected counts the callers announced by Store.ExpectWrites.
	expected atomic.Int32
	// arrived wakes a batch that lingers for announced writes (capacity 1).
	arrived chan struct{}
	// lingerFor is commitLinger (tests lengthen it).
	lingerFor time.Duration

	// batches and batched count transactions and the writes they held
	// (for tests).
	batches, batched atomic.Int64
	// The generation counters: gen counts finished write transactions (see
	// Store.Generation), pending those that started to commit.
	genCounters
}

// newCommitter prepares the savepoint statements on db.
func newCommitter(s *Store, db *sql.DB) (*committer, error) {
	c := &committer{db: db, s: s, arrived: make(chan struct{}, 1), lingerFor: commitLinger}
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{{&c.save, `SAVEPOINT w`}, {&c.release, `RELEASE w`}, {&c.rollbackTo, `ROLLBACK TO w`}} {
		st, err := db.Prepare(p.q)
		if err != nil {
			c.closeStmts()
			return nil, fmt.Errorf("store: prepare %q: %w", p.q, err)
		}
		*p.st = st
	}
	return c, nil
}

func (c *committer) closeStmts() {
	for _, st := range []*sql.Stmt{c.save, c.release, c.rollbackTo} {
		if st != nil {
			st.Close()
		}
	}
}

// do runs fn in a transaction of the writer and returns its error, or the
// transaction's.
func (c *committer) do(ctx context.Context, fn func(*wtx) error, announced bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1), announced: announced}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errClosed
	}
	c.queue = append(c.queue, r)
	lead := !c.active
	c.active = true
	c.mu.Unlock()
	if !lead {
		select { // wake a batch lingering for this write
		case c.arrived <- struct{}{}:
		default:
		}
	}
	if lead {
		c.lead(true) // the queue was empty: r is in the first batch
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return ctx.Err()
		}
		// Started (it completes with its batch), or abandoned by the
		// writer, which answers.
		return <-r.done
	}
}

// close stops accepting writes and waits until the queued ones are done.
func (c *committer) close() {
	c.mu.Lock()
	c.closed = true
	var drained chan struct{}
	if c.active {
		drained = make(chan struct{})
		c.drained = drained
	}
	c.mu.Unlock()
	if drained != nil {
		<-drained
	}
	c.closeStmts()
}

// lead runs batches of the queue until it is empty. A caller (inline) runs
// one batch only, then leaves the rest to a writer goroutine.
func (c *committer) lead(inline bool) {
	var batch []*writeReq
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.active = false
			if c.drained != nil {
				close(c.drained)
				c.drained = nil
			}
			c.mu.Unlock()
			return
		}
		if inline && batch != nil {
			c.mu.Unlock()
			go c.lead(false)
			return
		}
		if c.shouldLingerLocked() {
			c.mu.Unlock()
			c.linger()
			c.mu.Lock()
		}
		n := min(len(c.queue), maxBatch)
		batch = append(batch[:0], c.queue[:n]...)
		rest := copy(c.queue, c.queue[n:])
		clear(c.queue[rest:])
		c.queue = c.queue[:rest]
		c.mu.Unlock()

		c.runBatch(batch)
		clear(batch)
	}
}

// shouldLingerLocked reports whether the next batch is to wait for the
// writes of announced callers: fewer are queued than announced, and one of
// those queued is of their kind.
func (c *committer) shouldLingerLocked() bool {
	n := len(c.queue)
	if n >= int(c.expected.Load()) || n >= maxBatch {
		return false
	}
	for _, r := range c.queue {
		if r.announced {
			return true
		}
	}
	return false
}

// linger waits, up to lingerFor, until as many writes are queued as
// callers are announced (or maxBatch).
func (c *committer) linger() {
	select { // a wake-up for writes already counted
	case <-c.arrived:
	default:
	}
	t := time.NewTimer(c.lingerFor)
	defer t.Stop()
	for {
		c.mu.Lock()
		n := len(c.queue)
		c.mu.Unlock()
		if n >= int(c.expected.Load()) || n >= maxBatch {
			return
		}
		select {
		case <-c.arrived:
		case <-t.C:
			return
		}
	}
}

// runBatch runs the writes of batch in one transaction (or more, if one is
// lost to an error that rolls the whole transaction back) and answers each.
func (c *committer) runBatch(batch []*writeReq) {
	for len(batch) > 0 {
		batch = c.runTx(batch)
	}
}

// start claims r for running: false if its caller abandoned it or its
// context ended (then it is answered here).
func start(r *writeReq) bool {
	if err := r.ctx.Err(); err != nil {
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			r.done <- err
		}
		return false
	}
	return r.state.CompareAndSwap(reqQueued, reqStarted)
}

// runTx runs a prefix of batch in one transaction and answers its writes;
// it returns the writes it did not get to (when the transaction was lost).
func (c *committer) runTx(batch []*writeReq) (rest []*writeReq) {
	bg := context.Background()
	if len(batch) == 1 { // alone: no savepoint needed
		r := batch[0]
		if !start(r) {
			return nil
		}
		tx, err := c.db.BeginTx(bg, nil)
		if err != nil {
			r.done <- err
			return nil
		}
		c.batches.Add(1)
		c.batched.Add(1)
		w := c.s.newWtx(tx)
		w.mark()
		if err := call(r.fn, w); err != nil {
			tx.Rollback()
			r.done <- err
			return nil
		}
		w.kept()
		if err := w.flush(bg); err != nil {
			tx.Rollback()
			r.done <- err
			return nil
		}
		r.done <- c.commit(w)
		return nil
	}
	tx, err := c.db.BeginTx(bg, nil)
	if err != nil {
		for _, r := range batch {
			if start(r) {
				r.done <- err
			}
		}
		return nil
	}
	c.batches.Add(1)
	w := c.s.newWtx(tx)
	save, release, rollbackTo := tx.StmtContext(bg, c.save), tx.StmtContext(bg, c.release), tx.StmtContext(bg, c.rollbackTo)
	ran := batch[:0:0] // the started writes, in order
	for i, r := range batch {
		if !start(r) {
			continue
		}
		c.batched.Add(1)
		ran = append(ran, r)
		if _, err := save.ExecContext(bg); err != nil {
			return c.lost(tx, ran, err, batch[i+1:])
		}
		m := w.mark()
		if r.err = call(r.fn, w); r.err != nil {
			w.undo(m)
			_, err := rollbackTo.ExecContext(bg)
			if err == nil {
				_, err = release.ExecContext(bg)
			}
			if err != nil {
				return c.lost(tx, ran, fmt.Errorf("%w (rolling back to its savepoint: %w)", r.err, err), batch[i+1:])
			}
			continue
		}
		w.kept()
		if _, err := release.ExecContext(bg); err != nil {
			return c.lost(tx, ran, err, batch[i+1:])
		}
	}
	if err := w.flush(bg); err != nil {
		return c.lost(tx, ran, err, nil)
	}
	err = c.commit(w)
	for _, r := range ran {
		if r.err != nil {
			r.done <- r.err
		} else {
			r.done <- err
		}
		r.err = nil
	}
	return nil
}

// commit commits w, makes what its writes changed in memory the committed
// state, and moves the generation (see Store.Generation), before any of its
// writers is answered.
func (c *committer) commit(w *wtx) error {
	c.pending.Add(1)
	err := w.Commit()
	if err == nil {
		c.s.published(w, c.gen.Load()+1)
	} else {
		c.s.commitFailed(c.gen.Load() + 1)
	}
	c.gen.Add(1)
	return err
}

// lost answers the writes of a transaction that cannot go on (SQLite rolled
// it back, e.g. after an I/O error): the last one with cause, the others with
// an error saying their work was rolled back. The writes not yet started are
// returned for a new transaction.
func (c *committer) lost(tx *sql.Tx, ran []*writeReq, cause error, notStarted []*writeReq) []*writeReq {
	tx.Rollback()
	for i, r := range ran {
		switch {
		case i == len(ran)-1:
			r.done <- cause
		case r.err != nil:
			r.done <- r.err
		default:
			r.done <- fmt.Errorf("store: transaction rolled back by another write's failure: %w", cause)
		}
		r.err = nil
	}
	return notStarted
}

// call runs fn, turning a panic into an error.
func call(fn func(*wtx) error, tx *wtx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: panic in a write: %v\n%s", p, debug.Stack())
		}
	}()
	return fn(tx)
}

// detachedConnector opens the writer's connections as detachedConns.
type detachedConnector struct{ driver.Connector }

// sqliteConn is what the SQLite driver's connections implement and
// database/sql uses.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// sqliteStmt is what the SQLite driver's statements implement.
type sqliteStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

func (c detachedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(sqliteConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("store: driver connection %T lacks context methods", conn)
	}
	return detachedConn{sc}, nil
}

// detachedConn is a connection whose statements run to the end once they
// reached SQLite, whatever happens to the caller's context (which still
// bounds the wait for the connection, in database/sql): SQLite answers an
// interrupted INSERT, UPDATE or DELETE by rolling back the whole
// transaction, which on the writer holds the writes of other callers.
type detachedConn struct{ c sqliteConn }

// Unwrap is the driver's connection.
func (d detachedConn) Unwrap() driver.Conn { return d.c }

func (d detachedConn) Prepare(query string) (driver.Stmt, error) {
	return d.PrepareContext(context.Background(), query)
}

func (d detachedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := d.c.PrepareContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil, err
	}
	ss, ok := st.(sqliteStmt)
	if !ok {
		st.Close()
		return nil, fmt.Errorf("store: driver statement %T lacks context methods", st)
	}
	return detachedStmt{ss}, nil
}

func (d detachedConn) Close() error { return d.c.Close() }

func (d detachedConn) Begin() (driver.Tx, error) {
	return d.BeginTx(context.Background(), driver.TxOptions{})
}

func (d detachedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return d.c.BeginTx(context.WithoutCancel(ctx), opts)
}

func (d detachedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return d.c.ExecContext(context.WithoutCancel(ctx), query, args)
}

func (d detachedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return d.c.QueryContext(context.WithoutCancel(ctx), query, args)
}

func (d detachedConn) Ping(ctx context.Context) error         { return d.c.Ping(ctx) }
func (d detachedConn) ResetSession(ctx context.Context) error { return d.c.ResetSession(ctx) }
func (d detachedConn) IsValid() bool                          { return d.c.IsValid() }

// detachedStmt is a statement of a detachedConn.
type detachedStmt struct{ s sqliteStmt }

func (d detachedStmt) Close() error  { return d.s.Close() }
func (d detachedStmt) NumInput() int { return d.s.NumInput() }

func (d detachedStmt) Exec(args []driver.Value) (driver.Result, error) { return d.s.Exec(args) }

func (d detachedStmt) Query(args []driver.Value) (driver.Rows, error) { return d.s.Query(args) }

func (d detachedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return d.s.ExecContext(context.WithoutCancel(ctx), args)
}

func (d detachedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return d.s.QueryContext(context.WithoutCancel(ctx), args)
}
