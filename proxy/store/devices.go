package store

// Dependent devices as the supervisor API sees them: provisioning, lookup
// and listing (the gateway's reports are in reports.go).

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrDeleted is returned for a device that is marked for deletion (awaiting
// the gateway's acknowledgement of the delete hook): the API answers 410.
var ErrDeleted = errors.New("store: device marked for deletion")

// Device is one row of the devices table, every column, plus the current
// (downloaded) commit of its app: the API's DeviceView and the columns only
// the proxy reads.
type Device struct {
	DeviceView
	Note             *string
	InTarget         bool
	RestartRequested int64
	RestartAcked     int64
	// UpdateAcked is the canonical JSON of the last acknowledged update
	// target; nil when none.
	UpdateAcked *string
	// HookLastAt is when a hook was last sent (zero: never).
	HookLastAt time.Time
	// TargetChangedAt is when the current update target appeared (zero:
	// unknown).
	TargetChangedAt time.Time
	CreatedAt       time.Time
}

const deviceColumns = `
SELECT d.id, d.uuid, d.app_id, d.device_type, d.logs_channel, d.cloud_id, d.name, d.note, d.status,
       d.is_online, d.download_progress, d.reported_commit, d.environment, d.config,
       d.target_environment, d.target_config, d.in_target, d.marked_for_delete,
       d.restart_requested, d.restart_acked, d.update_acked, d.hook_last_at, d.target_changed_at,
       d.created_at, a.current_commit
FROM devices d LEFT JOIN apps a ON a.id = d.app_id`

// deviceScanner scans device rows. Its destinations are allocated once and
// reused for every row of a query, which keeps listing many devices cheap.
type deviceScanner struct {
	d                    Device
	logsChannel, note    sql.NullString
	isOnline             sql.NullBool
	progress             sql.NullFloat64
	commit, env, cfg     sql.NullString
	targetEnv, targetCfg string
	updateAcked, current sql.NullString
	hookLast, changed    sql.NullInt64
	createdAt            int64
	dest                 []any
}

func newDeviceScanner() *deviceScanner {
	x := &deviceScanner{}
	x.dest = []any{&x.d.ID, &x.d.UUID, &x.d.AppID, &x.d.DeviceType, &x.logsChannel, &x.d.CloudID, &x.d.Name, &x.note, &x.d.Status,
		&x.isOnline, &x.progress, &x.commit, &x.env, &x.cfg,
		&x.targetEnv, &x.targetCfg, &x.d.InTarget, &x.d.MarkedForDelete,
		&x.d.RestartRequested, &x.d.RestartAcked, &x.updateAcked, &x.hookLast, &x.changed,
		&x.createdAt, &x.current}
	return x
}

// scan reads one row into a fresh Device.
func (x *deviceScanner) scan(sc interface{ Scan(...any) error }) (Device, error) {
	var d Device
	if err := x.scanInto(sc, &d); err != nil {
		return Device{}, err
	}
	return d, nil
}

// scanInto reads one row into *d, overwriting every field.
func (x *deviceScanner) scanInto(sc interface{ Scan(...any) error }, d *Device) error {
	x.d = Device{}
	if err := sc.Scan(x.dest...); err != nil {
		return err
	}
	*d = x.d
	d.LogsChannel = nullStringPtr(x.logsChannel)
	d.Note = nullStringPtr(x.note)
	if x.isOnline.Valid {
		b := x.isOnline.Bool
		d.IsOnline = &b
	}
	if x.progress.Valid {
		p := x.progress.Float64
		d.DownloadProgress = &p
	}
	d.ReportedCommit = nullStringPtr(x.commit)
	if x.env.Valid {
		d.Environment = json.RawMessage(x.env.String)
	}
	if x.cfg.Valid {
		d.Config = json.RawMessage(x.cfg.String)
	}
	d.TargetEnvironment = objectOrEmpty(x.targetEnv)
	d.TargetConfig = objectOrEmpty(x.targetCfg)
	d.UpdateAcked = nullStringPtr(x.updateAcked)
	if x.hookLast.Valid {
		d.HookLastAt = time.UnixMilli(x.hookLast.Int64)
	}
	if x.changed.Valid {
		d.TargetChangedAt = time.UnixMilli(x.changed.Int64)
	}
	d.CreatedAt = time.UnixMilli(x.createdAt)
	d.AppCurrentCommit = nullStringPtr(x.current)
	return nil
}

const deviceByUUID = deviceColumns + ` WHERE d.uuid = ?`

func scanDevice(sc interface{ Scan(...any) error }) (Device, error) {
	x := scanners.Get().(*deviceScanner)
	defer scanners.Put(x)
	return x.scan(sc)
}

// scanners recycles the scanners of single-row reads (every report and
// provisioning reads its row back).
var scanners = sync.Pool{New: func() any { return newDeviceScanner() }}

// objectOrEmpty is a stored JSON object, with "" and "null" as {}.
func objectOrEmpty(s string) json.RawMessage {
	if s == "" || s == "null" {
		return json.RawMessage("{}")
	}
	return json.RawMessage(s)
}

// NewDevice is a device the gateway just provisioned through the cloud.
type NewDevice struct {
	UUID        string
	AppID       int64
	DeviceType  string
	CloudID     int64
	Name        string
	Note        *string
	LogsChannel *string
	// Status, if empty, is "Provisioned".
	Status string
	// IsOnline and DownloadProgress, if set, are the new device's initial
	// values (nil: null). A device that already exists keeps its own.
	IsOnline         *bool
	DownloadProgress *float64
}

// InsertProvisioned stores a device just provisioned in the cloud and
// returns its row. If the device already exists (the target poll may have
// seen it first and fetched it from the cloud) its identity (app, type,
// cloud id, name, note, logs channel) is updated and the rest kept.
func (s *Store) InsertProvisioned(ctx context.Context, nd NewDevice) (Device, error) {
	if nd.Status == "" {
		nd.Status = "Provisioned"
	}
	var d Device
	err := s.writeTx(ctx, func(tx *wtx) error {
		tx.changedDevice(nd.UUID)
		var err error
		d, err = scanDevice(tx.stmt(ctx, s.ws.provisionUpsert).QueryRowContext(ctx,
			nd.UUID, nd.AppID, nd.DeviceType, nd.LogsChannel, nd.CloudID, nd.Name, nd.Note, nd.Status,
			s.nowMillis(), nd.IsOnline, nd.DownloadProgress))
		return err
	})
	if err != nil {
		return Device{}, fmt.Errorf("store: insert device %s: %w", nd.UUID, err)
	}
	return d, nil
}

// provisionUpsert stores a provisioned device (see InsertProvisioned) and
// returns its row as deviceColumns does.
const provisionUpsert = `
INSERT INTO devices (uuid, app_id, device_type, logs_channel, cloud_id, name, note, status, created_at, is_online, download_progress)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (uuid) DO UPDATE SET
	app_id = excluded.app_id, device_type = excluded.device_type, logs_channel = excluded.logs_channel,
	cloud_id = excluded.cloud_id, name = excluded.name, note = excluded.note
RETURNING ` + deviceReturning

// deviceReturning is the RETURNING list of a write of one device row that
// gives the columns of deviceColumns.
const deviceReturning = `id, uuid, app_id, device_type, logs_channel, cloud_id, name, note, status,
	is_online, download_progress, reported_commit, environment, config,
	target_environment, target_config, in_target, marked_for_delete,
	restart_requested, restart_acked, update_acked, hook_last_at, target_changed_at,
	created_at, (SELECT current_commit FROM apps WHERE apps.id = devices.app_id)`

// DeviceByUUID reads one device, marked for deletion or not. ErrNotFound if
// there is none.
func (s *Store) DeviceByUUID(ctx context.Context, uuid string) (Device, error) {
	st, err := s.prepared(ctx, s.r, deviceByUUID)
	if err != nil {
		return Device{}, fmt.Errorf("store: device %s: %w", uuid, err)
	}
	d, err := scanDevice(st.QueryRowContext(ctx, uuid))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, ErrNotFound
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: device %s: %w", uuid, err)
	}
	return d, nil
}

// ListDevices reads every device, including those marked for deletion, in
// row id order.
func (s *Store) ListDevices(ctx context.Context) ([]Device, error) {
	out := []Device{}
	err := s.EachDevice(ctx, func(d *Device) error {
		out = append(out, *d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EachDevice calls fn for every device, including those marked for
// deletion, in row id order, from one consistent snapshot. *d is reused
// between calls: fn must copy what it keeps. An error from fn stops the
// iteration and is returned.
func (s *Store) EachDevice(ctx context.Context, fn func(d *Device) error) error {
	rows, err := s.r.QueryContext(ctx, deviceColumns+` ORDER BY d.id`)
	if err != nil {
		return fmt.Errorf("store: list devices: %w", err)
	}
	defer rows.Close()
	var (
		d Device
		x = newDeviceScanner()
	)
	for rows.Next() {
		if err := x.scanInto(rows, &d); err != nil {
			return fmt.Errorf("store: list devices: %w", err)
		}
		if err := fn(&d); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: list devices: %w", err)
	}
	return nil
}

// DeviceView is the part of a device row that the supervisor API shows
// (the device object), plus MarkedForDelete.
type DeviceView struct {
	ID          int64 // local row id
	UUID        string
	AppID       int64
	DeviceType  string
	LogsChannel *string
	CloudID     int64 // the cloud's device id
	Name        string
	Status      string
	// IsOnline is nil until the gateway reports it.
	IsOnline         *bool
	DownloadProgress *float64
	// ReportedCommit is nil until the gateway reports a commit.
	ReportedCommit *string
	// Environment and Config are the reported JSON objects; nil until
	// reported.
	Environment json.RawMessage
	Config      json.RawMessage
	// TargetEnvironment and TargetConfig are JSON objects from the cloud
	// target ({} when empty).
	TargetEnvironment json.RawMessage
	TargetConfig      json.RawMessage
	// AppCurrentCommit is apps.current_commit of the device's app: the
	// device's targetCommit. nil when the app has no downloaded commit (or
	// is unknown).
	AppCurrentCommit *string
	MarkedForDelete  bool
}

// View is d's DeviceView.
func (d *Device) View() DeviceView { return d.DeviceView }

// EachDeviceView is EachDevice reading only the DeviceView columns: listing
// every device for the API reads a third fewer columns. *v is reused
// between calls.
func (s *Store) EachDeviceView(ctx context.Context, fn func(v *DeviceView) error) error {
	rows, err := s.r.QueryContext(ctx, deviceViewColumns+` ORDER BY d.id`)
	if err != nil {
		return fmt.Errorf("store: list devices: %w", err)
	}
	if err := scanDeviceViews(rows, fn); err != nil {
		return fmt.Errorf("store: list devices: %w", err)
	}
	return nil
}

// deviceViewColumns selects the DeviceView columns (scanDeviceViews).
const deviceViewColumns = `
SELECT d.id, d.uuid, d.app_id, d.device_type, d.logs_channel, d.cloud_id, d.name, d.status,
       d.is_online, d.download_progress, d.reported_commit, d.environment, d.config,
       d.target_environment, d.target_config, a.current_commit, d.marked_for_delete
FROM devices d LEFT JOIN apps a ON a.id = d.app_id`

// scanDeviceViews calls fn for each row of rows, a query of
// deviceViewColumns, and closes rows. *v is reused between calls.
func scanDeviceViews(rows *sql.Rows, fn func(v *DeviceView) error) error {
	defer rows.Close()
	var (
		v                            DeviceView
		logsChannel, commit, current sql.NullString
		env, cfg                     sql.NullString
		targetEnv, targetCfg         string
		isOnline                     sql.NullBool
		progress                     sql.NullFloat64
	)
	dest := []any{&v.ID, &v.UUID, &v.AppID, &v.DeviceType, &logsChannel, &v.CloudID, &v.Name, &v.Status,
		&isOnline, &progress, &commit, &env, &cfg, &targetEnv, &targetCfg, &current, &v.MarkedForDelete}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		v.LogsChannel = nullStringPtr(logsChannel)
		v.IsOnline = nil
		if isOnline.Valid {
			b := isOnline.Bool
			v.IsOnline = &b
		}
		v.DownloadProgress = nil
		if progress.Valid {
			p := progress.Float64
			v.DownloadProgress = &p
		}
		v.ReportedCommit = nullStringPtr(commit)
		v.Environment, v.Config = nil, nil
		if env.Valid {
			v.Environment = json.RawMessage(env.String)
		}
		if cfg.Valid {
			v.Config = json.RawMessage(cfg.String)
		}
		v.TargetEnvironment = objectOrEmpty(targetEnv)
		v.TargetConfig = objectOrEmpty(targetCfg)
		v.AppCurrentCommit = nullStringPtr(current)
		if err := fn(&v); err != nil {
			return err
		}
	}
	return rows.Err()
}
