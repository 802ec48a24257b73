package fleetview

import (
	"sync"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
)

// Cell is the state of one device as the view shows it: one byte, so that
// the states of a whole fleet travel as one short string.
type Cell byte

// The cell states, each with its colour in the page. A device is in the
// first of these that holds, read from the top.
const (
	// Deleted: the gateway forgot the device (a delete hook, or its
	// reports answered 410 or 404).
	Deleted Cell = 'r'
	// Provisioning: the gateway does not manage the device yet.
	Provisioning Cell = 'p'
	// Offline: the device is unreachable (churn or a reboot).
	Offline Cell = 'o'
	// Downloading and Flashing: an update is under way.
	Downloading Cell = 'd'
	Flashing    Cell = 'f'
	// Failed: the last flash failed (the gateway may try again).
	Failed Cell = 'x'
	// OnTarget: the device runs its app's current release.
	OnTarget Cell = 't'
	// Pending: the device runs another commit, or none, and is not being
	// updated yet.
	Pending Cell = 'w'
)

// Cells lists every cell state in the order the page's legend shows them.
var Cells = []Cell{OnTarget, Downloading, Flashing, Pending, Provisioning, Failed, Offline, Deleted}

// Name is the state's name in the page and in Stats.Counts.
func (c Cell) Name() string {
	switch c {
	case Deleted:
		return "deleted"
	case Provisioning:
		return "provisioning"
	case Offline:
		return "offline"
	case Downloading:
		return "downloading"
	case Flashing:
		return "flashing"
	case Failed:
		return "failed"
	case OnTarget:
		return "on target"
	case Pending:
		return "pending"
	}
	return "unknown"
}

// Limits of what the model keeps.
const (
	// MaxErrors is the number of recent errors kept (and shown).
	MaxErrors = 50
	// maxCommits bounds the commit table; commits beyond it show as "…".
	maxCommits = 1024
	// rateWindow is the span over which rates are computed.
	rateWindow = 5 * time.Second
)

// device is what the model knows of one fleet device.
type device struct {
	uuid     string
	app      int64
	managed  bool
	deleted  bool
	online   bool
	fw       fleet.State
	commit   string // the commit it runs
	working  string // the commit being downloaded, flashed, or that failed
	target   string // the latest update hook's commit
	targetAt time.Time
	failure  string
}

type appInfo struct {
	id         int64
	name       string
	commit     string // the supervisor's current release commit (Apps)
	hookCommit string // the latest update hook's commit, when Apps is not known
	since      time.Time
	devices    int
	onTarget   int
}

// release is the commit the app's devices should run ("" if unknown).
func (a *appInfo) release() string {
	if a.commit != "" {
		return a.commit
	}
	return a.hookCommit
}

// ErrorEntry is one recent error.
type ErrorEntry struct {
	Time    int64  `json:"time"` // Unix milliseconds
	Op      string `json:"op"`
	Device  int    `json:"device"` // fleet index, -1 for none
	Serial  string `json:"serial,omitempty"`
	Message string `json:"message"`
}

// AppStats is one dependent app and its release.
type AppStats struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	Commit   string `json:"commit"`
	Devices  int    `json:"devices"`
	OnTarget int    `json:"onTarget"`
	// Since is when the app's release last changed (Unix ms; 0 unknown).
	Since int64 `json:"since"`
}

// Stats are the fleet's figures at one step.
type Stats struct {
	Time    int64          `json:"time"` // Unix milliseconds
	Devices int            `json:"devices"`
	Counts  map[string]int `json:"counts"`
	Apps    []AppStats     `json:"apps"`
	// Active is the devices managed and not deleted; OnTarget of them run
	// their app's release; Progress is OnTarget/Active (0 with none).
	Active   int     `json:"active"`
	OnTarget int     `json:"onTarget"`
	Progress float64 `json:"progress"`
	// Rate is devices reaching their target per second; HookRate,
	// ReportRate and ErrorRate are per second too, over the last 5 s.
	Rate       float64 `json:"rate"`
	HookRate   float64 `json:"hookRate"`
	ReportRate float64 `json:"reportRate"`
	ErrorRate  float64 `json:"errorRate"`
	// Hooks counts hooks by kind; Reports and ErrorCount are totals.
	Hooks      map[string]uint64 `json:"hooks"`
	Reports    uint64            `json:"reports"`
	ErrorCount uint64            `json:"errorCount"`
	// ErrSeq counts the errors; Errors, newest first, are all those kept
	// (MaxErrors) in a snapshot, and only those since the previous frame
	// in a delta.
	ErrSeq uint64       `json:"errSeq"`
	Errors []ErrorEntry `json:"errors,omitempty"`
}

type sample struct {
	t                             time.Time
	hooks, reports, reached, errs uint64
}

// Model is the view's state of the fleet, fed by the fleet's events
// (Watch) and the gateway's Observer calls, and published by Step as
// frames: a snapshot, or the changes since the previous step. Its memory
// is bounded by the fleet's size: per device a fixed record, plus
// MaxErrors errors and a bounded commit table.
type Model struct {
	now     func() time.Time
	serials []string
	names   []string

	mu         sync.Mutex
	devs       []device
	apps       map[int64]*appInfo
	commitIdx  map[string]int32
	commits    []string
	hooks      map[string]uint64
	hooksTotal uint64
	reports    uint64
	reached    uint64 // transitions into OnTarget
	errCount   uint64
	errs       []ErrorEntry // ring, newest at errs[(errNext-1) mod len]
	errNext    int
	errSeq     uint64
	appsStale  chan struct{} // an update hook named a commit Apps did not
	samples    []sample
	releasedAt time.Time // when an app's release last changed

	// Published: what the last Step sent.
	seq        uint64
	pubStates  []byte
	pubCommits []int32
	pubCommitN int // commit table length at the last step
	pubErrSeq  uint64
	stats      Stats
	snapCache  []byte
	snapSeq    uint64
}

var _ gateway.Observer = (*Model)(nil)

// NewModel returns the model of fleet f with every device provisioning.
func NewModel(f *fleet.Fleet, now func() time.Time) *Model {
	if now == nil {
		now = time.Now
	}
	devs := f.Devices()
	m := &Model{
		now:       now,
		serials:   make([]string, len(devs)),
		names:     make([]string, len(devs)),
		devs:      make([]device, len(devs)),
		apps:      map[int64]*appInfo{},
		commitIdx: map[string]int32{"": 0},
		commits:   []string{""},
		hooks:     map[string]uint64{},
		errs:      make([]ErrorEntry, 0, MaxErrors),
		appsStale: make(chan struct{}, 1),
	}
	for i, d := range devs {
		m.serials[i], m.names[i] = d.Serial, d.Name
		s := d.Snapshot()
		m.devs[i] = device{online: s.Online, fw: s.State, commit: s.Commit, failure: s.Failure}
	}
	m.pubStates = make([]byte, len(devs))
	m.pubCommits = make([]int32, len(devs))
	m.publishLocked(m.now())
	m.samples = nil // the first step's figures are the baseline
	return m
}

// FleetEvent applies a fleet event (pass it to fleet.Watch).
func (m *Model) FleetEvent(e fleet.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.Device < 0 || e.Device >= len(m.devs) {
		return
	}
	d := &m.devs[e.Device]
	switch e.Kind {
	case fleet.EventOnline:
		d.online = true
	case fleet.EventOffline:
		d.online = false
	case fleet.EventState:
		d.fw = e.State
		switch e.State {
		case fleet.StateRunning:
			if e.Commit != "" {
				d.commit = e.Commit
			}
			d.working, d.failure = "", ""
		case fleet.StateDownloading, fleet.StateFlashing:
			d.working = e.Commit
		case fleet.StateFailed:
			if e.Commit != "" {
				d.working = e.Commit
			}
			d.failure = e.Message
		default:
			d.working = ""
		}
	}
}

// DeviceManaged implements gateway.Observer.
func (m *Model) DeviceManaged(index int, uuid string, appID int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if index < 0 || index >= len(m.devs) {
		return
	}
	d := &m.devs[index]
	d.uuid, d.app, d.managed, d.deleted = uuid, appID, true, false
	if m.apps[appID] == nil {
		m.apps[appID] = &appInfo{id: appID}
	}
}

// DeviceForgotten implements gateway.Observer.
func (m *Model) DeviceForgotten(index int, uuid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if index >= 0 && index < len(m.devs) {
		m.devs[index].deleted = true
	}
}

// HookReceived implements gateway.Observer.
func (m *Model) HookReceived(kind string, index int, status int, commit string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hooks[kind]++
	m.hooksTotal++
	if kind != "update" || index < 0 || index >= len(m.devs) || commit == "" {
		return
	}
	d := &m.devs[index]
	d.target, d.targetAt = commit, m.now()
	if a := m.apps[d.app]; a != nil && a.hookCommit != commit {
		a.hookCommit = commit
		if a.commit == "" {
			a.since = d.targetAt
			m.releasedAt = a.since
		}
		if a.commit != commit {
			select { // the supervisor's apps may have a new release
			case m.appsStale <- struct{}{}:
			default:
			}
		}
	}
}

// Reported implements gateway.Observer.
func (m *Model) Reported(index int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reports++
}

// Failed implements gateway.Observer.
func (m *Model) Failed(op string, index int, err error) {
	msg := "unknown error"
	if err != nil {
		msg = err.Error()
	}
	if len(msg) > 400 {
		msg = msg[:400] + "…"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := ErrorEntry{Time: m.now().UnixMilli(), Op: op, Device: index, Message: msg}
	if index >= 0 && index < len(m.serials) {
		e.Serial = m.serials[index]
	} else {
		e.Device = -1
	}
	if len(m.errs) < MaxErrors {
		m.errs = append(m.errs, e)
	} else {
		m.errs[m.errNext] = e
	}
	m.errNext = (m.errNext + 1) % MaxErrors
	m.errSeq++
	m.errCount++
}

// SetApps records the supervisor's dependent apps (GET
// /v1/dependent-apps): their names and current release commits. A
// changed commit starts that app's rollout.
func (m *Model) SetApps(apps []api.App) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for _, a := range apps {
		ai := m.apps[a.ID]
		if ai == nil {
			ai = &appInfo{id: a.ID}
			m.apps[a.ID] = ai
		}
		ai.name = a.Name
		if ai.commit != a.Commit {
			if ai.release() != a.Commit {
				ai.since, m.releasedAt = now, now
			}
			ai.commit = a.Commit
		}
	}
}

// cellLocked is device d's cell state.
func (m *Model) cellLocked(d *device) Cell {
	switch {
	case d.deleted:
		return Deleted
	case !d.managed:
		return Provisioning
	case !d.online:
		return Offline
	}
	switch d.fw {
	case fleet.StateDownloading:
		return Downloading
	case fleet.StateFlashing:
		return Flashing
	case fleet.StateFailed:
		return Failed
	case fleet.StateRunning:
		// The target is the newer of the app's release and the device's
		// latest update hook (which may come before Apps tells of it).
		want := d.target
		if a := m.apps[d.app]; a != nil && a.release() != "" && (d.target == "" || !d.targetAt.After(a.since)) {
			want = a.release()
		}
		if want == "" || d.commit == want {
			return OnTarget
		}
	}
	return Pending
}

// commitLocked is c's index in the commit table. The table's last entry,
// "…", stands for every commit beyond maxCommits.
func (m *Model) commitLocked(c string) int32 {
	if i, ok := m.commitIdx[c]; ok {
		return i
	}
	if len(m.commits) == maxCommits-1 {
		m.commitIdx["…"] = int32(len(m.commits))
		m.commits = append(m.commits, "…")
	}
	if len(m.commits) >= maxCommits {
		return m.commitIdx["…"]
	}
	i := int32(len(m.commits))
	m.commitIdx[c] = i
	m.commits = append(m.commits, c)
	return i
}
