package hooks

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/depharness/depharness/proxy/store"
)

// The schedule: each device's delivery state, in a heap ordered by when its
// next hook is due, rebuilt and refreshed from the store.

// devState is the schedule entry of one device. The scheduler goroutine
// writes every field except memo, and only while no worker has the device
// (inFlight unset); the device's one worker reads them, and owns memo, while
// inFlight is set.
type devState struct {
	uuid     string
	due      time.Time
	index    int // in the heap; -1 when not in it
	inFlight bool
	recheck  bool // the store changed while in flight
	failures int  // consecutive failed deliveries of workKey
	// backoffUntil is when workKey may be retried after failures.
	backoffUntil time.Time
	workKey      workKey
	kind         Kind      // kind owed next, for the pending gauge ("" none)
	lastSent     time.Time // when this run's last hook to it ended (precise)
	mem          *memo     // nil until written (memory): most devices owed a hook never need one
	// work is the device's hook work as read at generation workGen of the
	// store (nil: none kept); a worker uses it instead of reading the
	// device again while the store says the device did not change since.
	work    *store.HookWork
	workGen uint64
	pass    uint64 // the last rebuild that found it owed (runState.pass)
}

// keep records w, read at generation gen, as st's latest hook work, under
// st's own uuid string (every read of the store makes a new one).
func (st *devState) keep(w store.HookWork, gen uint64) {
	w.UUID = st.uuid
	st.work, st.workGen = &w, gen
}

// memory returns st's memo for writing, made on first use.
func (st *devState) memory() *memo {
	if st.mem == nil {
		st.mem = &memo{}
	}
	return st.mem
}

// recall returns st's memo for reading only: a device that never wrote one
// recalls the empty memo, shared by all of them.
func (st *devState) recall() *memo {
	if st.mem == nil {
		return &noMemo
	}
	return st.mem
}

// noMemo is what recall returns for a device without a memo; never written.
var noMemo memo

// memo is per-device worker memory, used only by deliberate violations.
type memo struct {
	lastSentCanon string
	lastSentBody  []byte
	superseded    []byte  // hook-sends-superseded: an older body to send again
	stoppedCanon  string  // hook-202-stops / hook-202-commit-only: target no longer sent
	gaveUpKey     workKey // hook-error-gives-up: work abandoned
	acceptedCanon string  // hook-202-cadence-5x: the target last answered 202
	loopBody      []byte  // hook-202-never-stops: the body last answered 202
	lateKey       workKey // hook-update-late: the work first seen at lateSince
	lateSince     time.Time
	lastKind      Kind // hook-pace-per-kind: the kind last sent
}

// schedule is a min-heap of devices by due time.
type schedule []*devState

func (s schedule) Len() int { return len(s) }

func (s schedule) Less(i, j int) bool { return s[i].due.Before(s[j].due) }

func (s schedule) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].index = i
	s[j].index = j
}

func (s *schedule) Push(x any) {
	st := x.(*devState)
	st.index = len(*s)
	*s = append(*s, st)
}

func (s *schedule) Pop() any {
	old := *s
	st := old[len(old)-1]
	old[len(old)-1] = nil
	st.index = -1
	*s = old[:len(old)-1]
	return st
}

// run state of one Run call.
type runState struct {
	d        *Dispatcher
	devices  map[string]*devState
	heap     schedule
	inFlight int
	results  chan result
	counts   map[Kind]int
	reader   *store.HookWorkReader
	// recent keeps, for devices forgotten with nothing owed, when their
	// last hook ended, while that still paces the next one (HOOK-PACE): the
	// attempt time in the store is written after the answer, and a re-read
	// of the device can come before that write commits (or the write can
	// fail).
	recent      map[string]time.Time
	recentPrune int // len(recent) at which it is next pruned
	// unrecorded: a hook of this run may have been sent without its
	// attempt recorded (see lease.go).
	unrecorded bool

	// readAt is the store generation the schedule was last read at (by
	// rebuild or catchUp): the devices changed since are to be read again.
	readAt uint64

	// The schedule holds at most max devices (Options.MaxScheduled). Past
	// that, owed devices wait in the store (beyond) and fill reads them a
	// page at a time, in row order from cursor, as the schedule drains.
	// Every owed device not held has a row id above cursor or at least
	// skipped (math.MaxInt64: none below cursor).
	max     int
	beyond  bool
	cursor  int64
	skipped int64
	// pass marks the devices a rebuild found owed (devState.pass).
	pass uint64

	lastRebuildEnd  time.Time
	lastRebuildTook time.Duration
}

// newRunState is the state of a run of d with an empty schedule.
func newRunState(d *Dispatcher) *runState {
	return &runState{
		d:       d,
		devices: map[string]*devState{},
		results: make(chan result, d.workers()),
		counts:  map[Kind]int{},
		max:     d.opts.MaxScheduled,
		skipped: math.MaxInt64,
	}
}

// rebuild reads the store's pending hooks into the schedule again: it
// fills the schedule (from the start of the store's rows when it holds
// every owed device, from where it stopped otherwise), then re-reads the
// devices it holds that the fill did not find owed and drops those owed
// nothing any more.
func (rs *runState) rebuild(ctx context.Context) error {
	d := rs.d
	defer rs.timeRead(time.Now())
	gen := d.opts.Store.Generation()
	rs.pass++
	// An unannounced change can make any device owed (row ids start at 1).
	rs.beyond, rs.skipped = true, 1
	if err := rs.fill(ctx, gen); err != nil {
		return err
	}
	var unseen []string
	for u, st := range rs.devices {
		if st.pass != rs.pass {
			unseen = append(unseen, u)
		}
	}
	works, err := d.opts.Store.HookWorksOf(ctx, unseen)
	if err != nil {
		return fmt.Errorf("hooks: read scheduled devices: %w", err)
	}
	now := d.opts.Now()
	for _, u := range unseen {
		st := rs.devices[u]
		if w := works[u]; w != nil && rs.merge(*w, gen, now) {
			continue
		}
		switch {
		case st.inFlight:
			st.recheck = true
		case d.loopsOn(st) && st.index >= 0:
		default:
			rs.forget(st)
		}
	}
	rs.readAt = gen
	return nil
}

// fill merges into the schedule the devices owed a hook in the store, read
// at generation gen, until it holds max devices or none is left: a page at
// a time from the cursor to the last row, then once more from the lowest
// row skipped below where it began, if any. It clears beyond when it read
// every owed device.
func (rs *runState) fill(ctx context.Context, gen uint64) error {
	for {
		room := rs.max - len(rs.devices)
		if room <= 0 {
			rs.beyond = true
			rs.d.metrics.scheduleFull.Set(1)
			return nil
		}
		from := rs.cursor
		works, next, done, err := rs.d.opts.Store.PendingHooksAfter(ctx, from, room)
		if err != nil {
			return fmt.Errorf("hooks: read pending hooks: %w", err)
		}
		now := rs.d.opts.Now()
		for _, w := range works {
			if rs.merge(w, gen, now) {
				if st := rs.devices[w.UUID]; st != nil {
					st.pass = rs.pass
				}
			}
		}
		rs.cursor = next
		if rs.skipped > from {
			// Those rows were read now, or lie above the cursor.
			rs.skipped = math.MaxInt64
		}
		if !done {
			continue
		}
		if rs.skipped != math.MaxInt64 {
			// Devices at or below where this read began may be owed:
			// read again from the lowest of them.
			rs.cursor, rs.skipped = rs.skipped-1, math.MaxInt64
			continue
		}
		rs.beyond = false
		rs.d.metrics.scheduleFull.Set(0)
		return nil
	}
}

// refill tops the schedule up from the store once it has drained to half
// its bound while owed devices wait beyond it.
func (rs *runState) refill(ctx context.Context) {
	if !rs.beyond || len(rs.devices) > rs.max/2 {
		return
	}
	if err := rs.fill(ctx, rs.d.opts.Store.Generation()); err != nil && ctx.Err() == nil {
		rs.d.log.Error("hooks: read pending hooks", "err", err)
	}
}

// catchUp merges into the schedule the devices the store changed since it
// was last read, or rebuilds it when the store cannot tell which changed.
// Its cost is that of the changes, not of every pending device.
func (rs *runState) catchUp(ctx context.Context) error {
	start := time.Now()
	works, at, all, err := rs.d.opts.Store.ChangedHookWork(ctx, rs.readAt)
	if err != nil {
		return fmt.Errorf("hooks: read changed hook work: %w", err)
	}
	if all {
		return rs.rebuild(ctx)
	}
	defer rs.timeRead(start)
	now := rs.d.opts.Now()
	for u, w := range works {
		rs.mergeOne(u, w, at, now)
	}
	rs.readAt = at
	return nil
}

// timeRead records how long a read of the schedule that started at start
// took, which spaces the next one.
func (rs *runState) timeRead(start time.Time) {
	rs.lastRebuildEnd = time.Now()
	rs.lastRebuildTook = rs.lastRebuildEnd.Sub(start)
}

// refresh re-reads one device and merges it into the schedule.
func (rs *runState) refresh(ctx context.Context, uuid string) {
	gen := rs.d.opts.Store.Generation()
	w, err := rs.reader.Read(ctx, uuid)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		if ctx.Err() == nil {
			rs.d.log.Error("hooks: read device hook state", "uuid", uuid, "err", err)
		}
		return
	}
	var wp *store.HookWork
	if err == nil {
		wp = &w
	}
	rs.mergeOne(uuid, wp, gen, rs.d.opts.Now())
}

// mergeOne merges device uuid's hook work w, read at generation gen (nil:
// the device no longer exists), into the schedule.
func (rs *runState) mergeOne(uuid string, w *store.HookWork, gen uint64, now time.Time) {
	if w != nil && rs.merge(*w, gen, now) {
		return
	}
	switch st := rs.devices[uuid]; {
	case st == nil:
	case st.inFlight:
		st.recheck = true
	default:
		rs.forget(st)
	}
}

// merge schedules what w, read at generation gen, says a device is owed;
// it reports whether the device is owed a hook. A device in flight is only
// marked for a re-read when its worker is done.
func (rs *runState) merge(w store.HookWork, gen uint64, now time.Time) bool {
	d := rs.d
	kind, key := d.nextWork(w)
	if kind == "" && d.loopsOn(rs.devices[w.UUID]) {
		kind, key = KindUpdate, loopKey
	}
	if kind == "" {
		return false
	}
	st := rs.devices[w.UUID]
	if st == nil && len(rs.devices) >= rs.max {
		// Owed, but the schedule is full: it waits in the store (fill).
		rs.beyond = true
		rs.skipped = min(rs.skipped, w.Row)
		rs.d.metrics.scheduleFull.Set(1)
		return true
	}
	if st == nil {
		st = &devState{uuid: w.UUID, index: -1, lastSent: rs.recent[w.UUID]}
		delete(rs.recent, w.UUID)
		rs.devices[w.UUID] = st
	}
	if st.inFlight {
		st.recheck = true
		return true
	}
	if st.recall().gaveUpKey == key || (kind == KindUpdate && st.recall().stoppedCanon != "" && st.recall().stoppedCanon == w.UpdateCanonical) {
		rs.forget(st)
		return false
	}
	st.keep(w, gen)
	rs.setKind(st, kind)
	if key != st.workKey || st.index < 0 {
		if key != st.workKey {
			st.workKey = key
			st.failures = 0
			st.backoffUntil = time.Time{}
		}
		due := later(d.earliest(st, w.LastAttempt, now), st.backoffUntil)
		if d.opts.Violations.On("hook-pace-per-kind") && kind != st.recall().lastKind {
			due = now
		}
		rs.place(st, due)
	}
	return true
}

// place (re)schedules st at due.
func (rs *runState) place(st *devState, due time.Time) {
	st.due = due
	if st.index >= 0 {
		heap.Fix(&rs.heap, st.index)
		return
	}
	heap.Push(&rs.heap, st)
}

// forget drops st from the schedule. A device with violation memory stays
// known (unscheduled), so that the violation holds across rebuilds.
func (rs *runState) forget(st *devState) {
	if st.index >= 0 {
		heap.Remove(&rs.heap, st.index)
	}
	rs.setKind(st, "")
	st.workKey = workKey{}
	if st.recall().stoppedCanon == "" && st.recall().gaveUpKey == (workKey{}) && st.recall().loopBody == nil {
		delete(rs.devices, st.uuid)
		if !st.lastSent.IsZero() {
			rs.remember(st.uuid, st.lastSent)
		}
	}
}

// remember keeps when a forgotten device's last hook ended, and drops the
// times that can no longer pace anything (pruned when the map has doubled,
// so each entry is looked at a bounded number of times).
func (rs *runState) remember(uuid string, lastSent time.Time) {
	if rs.recent == nil {
		rs.recent = map[string]time.Time{}
	}
	rs.recent[uuid] = lastSent
	if len(rs.recent) < rs.recentPrune {
		return
	}
	// The longest pace of any mode (cadence-2x doubles it).
	horizon := rs.d.opts.Now().Add(-2 * rs.d.opts.RetryInterval)
	for u, t := range rs.recent {
		if t.Before(horizon) {
			delete(rs.recent, u)
		}
	}
	rs.recentPrune = max(2*len(rs.recent), 64)
}

// setKind moves st between pending-gauge kinds.
func (rs *runState) setKind(st *devState, kind Kind) {
	if st.kind == kind {
		return
	}
	if st.kind != "" {
		rs.counts[st.kind]--
		rs.d.metrics.pending.WithLabelValues(string(st.kind)).Set(float64(rs.counts[st.kind]))
	}
	if kind != "" {
		rs.counts[kind]++
		rs.d.metrics.pending.WithLabelValues(string(kind)).Set(float64(rs.counts[kind]))
	}
	st.kind = kind
}
