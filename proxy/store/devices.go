package store

// Dependent devices as the supervisor API sees them: provisioning, lookup,
// listing, and the gateway's reports (PUT /v1/devices/{uuid}), which are
// stored together with the outbox row that carries them to the cloud.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrDeleted is returned for a device that is marked for deletion (awaiting
// the gateway's acknowledgement of the delete hook): the API answers 410.
var ErrDeleted = errors.New("store: device marked for deletion")

// Device is one row of the devices table, every column, plus the current
// (downloaded) commit of its app.
type Device struct {
	ID          int64 // local row id
	UUID        string
	AppID       int64
	DeviceType  string
	LogsChannel *string
	CloudID     int64 // the cloud's device id
	Name        string
	Note        *string
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
	InTarget          bool
	MarkedForDelete   bool
	RestartRequested  int64
	RestartAcked      int64
	// UpdateAcked is the canonical JSON of the last acknowledged update
	// target; nil when none.
	UpdateAcked *string
	// HookLastAt is when a hook was last sent (zero: never).
	HookLastAt time.Time
	// TargetChangedAt is when the current update target appeared (zero:
	// unknown).
	TargetChangedAt time.Time
	CreatedAt       time.Time
	// AppCurrentCommit is apps.current_commit of the device's app: the
	// device's targetCommit. nil when the app has no downloaded commit (or
	// is unknown).
	AppCurrentCommit *string
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
	return newDeviceScanner().scan(sc)
}

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
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
INSERT INTO devices (uuid, app_id, device_type, logs_channel, cloud_id, name, note, status, created_at, is_online, download_progress)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (uuid) DO UPDATE SET
	app_id = excluded.app_id, device_type = excluded.device_type, logs_channel = excluded.logs_channel,
	cloud_id = excluded.cloud_id, name = excluded.name, note = excluded.note`,
			nd.UUID, nd.AppID, nd.DeviceType, nd.LogsChannel, nd.CloudID, nd.Name, nd.Note, nd.Status,
			s.nowMillis(), nd.IsOnline, nd.DownloadProgress); err != nil {
			return err
		}
		var err error
		d, err = scanDevice(tx.QueryRowContext(ctx, deviceColumns+` WHERE d.uuid = ?`, nd.UUID))
		return err
	})
	if err != nil {
		return Device{}, fmt.Errorf("store: insert device %s: %w", nd.UUID, err)
	}
	return d, nil
}

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
// (the device object), plus MarkedForDelete. Field meanings are Device's.
type DeviceView struct {
	ID                int64
	UUID              string
	AppID             int64
	DeviceType        string
	LogsChannel       *string
	CloudID           int64
	Name              string
	Status            string
	IsOnline          *bool
	DownloadProgress  *float64
	ReportedCommit    *string
	Environment       json.RawMessage
	Config            json.RawMessage
	TargetEnvironment json.RawMessage
	TargetConfig      json.RawMessage
	AppCurrentCommit  *string
	MarkedForDelete   bool
}

// View is d's DeviceView.
func (d *Device) View() DeviceView {
	return DeviceView{
		ID: d.ID, UUID: d.UUID, AppID: d.AppID, DeviceType: d.DeviceType, LogsChannel: d.LogsChannel,
		CloudID: d.CloudID, Name: d.Name, Status: d.Status, IsOnline: d.IsOnline,
		DownloadProgress: d.DownloadProgress, ReportedCommit: d.ReportedCommit,
		Environment: d.Environment, Config: d.Config,
		TargetEnvironment: d.TargetEnvironment, TargetConfig: d.TargetConfig,
		AppCurrentCommit: d.AppCurrentCommit, MarkedForDelete: d.MarkedForDelete,
	}
}

// EachDeviceView is EachDevice reading only the DeviceView columns: listing
// every device for the API reads a third fewer columns. *v is reused
// between calls.
func (s *Store) EachDeviceView(ctx context.Context, fn func(v *DeviceView) error) error {
	rows, err := s.r.QueryContext(ctx, `
SELECT d.id, d.uuid, d.app_id, d.device_type, d.logs_channel, d.cloud_id, d.name, d.status,
       d.is_online, d.download_progress, d.reported_commit, d.environment, d.config,
       d.target_environment, d.target_config, a.current_commit, d.marked_for_delete
FROM devices d LEFT JOIN apps a ON a.id = d.app_id ORDER BY d.id`)
	if err != nil {
		return fmt.Errorf("store: list devices: %w", err)
	}
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
			return fmt.Errorf("store: list devices: %w", err)
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
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: list devices: %w", err)
	}
	return nil
}

// Report is what a gateway reports for a device (PUT /v1/devices/{uuid}).
// Nil fields are not reported and not changed. Environment and Config, when
// set, must be JSON objects (the caller validates).
type Report struct {
	Status      *string
	IsOnline    *bool
	Commit      *string
	Environment json.RawMessage
	Config      json.RawMessage
}

// Empty reports whether r reports nothing.
func (r Report) Empty() bool {
	return r.Status == nil && r.IsOnline == nil && r.Commit == nil && r.Environment == nil && r.Config == nil
}

// patchPayload is the JSON of cloudapi.DevicePatch (the store does not
// import the cloud wire package; a test pins the equality).
type patchPayload struct {
	Status     *string `json:"status,omitempty"`
	IsOnline   *bool   `json:"is_online,omitempty"`
	IsOnCommit *string `json:"is_on__commit,omitempty"`
}

// ApplyReport stores r for uuid in one transaction: the reported fields;
// an outbox 'patch' row with status, is_online and commit if r has any of
// them (DEV-PUT-4: environment and config stay local), merged with the
// device's report still queued, if any (DEV-PUT-6, see enqueuePatch); and, when the
// device's reported state now equals its update target, update_acked (so no
// further update hook is sent for that target, HOOK-202). It returns the
// updated device. ErrNotFound for an unknown uuid, ErrDeleted for a device
// marked for deletion; nothing is written then. enqueued tells whether an
// outbox row was added.
func (s *Store) ApplyReport(ctx context.Context, uuid string, r Report) (d Device, enqueued bool, err error) {
	if r.Empty() {
		return Device{}, false, errors.New("store: empty report")
	}
	for name, raw := range map[string]json.RawMessage{"environment": r.Environment, "config": r.Config} {
		if raw != nil && !isJSONObject(raw) {
			return Device{}, false, fmt.Errorf("store: reported %s is not a JSON object", name)
		}
	}
	// Prepared on the writer before the transaction takes its only
	// connection; bound to the transaction inside.
	var stmts [7]*sql.Stmt
	for i, q := range []string{deviceLookupForWrite, applyReportUpdate, outboxInsert, deviceByUUID, updateTargetQuery, setUpdateAcked, queuedPatch} {
		if stmts[i], err = s.prepared(ctx, s.w, q); err != nil {
			return Device{}, false, fmt.Errorf("store: apply report %s: %w", uuid, err)
		}
	}
	cs, err := s.countStmts(ctx)
	if err != nil {
		return Device{}, false, fmt.Errorf("store: apply report %s: %w", uuid, err)
	}
	var (
		merged  bool
		dropped int64
	)
	err = s.write(ctx, func(tx *sql.Tx) error {
		merged, dropped, enqueued = false, 0, false
		var (
			cloudID int64
			marked  bool
		)
		err := tx.StmtContext(ctx, stmts[0]).QueryRowContext(ctx, uuid).Scan(&cloudID, &marked)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if marked {
			return ErrDeleted
		}
		var isOnline any
		if r.IsOnline != nil {
			isOnline = *r.IsOnline
		}
		if _, err := tx.StmtContext(ctx, stmts[1]).ExecContext(ctx,
			r.Status, isOnline, r.Commit, compactOrNil(r.Environment), compactOrNil(r.Config), uuid); err != nil {
			return err
		}
		if r.Status != nil || r.IsOnline != nil || r.Commit != nil {
			if merged, dropped, err = s.enqueuePatch(ctx, tx, stmts[2], stmts[6], cs, uuid, cloudID,
				patchPayload{Status: r.Status, IsOnline: r.IsOnline, IsOnCommit: r.Commit}); err != nil {
				return err
			}
			enqueued = true
		}
		if d, err = scanDevice(tx.StmtContext(ctx, stmts[3]).QueryRowContext(ctx, uuid)); err != nil {
			return err
		}
		t, ok, err := scanUpdateTarget(tx.StmtContext(ctx, stmts[4]).QueryRowContext(ctx, uuid))
		if err != nil || !ok {
			return err
		}
		canon := t.Canonical()
		if d.UpdateAcked != nil && *d.UpdateAcked == canon {
			return nil
		}
		match, err := ReportedMatchesTarget(t, d.ReportedCommit, rawPtr(d.Environment), rawPtr(d.Config))
		if err != nil || !match {
			return err
		}
		if _, err := tx.StmtContext(ctx, stmts[5]).ExecContext(ctx, canon, uuid); err != nil {
			return err
		}
		d.UpdateAcked = &canon
		return nil
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrDeleted) {
		return Device{}, false, err
	}
	if err != nil {
		return Device{}, false, fmt.Errorf("store: apply report %s: %w", uuid, err)
	}
	if merged {
		s.patchesMerged.Add(1)
	}
	s.patchesDropped.Add(dropped)
	return d, enqueued, nil
}

// Statements of ApplyReport (and AppendLog), prepared once.
const (
	deviceLookupForWrite = `SELECT cloud_id, marked_for_delete FROM devices WHERE uuid = ?`
	applyReportUpdate    = `
UPDATE devices SET
	status          = COALESCE(?, status),
	is_online       = COALESCE(?, is_online),
	reported_commit = COALESCE(?, reported_commit),
	environment     = COALESCE(?, environment),
	config          = COALESCE(?, config)
WHERE uuid = ?`
	outboxInsert = `INSERT INTO outbox (kind, device_uuid, cloud_id, payload, created_at, size) VALUES (?, ?, ?, ?, ?, ?)`
	// queuedPatch is a device's queued report, if any (at most one: reports
	// are merged).
	queuedPatch = `SELECT seq, payload FROM outbox WHERE kind = 'patch' AND device_uuid = ? ORDER BY seq DESC LIMIT 1`
)

// isJSONObject reports whether raw is one JSON object (after whitespace).
func isJSONObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && t[0] == '{' && json.Valid(t)
}

// compactOrNil is raw without insignificant whitespace, as a string for
// the database, or nil (SQL NULL) when raw is nil.
func compactOrNil(raw json.RawMessage) any {
	if raw == nil {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

func rawPtr(raw json.RawMessage) *string {
	if raw == nil {
		return nil
	}
	s := string(raw)
	return &s
}

// enqueuePatch queues p for device uuid (DEV-PUT-6). A report of the device
// still queued is merged into it: p's fields win, the queued report's other
// fields are kept, and the merged report replaces the queued one as a new
// row (the old row is deleted). The cloud thus gets the latest value of
// each field, never an older value after a newer one: a report already
// being delivered when it is merged is delivered before the merged row,
// which repeats its fields or carries newer values; acknowledging the old
// row afterwards deletes nothing. The queue is then bounded in bytes: the
// oldest reports of other devices are dropped beyond s.reportQueueBytes.
// It returns whether it merged and how many reports it dropped.
func (s *Store) enqueuePatch(ctx context.Context, tx *sql.Tx, insert, queued *sql.Stmt, cs countStmts, uuid string, cloudID int64, p patchPayload) (merged bool, dropped int64, err error) {
	c, err := readCounts(ctx, tx, cs, OutboxPatch)
	if err != nil {
		return false, 0, err
	}
	var (
		oldSeq  int64
		oldBody string
	)
	err = sql.ErrNoRows
	if !s.unmerged {
		err = tx.StmtContext(ctx, queued).QueryRowContext(ctx, uuid).Scan(&oldSeq, &oldBody)
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return false, 0, err
	default:
		var old patchPayload
		if err := json.Unmarshal([]byte(oldBody), &old); err == nil {
			if p.Status == nil {
				p.Status = old.Status
			}
			if p.IsOnline == nil {
				p.IsOnline = old.IsOnline
			}
			if p.IsOnCommit == nil {
				p.IsOnCommit = old.IsOnCommit
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, oldSeq); err != nil {
			return false, 0, err
		}
		c.rows--
		c.bytes -= int64(len(oldBody))
		merged = true
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return false, 0, err
	}
	res, err := tx.StmtContext(ctx, insert).ExecContext(ctx,
		string(OutboxPatch), uuid, cloudID, string(payload), s.nowMillis(), len(payload))
	if err != nil {
		return false, 0, err
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return false, 0, err
	}
	c.rows++
	c.bytes += int64(len(payload))
	if dropped, err = trimOldest(ctx, tx, OutboxPatch, &c, math.MaxInt64, s.reportQueueBytes, seq); err != nil {
		return false, 0, err
	}
	return merged, dropped, writeCounts(ctx, tx, cs, OutboxPatch, c)
}
