package store

// The rows ApplyTarget compares the target with, kept in memory between
// targets: reading every device row inside the write transaction held the
// one writer (and so every report and provisioning) for as long as it took
// to read 100,000 rows. The rows are kept as committed at a generation;
// ApplyTarget, inside its transaction (no other transaction commits
// meanwhile), reads again only the devices changed since (Store.changes),
// through the readers, which see exactly what is committed; devices that
// writes earlier in its own transaction changed are read through the
// transaction into an overlay that is not kept.

import (
	"context"
	"database/sql"
	"encoding/json"
	"slices"

	"github.com/depharness/depharness/internal/jsonstr"
)

// targetMirror is the kept rows. Only write transactions use it, one at a
// time (the committer runs them in turn).
type targetMirror struct {
	ok   bool
	gen  uint64                      // the rows are those committed at gen
	rows map[string]*targetDeviceRow // by uuid
	// stamp marks, on each row, the last ApplyTarget that saw it in the
	// target.
	stamp uint64
	// shared holds one copy of the strings many rows hold alike (target
	// variables, names drawn from a small vocabulary): a million kept rows
	// held a copy each. Forgotten past maxSharedStrings.
	shared map[string]string
}

// maxSharedStrings bounds targetMirror.shared.
const maxSharedStrings = 1 << 16

// keep makes r's strings the shared copies, before r is kept.
func (m *targetMirror) keep(r *targetDeviceRow) {
	if m.shared == nil || len(m.shared) >= maxSharedStrings {
		m.shared = make(map[string]string)
	}
	r.name, r.targetEnv, r.targetCfg = m.share(r.name), m.share(r.targetEnv), m.share(r.targetCfg)
}

func (m *targetMirror) share(v string) string {
	if s, ok := m.shared[v]; ok {
		return s
	}
	m.shared[v] = v
	return v
}

// targetRows is what one ApplyTarget compares with: the kept rows, and the
// rows earlier writes of its transaction changed (nil: deleted).
type targetRows struct {
	kept    map[string]*targetDeviceRow
	overlay map[string]*targetDeviceRow
}

func (r targetRows) get(uuid string) *targetDeviceRow {
	if row, ok := r.overlay[uuid]; ok {
		return row
	}
	return r.kept[uuid]
}

// each calls fn for every row.
func (r targetRows) each(fn func(*targetDeviceRow)) {
	for u, row := range r.kept {
		if _, ok := r.overlay[u]; !ok {
			fn(row)
		}
	}
	for _, row := range r.overlay {
		if row != nil {
			fn(row)
		}
	}
}

// targetRowColumns are the columns of a targetDeviceRow.
const targetRowColumns = `
SELECT uuid, app_id, name, target_environment, target_config, in_target, marked_for_delete,
       restart_requested, restart_acked, created_at
FROM devices`

// scanTargetRows calls fn with each row of rows (a query of
// targetRowColumns) and closes rows.
func scanTargetRows(rows *sql.Rows, fn func(*targetDeviceRow)) error {
	defer rows.Close()
	for rows.Next() {
		r := &targetDeviceRow{}
		if err := rows.Scan(&r.uuid, &r.appID, &r.name, &r.targetEnv, &r.targetCfg, &r.inTarget, &r.marked,
			&r.requested, &r.acked, &r.createdAt); err != nil {
			return err
		}
		fn(r)
	}
	return rows.Err()
}

// targetRowsTx brings the kept rows up to the committed state and reads
// the rows tx's earlier writes changed. It runs inside tx.
func (s *Store) targetRowsTx(ctx context.Context, tx *wtx) (targetRows, error) {
	m := &s.mirror
	gen := s.gc.gen.Load() // no transaction commits while tx runs
	var changed []string
	all := !m.ok
	if !all {
		changed, all = s.changes.since(m.gen)
	}
	if all {
		m.ok = false
		rows, err := s.r.QueryContext(ctx, targetRowColumns)
		if err != nil {
			return targetRows{}, err
		}
		fresh := make(map[string]*targetDeviceRow, len(m.rows))
		if err := scanTargetRows(rows, func(r *targetDeviceRow) { m.keep(r); fresh[r.uuid] = r }); err != nil {
			return targetRows{}, err
		}
		m.rows = fresh
	} else if len(changed) > 0 {
		m.ok = false
		read := map[string]*targetDeviceRow{}
		if err := s.readTargetRows(ctx, nil, changed, read); err != nil {
			return targetRows{}, err
		}
		for _, u := range changed {
			if r := read[u]; r != nil {
				m.keep(r)
				m.rows[u] = r
			} else {
				delete(m.rows, u)
			}
		}
	}
	m.ok, m.gen = true, gen
	out := targetRows{kept: m.rows}
	switch {
	case tx.changedAll:
		// An earlier write of this transaction may have changed any row.
		out.overlay = map[string]*targetDeviceRow{}
		for u := range m.rows {
			out.overlay[u] = nil
		}
		rows, err := tx.QueryContext(ctx, targetRowColumns)
		if err != nil {
			return targetRows{}, err
		}
		if err := scanTargetRows(rows, func(r *targetDeviceRow) { out.overlay[r.uuid] = r }); err != nil {
			return targetRows{}, err
		}
	case len(tx.changed) > 0:
		out.overlay = map[string]*targetDeviceRow{}
		read := map[string]*targetDeviceRow{}
		if err := s.readTargetRows(ctx, tx.Tx, tx.changed, read); err != nil {
			return targetRows{}, err
		}
		for _, u := range tx.changed {
			out.overlay[u] = read[u]
		}
	}
	return out, nil
}

// readTargetRows reads the rows of uuids into out, through tx if not nil,
// else through the readers.
func (s *Store) readTargetRows(ctx context.Context, tx *sql.Tx, uuids []string, out map[string]*targetDeviceRow) error {
	list, err := json.Marshal(uuids)
	if err != nil {
		return err
	}
	q := targetRowColumns + ` WHERE uuid IN (SELECT value FROM json_each(?))`
	var rows *sql.Rows
	if tx != nil {
		rows, err = tx.QueryContext(ctx, q, string(list))
	} else {
		var st *sql.Stmt
		if st, err = s.prepared(ctx, s.r, q); err == nil {
			rows, err = st.QueryContext(ctx, string(list))
		}
	}
	if err != nil {
		return err
	}
	return scanTargetRows(rows, func(r *targetDeviceRow) { out[r.uuid] = r })
}

// canonicalStringMap is the canonical JSON object of m (nil → {}): keys
// sorted, as encoding/json writes a map with HTML escaping off.
func canonicalStringMap(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	keys := make([]string, 0, len(m))
	n := 2
	for k, v := range m {
		keys = append(keys, k)
		n += len(k) + len(v) + 6
	}
	slices.Sort(keys)
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonstr.Append(b, k)
		b = append(b, ':')
		b = jsonstr.Append(b, m[k])
	}
	b = append(b, '}')
	return string(b), nil
}
