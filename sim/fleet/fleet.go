// Package fleet simulates dependent devices (microcontrollers behind a
// gateway) from a declarative, seeded Profile: their identities, the time a
// firmware takes to flash, flaky flashes, churn between online and offline,
// and the log lines they produce. A device flashes a firmware tar and
// verifies its checksum; its state machine is idle → downloading → flashing
// → running or failed, orthogonal to online/offline.
//
// All randomness comes from math/rand/v2 generators derived from the
// profile's seed, one stream per device and concern, so a device's
// behaviour does not depend on goroutine scheduling; time comes from
// Options.Now and the standard timers, so under testing/synctest a run is
// reproducible: same seed, same History.
//
// The package knows nothing of HTTP or of the supervisor API: the gateway
// (sim/gateway) moves firmware and reports between the two. It imports only
// the standard library and internal/ctxtime.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/depharness/depharness/internal/ctxtime"
)

// State is a device's firmware state.
type State string

// The firmware states of a device.
const (
	StateIdle        State = "idle"
	StateDownloading State = "downloading"
	StateFlashing    State = "flashing"
	StateRunning     State = "running"
	StateFailed      State = "failed"
)

// States lists every State, in state machine order.
var States = []State{StateIdle, StateDownloading, StateFlashing, StateRunning, StateFailed}

// EventKind is the kind of an Event.
type EventKind string

// Event kinds.
const (
	// EventState: the firmware state changed (State, and Commit when
	// running; Message says why a flash failed).
	EventState EventKind = "state"
	// EventOnline and EventOffline: connectivity changed.
	EventOnline  EventKind = "online"
	EventOffline EventKind = "offline"
	// EventLog: the device produced a log line (Message; System for lines
	// about the device itself, like a reboot).
	EventLog EventKind = "log"
	// EventRestart: a restart began.
	EventRestart EventKind = "restart"
)

// Event is one thing that happened to a device.
type Event struct {
	Time    time.Time
	Device  int // index in the fleet
	Serial  string
	Kind    EventKind
	State   State  `json:",omitempty"`
	Commit  string `json:",omitempty"`
	Message string `json:",omitempty"`
	System  bool   `json:",omitempty"`
}

func (e Event) String() string {
	return fmt.Sprintf("%s #%d %s %s commit=%s %q", e.Time.Format(time.RFC3339Nano), e.Device, e.Kind, e.State, e.Commit, e.Message)
}

// Options configure a Fleet.
type Options struct {
	// Now, if nil, is time.Now. Event times come from it.
	Now func() time.Time
	// Logger, if nil, discards.
	Logger *slog.Logger
	// RecordHistory keeps every event for History (log lines included);
	// off by default, since a large fleet produces many.
	RecordHistory bool
}

// Fleet is a set of simulated devices.
type Fleet struct {
	profile Profile
	now     func() time.Time
	log     *slog.Logger
	devices []*Device

	sums flashedSums
	vars sharedVars

	mu sync.Mutex
	// watchers in the order they were added; replaced, never changed in
	// place, so that emit may call a copy without the lock.
	watchers []watcher
	nextW    int
	record   bool
	history  []Event
}

type watcher struct {
	id int
	fn func(Event)
}

// New builds the fleet of profile p. Devices start idle and online.
func New(p Profile, opts Options) (*Fleet, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	f := &Fleet{profile: p, now: opts.Now, log: opts.Logger, record: opts.RecordHistory}
	if f.now == nil {
		f.now = time.Now
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.log.Info("fleet", "devices", p.Count, "seed", p.Seed)
	master := rand.New(rand.NewPCG(uint64(p.Seed), 0x5eed))
	for i := range p.Count {
		stream := func() rand.PCG { return *rand.NewPCG(master.Uint64(), master.Uint64()) }
		d := &Device{
			Index:  i,
			Serial: fmt.Sprintf("sim-%05d-%08x", i, master.Uint32()),
			fleet:  f,
			state:  StateIdle,
		}
		d.Name = adjectives[master.IntN(len(adjectives))] + "-" + nouns[master.IntN(len(nouns))]
		d.flashSrc, d.churnSrc, d.logSrc = stream(), stream(), stream()
		d.onlineCh = onlineNow
		f.devices = append(f.devices, d)
	}
	return f, nil
}

// onlineNow is the closed channel of every device that has been online
// since the fleet was made.
var onlineNow = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Profile returns the fleet's profile.
func (f *Fleet) Profile() Profile { return f.profile }

// Devices returns the devices in index order.
func (f *Fleet) Devices() []*Device { return append([]*Device(nil), f.devices...) }

// Device returns device i, or nil.
func (f *Fleet) Device(i int) *Device {
	if i < 0 || i >= len(f.devices) {
		return nil
	}
	return f.devices[i]
}

// Watch calls fn for every event from now on, synchronously from the
// goroutine that caused it: fn must not block. The returned function stops
// the calls.
func (f *Fleet) Watch(fn func(Event)) (stop func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextW
	f.nextW++
	f.watchers = append(slices.Clip(f.watchers), watcher{id: id, fn: fn})
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.watchers = slices.DeleteFunc(slices.Clone(f.watchers), func(w watcher) bool { return w.id == id })
	}
}

// History returns the recorded events (Options.RecordHistory) in a
// canonical order: by time, then device, kind, state, commit and message,
// so that events of one instant compare equal between runs whatever the
// scheduling.
func (f *Fleet) History() []Event {
	f.mu.Lock()
	h := append([]Event(nil), f.history...)
	f.mu.Unlock()
	sort.SliceStable(h, func(i, j int) bool {
		a, b := h[i], h[j]
		switch {
		case !a.Time.Equal(b.Time):
			return a.Time.Before(b.Time)
		case a.Device != b.Device:
			return a.Device < b.Device
		case a.Kind != b.Kind:
			return a.Kind < b.Kind
		case a.State != b.State:
			return a.State < b.State
		case a.Commit != b.Commit:
			return a.Commit < b.Commit
		default:
			return a.Message < b.Message
		}
	})
	return h
}

// CountByState returns how many devices are in each state, and how many
// are online.
func (f *Fleet) CountByState() (states map[State]int, online int) {
	states = map[State]int{}
	for _, d := range f.devices {
		st, on := d.Condition()
		states[st]++
		if on {
			online++
		}
	}
	return states, online
}

func (f *Fleet) emit(e Event) {
	f.mu.Lock()
	if f.record {
		f.history = append(f.history, e)
	}
	ws := f.watchers
	f.mu.Unlock()
	for _, w := range ws {
		w.fn(e)
	}
}

// Run drives the devices' churn and log lines until ctx is done, then
// returns nil once every goroutine it started has ended. Call it once.
func (f *Fleet) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	p := f.profile
	for _, d := range f.devices {
		if p.Offline.Probability > 0 {
			wg.Go(func() { d.churn(ctx) })
		}
		if p.LogRate > 0 {
			wg.Go(func() { d.logs(ctx) })
		}
	}
	wg.Wait()
	return nil
}

// Target is what a device is asked to run: the update hook's content.
type Target struct {
	AppID       int64
	Commit      string
	Environment map[string]any
	Config      map[string]any
}

// Firmware is a downloaded release as the gateway hands it to a device.
type Firmware struct {
	AppID  int64
	Commit string
	// Tar is the assets tar; devices read it and never modify it, so one
	// download may be shared by every device. It must not change once
	// handed to a device: the fleet verifies a tar it has seen lately by
	// the checksum it computed then.
	Tar []byte
	// Checksum is Checksum(Tar) as the gateway computed it after download.
	Checksum string
	// Expected is the release's checksum as its publisher states it; empty
	// when unknown. When empty, a device can only check that the tar parses
	// and that what it flashed has the checksum the gateway downloaded.
	Expected string
}

// ErrChecksumMismatch is the cause of a flash whose firmware does not have
// the release's expected checksum.
var ErrChecksumMismatch = errors.New("firmware checksum mismatch")

// ErrFlashFailed is the cause of a flash that failed for no fault of the
// firmware (Profile.FailureProbability): trying again may succeed.
var ErrFlashFailed = errors.New("flash failed")

// ErrBadFirmware is the cause of a flash of a tar that cannot be read.
var ErrBadFirmware = errors.New("firmware is not a readable tar")

// FlashError is an update that left the device failed.
type FlashError struct {
	Commit string
	Err    error // ErrChecksumMismatch, ErrFlashFailed or ErrBadFirmware
	Detail string
}

func (e *FlashError) Error() string {
	return fmt.Sprintf("flashing %s: %v: %s", e.Commit, e.Err, e.Detail)
}
func (e *FlashError) Unwrap() error { return e.Err }

// Device is one simulated dependent device.
type Device struct {
	Index  int
	Serial string
	Name   string

	fleet *Fleet
	// The sources of the device's random draws (flash, churn, logs), held
	// in the device: a large fleet is fewer, larger objects. A rand.Rand
	// holds nothing but its source, so one made for each draw
	// (flashRand, …) draws the same sequence as one kept.
	flashSrc, churnSrc, logSrc rand.PCG
	updMu                      sync.Mutex // serializes Update and Restart

	mu       sync.Mutex
	state    State
	commit   string
	env, cfg map[string]any
	failure  string
	holds    int           // reasons to be offline (churn, reboot)
	onlineCh chan struct{} // closed while online (onlineNow, shared, until the first time offline)
	logSeq   int
}

func (d *Device) flashRand() *rand.Rand { return rand.New(&d.flashSrc) }
func (d *Device) churnRand() *rand.Rand { return rand.New(&d.churnSrc) }
func (d *Device) logRand() *rand.Rand   { return rand.New(&d.logSrc) }

// Snapshot is a device's state at one moment.
type Snapshot struct {
	State       State
	Online      bool
	Commit      string
	Environment map[string]any
	Config      map[string]any
	// Failure says why the last flash failed (State failed).
	Failure string
}

// Snapshot returns the device's current state.
func (d *Device) Snapshot() Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Snapshot{State: d.state, Online: d.holds == 0, Commit: d.commit,
		Environment: maps.Clone(d.env), Config: maps.Clone(d.cfg), Failure: d.failure}
}

// Condition returns the device's firmware state and whether it is online:
// Snapshot's State and Online, without copying its variables.
func (d *Device) Condition() (state State, online bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state, d.holds == 0
}

// Online reports whether the device is online.
func (d *Device) Online() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.holds == 0
}

// Runs reports whether the device is running t.Commit, and whether it runs
// it with t's environment and config too (nil and empty are the same). It
// is Snapshot's answer to that question without copying the variables.
func (d *Device) Runs(t Target) (commit, target bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != StateRunning || d.commit != t.Commit {
		return false, false
	}
	return true, sameVars(d.env, t.Environment) && sameVars(d.cfg, t.Config)
}

func (d *Device) event(kind EventKind, state State, commit, msg string, system bool) Event {
	return Event{Time: d.fleet.now(), Device: d.Index, Serial: d.Serial, Kind: kind, State: state, Commit: commit, Message: msg, System: system}
}

func (d *Device) setState(s State, commit, why string) {
	d.mu.Lock()
	d.state = s
	d.failure = why
	d.mu.Unlock()
	d.fleet.emit(d.event(EventState, s, commit, why, false))
}

// awaitOnline blocks until the device is online or ctx is done.
func (d *Device) awaitOnline(ctx context.Context) error {
	d.mu.Lock()
	ch := d.onlineCh
	d.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hold takes the device offline for one more reason; release undoes it.
func (d *Device) hold() {
	d.mu.Lock()
	d.holds++
	first := d.holds == 1
	if first {
		d.onlineCh = make(chan struct{})
	}
	d.mu.Unlock()
	if first {
		d.fleet.emit(d.event(EventOffline, "", "", "", false))
	}
}

func (d *Device) release() {
	d.mu.Lock()
	d.holds--
	last := d.holds == 0
	if last {
		close(d.onlineCh)
	}
	d.mu.Unlock()
	if last {
		d.fleet.emit(d.event(EventOnline, "", "", "", false))
	}
}

// Update brings the device to target: it waits until the device is online,
// goes downloading while fetch gets the firmware (fetch is the gateway's
// download, possibly shared with other devices), then flashing for a time
// drawn from the profile's FlashTime, then verifies what it flashed and
// ends running target (commit, environment, config) or failed.
//
// Verification: the checksum of the flashed tar must equal fw.Checksum (the
// gateway's, after download) and, when fw.Expected is set, the release's
// expected checksum (ErrChecksumMismatch otherwise); then the flash fails
// with the profile's FailureProbability (ErrFlashFailed). A failed flash
// returns a *FlashError. A fetch error leaves the state as it was and is
// returned as is; so is ctx's error, which may leave the device downloading
// or flashing (it was cut off).
func (d *Device) Update(ctx context.Context, target Target, fetch func(context.Context) (Firmware, error)) error {
	d.updMu.Lock()
	defer d.updMu.Unlock()
	if err := d.awaitOnline(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	prev, prevWhy := d.state, d.failure
	d.mu.Unlock()

	d.setState(StateDownloading, target.Commit, "")
	fw, err := fetch(ctx)
	if err != nil {
		d.setState(prev, "", prevWhy)
		return err
	}
	d.setState(StateFlashing, target.Commit, "")
	flashTime := d.fleet.profile.FlashTime.Sample(d.flashRand())
	flaky := d.flashRand().Float64() < d.fleet.profile.FailureProbability
	if err := ctxtime.Sleep(ctx, flashTime); err != nil {
		return err
	}

	var ferr *FlashError
	sum, err := d.fleet.sums.of(fw.Tar)
	switch {
	case err != nil:
		ferr = &FlashError{Commit: target.Commit, Err: ErrBadFirmware, Detail: err.Error()}
	case sum != fw.Checksum:
		ferr = &FlashError{Commit: target.Commit, Err: ErrChecksumMismatch, Detail: fmt.Sprintf("flashed %s, downloaded %s", sum, fw.Checksum)}
	case fw.Expected != "" && sum != fw.Expected:
		ferr = &FlashError{Commit: target.Commit, Err: ErrChecksumMismatch, Detail: fmt.Sprintf("got %s, want %s", sum, fw.Expected)}
	case flaky:
		ferr = &FlashError{Commit: target.Commit, Err: ErrFlashFailed, Detail: "device did not confirm the write"}
	}
	if ferr != nil {
		d.setState(StateFailed, target.Commit, ferr.Error())
		return ferr
	}
	env, cfg := d.fleet.vars.of(target.Environment), d.fleet.vars.of(target.Config)
	d.mu.Lock()
	d.commit = target.Commit
	d.env, d.cfg = env, cfg
	d.mu.Unlock()
	d.setState(StateRunning, target.Commit, "")
	return nil
}

// ErrNotRunningCommit is Configure's answer when the device does not run
// the target's commit: only a flash can bring it there.
var ErrNotRunningCommit = errors.New("device does not run the target's commit")

// Configure applies target's environment and config to a device that
// already runs target.Commit, without downloading or flashing: it waits
// until the device is online, then takes the new variables and logs a
// system line. A device in any other state is left alone
// (ErrNotRunningCommit); ctx's error is returned as is.
func (d *Device) Configure(ctx context.Context, target Target) error {
	d.updMu.Lock()
	defer d.updMu.Unlock()
	if err := d.awaitOnline(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	if d.state != StateRunning || d.commit != target.Commit {
		d.mu.Unlock()
		return ErrNotRunningCommit
	}
	d.env, d.cfg = d.fleet.vars.of(target.Environment), d.fleet.vars.of(target.Config)
	d.mu.Unlock()
	d.fleet.emit(d.event(EventLog, "", "", "Configuration applied", true))
	return nil
}

// Restart reboots the device: it goes offline for a time drawn from the
// profile's RebootTime, comes back online and logs a system line. Its
// firmware state is unchanged.
func (d *Device) Restart(ctx context.Context) error {
	d.updMu.Lock()
	defer d.updMu.Unlock()
	d.fleet.emit(d.event(EventRestart, "", "", "", false))
	d.hold()
	err := ctxtime.Sleep(ctx, d.fleet.profile.RebootTime.Sample(d.flashRand()))
	d.release()
	if err != nil {
		return err
	}
	d.fleet.emit(d.event(EventLog, "", "", "Device restarted", true))
	return nil
}

// churn: every interval, maybe go offline for a while.
func (d *Device) churn(ctx context.Context) {
	c := d.fleet.profile.Offline
	for {
		if ctxtime.Sleep(ctx, time.Duration(c.Interval)) != nil {
			return
		}
		if d.churnRand().Float64() >= c.Probability {
			continue
		}
		d.hold()
		err := ctxtime.Sleep(ctx, c.Duration.Sample(d.churnRand()))
		d.release()
		if err != nil {
			return
		}
	}
}

// logs: a Poisson process of log lines at the profile's rate, emitted
// while the device is online (an offline device's lines are lost).
func (d *Device) logs(ctx context.Context) {
	rate := d.fleet.profile.LogRate
	for {
		wait := time.Duration(d.logRand().ExpFloat64() / rate * float64(time.Second))
		reading := d.logRand().IntN(1000)
		if ctxtime.Sleep(ctx, wait) != nil {
			return
		}
		d.mu.Lock()
		online := d.holds == 0
		d.logSeq++
		seq := d.logSeq
		d.mu.Unlock()
		if online {
			d.fleet.emit(d.event(EventLog, "", "", fmt.Sprintf("line %d: sensor reading %d", seq, reading), false))
		}
	}
}
