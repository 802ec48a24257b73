package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// stmtCache holds the prepared statements of hot queries, per database
// handle and query text. Preparing a statement costs several times more
// than running it for a one-row lookup, so the API's GET and PUT reuse them.
// The zero value is ready to use; statements live as long as the Store.
type stmtCache struct {
	mu sync.Mutex
	m  map[stmtKey]*sql.Stmt
}

type stmtKey struct {
	db    *sql.DB
	query string
}

// prepared returns the prepared statement of query on db, preparing it on
// first use. It takes a connection of db to prepare: never call it for the
// writer from inside a write transaction (the writer has one connection);
// prepare before, then bind with tx.StmtContext.
func (s *Store) prepared(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	c := &s.stmts
	k := stmtKey{db, query}
	c.mu.Lock()
	st, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[k]; ok { // prepared concurrently: keep one
		st.Close()
		return prev, nil
	}
	if c.m == nil {
		c.m = map[stmtKey]*sql.Stmt{}
	}
	c.m[k] = st
	return st, nil
}

// writerStmts are the statements of the hot writes, prepared on the writer
// at Open and bound to each transaction once (wtx.stmt).
type writerStmts struct {
	countsWrite                          *sql.Stmt
	deviceLookup, reportUpdate, ackedSet *sql.Stmt
	outboxInsert, takeQueuedPatch        *sql.Stmt
	outboxDeleteUpTo, outboxDeleteSeqs   *sql.Stmt
	provisionUpsert                      *sql.Stmt
	hookAttempt, hookTarget, hookAck     *sql.Stmt
	hookRestart, hookRemove              *sql.Stmt
}

// prepareWriter prepares the writer's statements.
func (s *Store) prepareWriter() error {
	ws := &s.ws
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&ws.countsWrite, countsWrite},
		{&ws.deviceLookup, deviceLookupForWrite},
		{&ws.reportUpdate, applyReportUpdate},
		{&ws.ackedSet, setUpdateAcked},
		{&ws.outboxInsert, outboxInsert},
		{&ws.takeQueuedPatch, takeQueuedPatch},
		{&ws.outboxDeleteUpTo, outboxDeleteUpTo},
		{&ws.outboxDeleteSeqs, outboxDeleteSeqs},
		{&ws.provisionUpsert, provisionUpsert},
		{&ws.hookAttempt, qHookAttempt},
		{&ws.hookTarget, updateTargetQuery},
		{&ws.hookAck, qHookAck},
		{&ws.hookRestart, qHookRestart},
		{&ws.hookRemove, qHookRemove},
	} {
		st, err := s.w.Prepare(p.q)
		if err != nil {
			return fmt.Errorf("store: prepare %q: %w", p.q, err)
		}
		*p.st = st
	}
	return nil
}
