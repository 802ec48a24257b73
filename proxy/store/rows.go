package store

import (
	"context"
	"database/sql"
	"fmt"
)

// queryAll runs q on the readers and returns one value per row, read by
// scan, in the query's order (an empty, non-nil slice for no rows). what
// names the query in errors: "store: <what>: …".
func queryAll[T any](ctx context.Context, db *sql.DB, what, q string, scan func(*sql.Rows) (T, error), args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}
