package store

// Dependent apps as the supervisor API sees them: the list of apps with a
// downloaded release (GET /v1/dependent-apps) and the current commit that
// gates the assets endpoint.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// App is one row of the apps table.
type App struct {
	ID        int64
	Name      string
	ParentApp int64
	// Config is the app's configuration from the target, a JSON object ({}
	// when empty).
	Config       json.RawMessage
	TargetCommit *string
	TargetImage  *string
	ReleaseID    *int64
	// CurrentCommit is the downloaded commit whose assets tar is ready; nil
	// when none is yet.
	CurrentCommit *string
	// InTarget is false once the app left the cloud target.
	InTarget bool
}

const appColumns = `SELECT id, name, parent_app, config, target_commit, target_image, release_id, current_commit, in_target FROM apps`

func scanApp(sc interface{ Scan(...any) error }) (App, error) {
	var (
		a                      App
		cfg                    string
		target, image, current sql.NullString
		release                sql.NullInt64
	)
	if err := sc.Scan(&a.ID, &a.Name, &a.ParentApp, &cfg, &target, &image, &release, &current, &a.InTarget); err != nil {
		return App{}, err
	}
	a.Config = objectOrEmpty(cfg)
	a.TargetCommit = nullStringPtr(target)
	a.TargetImage = nullStringPtr(image)
	if release.Valid {
		r := release.Int64
		a.ReleaseID = &r
	}
	a.CurrentCommit = nullStringPtr(current)
	return a, nil
}

// ListCurrentApps reads the dependent apps of the target that have a
// downloaded release (APP-LIST-1), by id. An app whose newer release is still
// downloading shows its previous commit.
func (s *Store) ListCurrentApps(ctx context.Context) ([]App, error) {
	return queryAll(ctx, s.r, "list apps", appColumns+` WHERE current_commit IS NOT NULL AND in_target = 1 ORDER BY id`,
		func(rows *sql.Rows) (App, error) { return scanApp(rows) })
}

// AppByID reads one app. ErrNotFound if there is none.
func (s *Store) AppByID(ctx context.Context, id int64) (App, error) {
	a, err := scanApp(s.r.QueryRowContext(ctx, appColumns+` WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return App{}, ErrNotFound
	}
	if err != nil {
		return App{}, fmt.Errorf("store: app %d: %w", id, err)
	}
	return a, nil
}
