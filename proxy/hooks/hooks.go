// Package hooks is the reference proxy's hook dispatcher: it sends the
// gateway app the update, delete and restart hooks its dependent devices are
// owed (CONTRACT.md HOOK-*), from the durable hook state in proxy/store.
//
// Per device, hooks are serialized (never two in flight), paced (the next
// hook starts at least the retry interval after the previous one ended, also
// across a restart, through the store's hook_last_at) and always carry the
// newest target (the device's state is re-read right before each send). When several kinds are owed, a delete is
// sent first and alone (a marked device is owed nothing else), then restarts,
// then the update: a restart request is a one-shot action the gateway should
// see promptly, while the update hook carries the whole target and is re-sent
// until settled anyway.
//
// Across devices, hooks go out concurrently up to a bound; a failed hook is
// retried with exponential backoff from the retry interval up to a cap, with
// jitter. The schedule is an in-memory heap ordered by next-due time, rebuilt
// from the store at start, on Notify and every RescanInterval (NotifyDevice
// re-reads one device), so a tick never scans the table. Writes of concurrent
// deliveries (attempts, acknowledgements) share transactions through the
// store's group commit.
//
// It depends on proxy/store, proxy/api and proxy/violation; it must not import
// the HTTP API, sync, the cloud client, fakes or the simulator.
package hooks

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/depharness/depharness/proxy/api"
	"github.com/depharness/depharness/proxy/internal/latitude"
	"github.com/depharness/depharness/proxy/store"
	"github.com/depharness/depharness/proxy/violation"
	"github.com/prometheus/client_golang/prometheus"
)

// Store is the hook state the dispatcher needs; *store.Store implements it.
type Store interface {
	PendingHooks(ctx context.Context) ([]store.HookWork, error)
	NewHookWorkReader(ctx context.Context) (*store.HookWorkReader, error)
	WriteHookState(ctx context.Context, ws []store.HookWrite) ([]store.HookWriteResult, error)
	ExpectWrites() (done func())
}

// Defaults of Options.
const (
	DefaultRetryInterval  = 30 * time.Second
	DefaultTimeout        = 30 * time.Second
	DefaultConcurrency    = 16
	DefaultRescanInterval = time.Minute
)

// Options configure a Dispatcher.
type Options struct {
	// Store holds the hook state. Required.
	Store Store
	// BaseAddress is the hook base URL; it must end in '/'. Update and delete
	// hooks go to BaseAddress+uuid, restart hooks to BaseAddress+uuid+"/restart".
	// Empty means api.DefaultHookAddress.
	BaseAddress string
	// RetryInterval is the pacing interval per device and the first backoff
	// step. Zero means DefaultRetryInterval.
	RetryInterval time.Duration
	// Timeout bounds one hook request. Zero means DefaultTimeout.
	Timeout time.Duration
	// Concurrency bounds hooks in flight across devices. Zero means
	// DefaultConcurrency.
	Concurrency int
	// BackoffMax caps the backoff after failures. Zero means 10*RetryInterval.
	BackoffMax time.Duration
	// RescanInterval is how often the schedule is also rebuilt from the
	// store without a Notify, a safety net for changes nobody announced.
	// Zero means DefaultRescanInterval.
	RescanInterval time.Duration
	// HTTPClient, if nil, is a client with a transport that keeps up to
	// Concurrency idle connections to the gateway.
	HTTPClient *http.Client
	// Logger, if nil, discards.
	Logger *slog.Logger
	// Registerer, if nil, registers no metrics.
	Registerer prometheus.Registerer
	// Now, if nil, is time.Now. It must advance with real time: the schedule
	// waits on real timers.
	Now func() time.Time
	// Rand jitters backoff; if nil, a randomly seeded source.
	Rand *rand.Rand
	// Violations enables deliberate contract violations (self-check only).
	Violations violation.Set
}

// Dispatcher sends hooks. Create with New, start with Run, wake with Notify.
type Dispatcher struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	client  *http.Client
	notify  chan struct{}

	mu      sync.Mutex
	dirty   map[string]bool // devices to re-read (NotifyDevice)
	dirtyCh chan struct{}

	// violMu guards violation memory that outlives a device's schedule
	// entry (hook-config-ignored, hook-acks-in-memory).
	violMu   sync.Mutex
	violAcks map[string]string
}

// New checks opts and builds a Dispatcher.
func New(opts Options) (*Dispatcher, error) {
	if opts.Store == nil {
		return nil, errors.New("hooks: Options.Store is required")
	}
	if opts.BaseAddress == "" {
		opts.BaseAddress = api.DefaultHookAddress
	}
	if opts.BaseAddress[len(opts.BaseAddress)-1] != '/' {
		return nil, fmt.Errorf("hooks: base address %q must end in '/'", opts.BaseAddress)
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = DefaultRetryInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Violations.On("hook-timeout-tenth") {
		opts.Timeout /= 10
	}
	if opts.Violations.On("hook-timeout-triple") {
		opts.Timeout *= 3
	}
	if opts.Violations.On("hook-one-device-at-a-time") {
		opts.Concurrency = 1
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 10 * opts.RetryInterval
	}
	if opts.BackoffMax < opts.RetryInterval {
		opts.BackoffMax = opts.RetryInterval
	}
	if opts.RescanInterval <= 0 {
		opts.RescanInterval = DefaultRescanInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := NewMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("hooks: metrics: %w", err)
	}
	client := opts.HTTPClient
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 2 * opts.Concurrency
		tr.MaxIdleConnsPerHost = opts.Concurrency
		tr.DisableKeepAlives = opts.Violations.Allows("no-keepalive")
		client = &http.Client{Transport: tr}
	}
	return &Dispatcher{
		opts:    opts,
		log:     log,
		metrics: m,
		client:  client,
		notify:  make(chan struct{}, 1),
		dirty:   map[string]bool{},
		dirtyCh: make(chan struct{}, 1),

		violAcks: map[string]string{},
	}, nil
}

// Notify tells the dispatcher that hook state changed (a new target, a
// downloaded commit, a device marked for deletion): it rebuilds its schedule
// from the store. It never blocks.
func (d *Dispatcher) Notify() {
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

// NotifyDevice tells the dispatcher that one device's hook state changed
// (e.g. the gateway reported its state): it re-reads that device only. It
// never blocks.
func (d *Dispatcher) NotifyDevice(uuid string) {
	d.mu.Lock()
	d.dirty[uuid] = true
	d.mu.Unlock()
	select {
	case d.dirtyCh <- struct{}{}:
	default:
	}
}

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
	workKey      string
	kind         string    // kind owed next, for the pending gauge ("" none)
	lastSent     time.Time // when this run's last hook to it ended (precise)
	memo         memo
}

// memo is per-device worker memory, used only by deliberate violations.
type memo struct {
	lastSentCanon string
	lastSentBody  []byte
	superseded    []byte // hook-sends-superseded: an older body to send again
	stoppedCanon  string // hook-202-stops / hook-202-commit-only: target no longer sent
	gaveUpKey     string // hook-error-gives-up: work abandoned
	acceptedCanon string // hook-202-cadence-5x: the target last answered 202
	loopBody      []byte // hook-202-never-stops: the body last answered 202
	lateKey       string // hook-update-late: the work first seen at lateSince
	lateSince     time.Time
	lastKind      string // hook-pace-per-kind: the kind last sent
}

// schedule is a min-heap of devices by due time.
type schedule []*devState

func (s schedule) Len() int           { return len(s) }
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

// result is what a worker reports back to the scheduler.
type result struct {
	st        *devState
	sent      bool      // a hook was sent (attempt recorded)
	attempt   time.Time // when its request ended (answer, error or timeout)
	delivered bool      // the hook reached its goal (200, or 202 for an update)
	failed    bool      // not delivered: back off
	notDueAt  time.Time // not sent because pacing: due then
	more      bool      // still owed a hook after this one
	kind      string    // kind owed next if more
	workKey   string    // work key of what is owed next
	stop      bool      // context cancelled
}

// run state of one Run call.
type runState struct {
	d        *Dispatcher
	devices  map[string]*devState
	heap     schedule
	inFlight int
	results  chan result
	counts   map[string]int
	reader   *store.HookWorkReader

	lastRebuildEnd  time.Time
	lastRebuildTook time.Duration
}

// Run dispatches hooks until ctx is done. It returns nil on cancellation and
// an error only if the store cannot be read at start.
func (d *Dispatcher) Run(ctx context.Context) error {
	rs := &runState{
		d:       d,
		devices: map[string]*devState{},
		results: make(chan result, d.opts.Concurrency),
		counts:  map[string]int{},
	}
	for _, k := range []string{KindUpdate, KindDelete, KindRestart} {
		d.metrics.pending.WithLabelValues(k).Set(0)
	}
	reader, err := d.opts.Store.NewHookWorkReader(ctx)
	if err != nil {
		return fmt.Errorf("hooks: %w", err)
	}
	defer reader.Close()
	rs.reader = reader
	if err := rs.rebuild(ctx); err != nil {
		return err
	}
	if d.opts.Violations.On("hook-resume-late") {
		// Owed hooks wait 10 retry intervals after every start.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * d.opts.RetryInterval):
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	rescan := time.NewTicker(d.opts.RescanInterval)
	defer rescan.Stop()
	// A rebuild reads every device: after one that took T, the next waits
	// until 3T have passed, so that a burst of Notify calls costs at most a
	// quarter of the scheduler's time.
	var rebuildAt time.Time
	for {
		if !rebuildAt.IsZero() && !time.Now().Before(rebuildAt) {
			rebuildAt = time.Time{}
			if err := rs.rebuild(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("hooks: rebuild schedule", "err", err)
			}
		}
		rs.launchDue(ctx)
		wait := time.Hour
		if len(rs.heap) > 0 && rs.inFlight < d.opts.Concurrency {
			wait = max(rs.heap[0].due.Sub(d.opts.Now()), 0)
		}
		if !rebuildAt.IsZero() {
			wait = min(wait, max(time.Until(rebuildAt), 0))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			for rs.inFlight > 0 {
				<-rs.results
				rs.inFlight--
			}
			return nil
		case <-d.notify:
			rebuildAt = rs.lastRebuildEnd.Add(3 * rs.lastRebuildTook)
		case <-rescan.C:
			rebuildAt = rs.lastRebuildEnd.Add(3 * rs.lastRebuildTook)
		case <-d.dirtyCh:
			d.mu.Lock()
			dirty := d.dirty
			d.dirty = map[string]bool{}
			d.mu.Unlock()
			for u := range dirty {
				rs.refresh(ctx, u)
			}
		case r := <-rs.results:
			rs.inFlight--
			rs.handle(r)
		case <-timer.C:
		}
	}
}

// rebuild merges the store's pending hooks into the schedule.
func (rs *runState) rebuild(ctx context.Context) error {
	d := rs.d
	start := time.Now()
	defer func() {
		rs.lastRebuildEnd = time.Now()
		rs.lastRebuildTook = rs.lastRebuildEnd.Sub(start)
	}()
	works, err := d.opts.Store.PendingHooks(ctx)
	if err != nil {
		return fmt.Errorf("hooks: read pending hooks: %w", err)
	}
	now := d.opts.Now()
	owed := make(map[string]bool, len(works))
	for _, w := range works {
		if rs.merge(w, now) {
			owed[w.UUID] = true
		}
	}
	for u, st := range rs.devices {
		switch {
		case owed[u]:
		case st.inFlight:
			st.recheck = true
		case d.loopsOn(st) && st.index >= 0:
		default:
			rs.forget(st)
		}
	}
	return nil
}

// refresh re-reads one device and merges it into the schedule.
func (rs *runState) refresh(ctx context.Context, uuid string) {
	w, err := rs.reader.Read(ctx, uuid)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		if ctx.Err() == nil {
			rs.d.log.Error("hooks: read device hook state", "uuid", uuid, "err", err)
		}
		return
	}
	if err == nil && rs.merge(w, rs.d.opts.Now()) {
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

// merge schedules what w says a device is owed; it reports whether the
// device is owed a hook. A device in flight is only marked for a re-read
// when its worker is done.
func (rs *runState) merge(w store.HookWork, now time.Time) bool {
	d := rs.d
	kind, key := d.nextWork(w)
	if kind == "" && d.loopsOn(rs.devices[w.UUID]) {
		kind, key = KindUpdate, loopKey
	}
	if kind == "" {
		return false
	}
	st := rs.devices[w.UUID]
	if st == nil {
		st = &devState{uuid: w.UUID, index: -1}
		rs.devices[w.UUID] = st
	}
	if st.inFlight {
		st.recheck = true
		return true
	}
	if st.memo.gaveUpKey == key || (kind == KindUpdate && st.memo.stoppedCanon != "" && st.memo.stoppedCanon == w.UpdateCanonical) {
		rs.forget(st)
		return false
	}
	rs.setKind(st, kind)
	if key != st.workKey || st.index < 0 {
		if key != st.workKey {
			st.workKey = key
			st.failures = 0
			st.backoffUntil = time.Time{}
		}
		due := later(d.earliest(st, w.LastAttempt, now), st.backoffUntil)
		if d.opts.Violations.On("hook-pace-per-kind") && kind != st.memo.lastKind {
			due = now
		}
		rs.place(st, due)
	}
	return true
}

// earliest is the earliest time, not before now, that the next hook may go
// to st (HOOK-PACE): a retry interval after the last one this run sent, or
// after the attempt stored in the store (stored; from before a restart). The
// stored time is taken before the attempt is written and the request made,
// and kept in milliseconds, so it gets a slack of a tenth of the interval.
func (d *Dispatcher) earliest(st *devState, stored, now time.Time) time.Time {
	if d.opts.Violations.On("hook-no-pacing") {
		return later(now, st.lastSent.Add(d.opts.RetryInterval/10))
	}
	t := now
	if !st.lastSent.IsZero() {
		pace := d.opts.RetryInterval
		if d.opts.Violations.Allows("cadence-2x") {
			pace *= 2 // slower than the reference, within HOOK-202's 3 intervals
		}
		t = later(t, st.lastSent.Add(pace))
	}
	if !stored.IsZero() {
		t = later(t, stored.Add(d.opts.RetryInterval+d.opts.RetryInterval/10+time.Millisecond))
	}
	return t
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
	st.workKey = ""
	if st.memo.stoppedCanon == "" && st.memo.gaveUpKey == "" && st.memo.loopBody == nil {
		delete(rs.devices, st.uuid)
	}
}

// setKind moves st between pending-gauge kinds.
func (rs *runState) setKind(st *devState, kind string) {
	if st.kind == kind {
		return
	}
	if st.kind != "" {
		rs.counts[st.kind]--
		rs.d.metrics.pending.WithLabelValues(st.kind).Set(float64(rs.counts[st.kind]))
	}
	if kind != "" {
		rs.counts[kind]++
		rs.d.metrics.pending.WithLabelValues(kind).Set(float64(rs.counts[kind]))
	}
	st.kind = kind
}

// launchDue starts workers for due devices while the concurrency bound allows.
func (rs *runState) launchDue(ctx context.Context) {
	now := rs.d.opts.Now()
	for len(rs.heap) > 0 && rs.inFlight < rs.d.opts.Concurrency && !rs.heap[0].due.After(now) {
		st := heap.Pop(&rs.heap).(*devState)
		st.inFlight = true
		st.recheck = false
		rs.inFlight++
		go func() { rs.results <- rs.d.deliver(ctx, rs.reader, st) }()
	}
}

// handle applies a worker's result to the schedule.
func (rs *runState) handle(r result) {
	d, st := rs.d, r.st
	st.inFlight = false
	if r.stop {
		return
	}
	if r.sent {
		st.lastSent = r.attempt
	}
	recheck := st.recheck
	st.recheck = false
	if !r.more && !recheck {
		rs.forget(st)
		return
	}
	now := d.opts.Now()
	if r.more {
		if r.workKey != st.workKey {
			st.workKey = r.workKey
			st.failures = 0
			st.backoffUntil = time.Time{}
		}
		rs.setKind(st, r.kind)
		switch {
		case !r.notDueAt.IsZero():
			rs.place(st, r.notDueAt)
		case r.failed:
			st.failures++
			base := st.lastSent
			if base.IsZero() {
				base = now
			}
			st.backoffUntil = later(now, base.Add(d.backoff(st.failures)))
			rs.place(st, st.backoffUntil)
		case d.opts.Violations.On("hook-pace-per-kind") && r.kind != st.memo.lastKind:
			// Another kind is owed: sent at once, paced per kind only.
			rs.place(st, now)
		default:
			if r.delivered {
				st.failures = 0
				st.backoffUntil = time.Time{}
			}
			rs.place(st, d.earliest(st, time.Time{}, now))
		}
	}
	if recheck {
		// The store changed while the hook was in flight: re-read at once.
		// The worker still honours pacing and backoff (backoffUntil).
		rs.place(st, now)
	}
}

// backoff is the delay after the n-th consecutive failure: the retry
// interval doubled per failure up to BackoffMax, jittered by ±20%, never
// below the retry interval nor above BackoffMax. Called from the scheduler
// goroutine only (Rand is not safe for concurrent use).
func (d *Dispatcher) backoff(n int) time.Duration {
	if d.opts.Violations.On("hook-no-pacing") {
		return d.opts.RetryInterval / 10
	}
	if d.opts.Violations.On("hook-no-backoff") {
		return d.opts.RetryInterval
	}
	if d.opts.Violations.On("hook-error-retry-late") {
		return 20 * d.opts.RetryInterval
	}
	b := d.opts.RetryInterval
	for i := 1; i < n && b < d.opts.BackoffMax; i++ {
		b *= 2
	}
	b = min(b, d.opts.BackoffMax)
	if d.opts.Violations.Allows("cadence-2x") {
		// Twice as long, still within HOOK-ERR's 10 retry intervals.
		b = min(2*b, d.opts.BackoffMax)
	}
	j := time.Duration(float64(b) * (0.8 + 0.4*d.opts.Rand.Float64()))
	return min(max(j, d.opts.RetryInterval), d.opts.BackoffMax)
}

// nextWork is the kind of hook w gets next and a key identifying that work
// (a change of key resets backoff). "" when nothing is to be sent.
func (d *Dispatcher) nextWork(w store.HookWork) (kind, key string) {
	v := d.opts.Violations
	switch {
	case w.Delete:
		if v.On("delete-hook-not-sent") {
			return "", ""
		}
		return KindDelete, KindDelete
	case w.RestartsDue > 0 && !v.On("restart-hook-not-sent"):
		return KindRestart, KindRestart
	case w.Update != nil:
		return KindUpdate, KindUpdate + " " + w.UpdateCanonical
	}
	return "", ""
}

// deliver is one worker step for st: re-read what the device is owed, send
// the next hook if pacing allows, record the outcome, re-read what is left.
func (d *Dispatcher) deliver(ctx context.Context, reader *store.HookWorkReader, st *devState) result {
	defer d.opts.Store.ExpectWrites()()
	r := result{st: st}
	w, err := reader.Read(ctx, st.uuid)
	if errors.Is(err, store.ErrNotFound) {
		return r
	}
	if err != nil {
		if ctx.Err() != nil {
			r.stop = true
			return r
		}
		d.log.Error("hooks: read device hook state", "uuid", st.uuid, "err", err)
		r.more, r.failed, r.workKey, r.kind = true, true, st.workKey, st.kind
		return r
	}
	kind, key := d.nextWork(w)
	if kind == KindUpdate && d.violationStopsUpdate(st, w) {
		kind = ""
	}
	looping := false
	if kind == "" && d.loopsOn(st) {
		kind, key, looping = KindUpdate, loopKey, true
	}
	if kind == KindUpdate && !looping && d.violationSkipsUpdate(ctx, st, w) {
		return r
	}
	if kind == "" || st.memo.gaveUpKey == key {
		return r
	}
	now := d.opts.Now()
	p := d.earliest(st, w.LastAttempt, now)
	if key == st.workKey {
		p = later(p, st.backoffUntil)
	}
	if d.opts.Violations.On("hook-pace-per-kind") && kind != st.memo.lastKind {
		p = now
	}
	p = later(p, d.violationDelay(st, kind, key, w, looping, now))
	if p.After(now) {
		r.more, r.kind, r.workKey, r.notDueAt = true, kind, key, p
		return r
	}

	method, url, body := d.request(st, kind, w)
	if looping {
		method, url, body = http.MethodPut, d.opts.BaseAddress+st.uuid, st.memo.loopBody
	}
	st.memo.lastKind = kind
	if _, err := d.writeState(ctx, store.HookWrite{UUID: st.uuid, Attempt: now}); err != nil {
		if ctx.Err() != nil {
			r.stop = true
			return r
		}
		d.log.Error("hooks: record attempt", "uuid", st.uuid, "err", err)
		r.more, r.failed, r.workKey, r.kind = true, true, key, kind
		return r
	}
	status, doneAt, err := d.send(ctx, kind, method, url, body)
	r.sent, r.attempt = true, doneAt
	if err != nil && ctx.Err() != nil {
		r.stop = true
		return r
	}
	outcome := classify(kind, status, err)
	d.metrics.deliveries.WithLabelValues(kind, outcome).Inc()
	d.log.Debug("hooks: sent", "kind", kind, "uuid", st.uuid, "status", status, "outcome", outcome, "err", err)

	acked := false
	switch outcome {
	case OutcomeOK:
		r.delivered = true
		st.memo.loopBody = nil
		acked, err = d.acknowledge(ctx, kind, st, w)
		if err != nil {
			if ctx.Err() != nil {
				r.stop = true
				return r
			}
			d.log.Error("hooks: record acknowledgement", "kind", kind, "uuid", st.uuid, "err", err)
		}
	case OutcomeAccepted:
		r.delivered = true
		if d.opts.Violations.On("hook-202-stops") {
			st.memo.stoppedCanon = w.UpdateCanonical
		}
		if !looping {
			st.memo.acceptedCanon = w.UpdateCanonical
		}
		if d.opts.Violations.On("hook-202-never-stops") {
			st.memo.loopBody = body
		}
	default:
		r.failed = true
		if d.opts.Violations.On("hook-error-gives-up") {
			st.memo.gaveUpKey = key
		}
		lvl := slog.LevelDebug // a gateway that is down would flood the log
		if st.failures == 0 {
			lvl = slog.LevelWarn
		}
		d.log.Log(ctx, lvl, "hooks: not delivered; retrying with backoff", "kind", kind, "uuid", st.uuid, "status", status, "err", err)
	}

	// What is left: w less what was just acknowledged. A change of the
	// store since w was read comes with a Notify, which marks this device
	// for a re-read (recheck).
	next := w
	if acked {
		switch kind {
		case KindDelete:
			return r
		case KindRestart:
			next.RestartsDue--
		case KindUpdate:
			next.Update, next.UpdateCanonical = nil, ""
		}
	} else if outcome == OutcomeOK {
		// Not recorded: superseded in the meantime, or a store failure. Read
		// again before the next send.
		r.more, r.kind, r.workKey = true, kind, key
		return r
	}
	nk, nkey := d.nextWork(next)
	if nk == "" && d.loopsOn(st) {
		nk, nkey = KindUpdate, loopKey
	}
	if nk == "" || st.memo.gaveUpKey == nkey ||
		(nk == KindUpdate && st.memo.stoppedCanon == next.UpdateCanonical) {
		return r
	}
	r.more, r.kind, r.workKey = true, nk, nkey
	return r
}

// violationStopsUpdate applies the violations that end an update loop early.
func (d *Dispatcher) violationStopsUpdate(st *devState, w store.HookWork) bool {
	v := d.opts.Violations
	if st.memo.stoppedCanon != "" && st.memo.stoppedCanon == w.UpdateCanonical {
		return true
	}
	if v.On("hook-202-commit-only") && st.memo.lastSentCanon == w.UpdateCanonical &&
		w.ReportedCommit != nil && *w.ReportedCommit == w.Update.Commit {
		st.memo.stoppedCanon = w.UpdateCanonical
		return true
	}
	return false
}

// request builds the hook request for kind.
func (d *Dispatcher) request(st *devState, kind string, w store.HookWork) (method, url string, body []byte) {
	base := d.opts.BaseAddress + st.uuid
	switch kind {
	case KindDelete:
		return http.MethodDelete, base, nil
	case KindRestart:
		if d.opts.Violations.On("hook-restart-path-wrong") {
			return http.MethodPut, d.opts.BaseAddress + "restart/" + st.uuid, nil
		}
		return http.MethodPut, base + "/restart", nil
	}
	body = []byte(w.UpdateCanonical)
	v := d.opts.Violations
	switch {
	case v.On("hook-202-stale-repeat") && st.memo.lastSentCanon == w.UpdateCanonical:
		h := w.Update.Hook()
		h.Environment, h.Config = api.Vars{}, api.Vars{}
		body, _ = json.Marshal(h)
	case v.On("hook-update-missing-appid"):
		h := w.Update.Hook()
		body, _ = json.Marshal(map[string]any{"commit": h.Commit, "environment": h.Environment, "config": h.Config})
	case v.On("hook-update-stale-env"):
		h := w.Update.Hook()
		h.Environment = w.ReportedEnvironment
		if h.Environment == nil {
			h.Environment = api.Vars{}
		}
		body, _ = json.Marshal(h)
	}
	if v.On("hook-sends-superseded") {
		m := &st.memo
		switch {
		case m.lastSentCanon != "" && m.lastSentCanon != w.UpdateCanonical:
			m.superseded = m.lastSentBody
		case m.superseded != nil && m.lastSentCanon == w.UpdateCanonical:
			old := m.superseded
			m.superseded = nil
			return http.MethodPut, base, old
		}
	}
	if extra, pretty := v.Allows("extra-fields"), v.Allows("pretty-json"); extra || pretty {
		if b, err := latitude.Reshape(body, extra, pretty); err == nil {
			body = b
		}
	}
	st.memo.lastSentCanon, st.memo.lastSentBody = w.UpdateCanonical, body
	return http.MethodPut, base, body
}

// send performs one hook request and returns its status (0 with an error
// when no answer came) and when it ended. Pacing counts from that end, so
// that the gateway never sees two hooks closer than the retry interval, even
// when the first was slow to arrive.
func (d *Dispatcher) send(ctx context.Context, kind, method, url string, body []byte) (int, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, d.opts.Now(), err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		d.metrics.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
		return 0, d.opts.Now(), err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	d.metrics.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	return resp.StatusCode, d.opts.Now(), nil
}

// classify maps an answer to a delivery outcome.
func classify(kind string, status int, err error) string {
	switch {
	case err != nil:
		return OutcomeFailed
	case status == http.StatusOK:
		return OutcomeOK
	case status == http.StatusAccepted && kind == KindUpdate:
		return OutcomeAccepted
	}
	return OutcomeRejected
}

// acknowledge records a 200 answer and reports whether it was recorded (an
// update acknowledged is false if the target changed meanwhile).
func (d *Dispatcher) acknowledge(ctx context.Context, kind string, st *devState, w store.HookWork) (bool, error) {
	hw := store.HookWrite{UUID: st.uuid}
	switch kind {
	case KindDelete:
		hw.RemoveDeleted = true
	case KindRestart:
		hw.AckRestart = true
	default:
		if d.opts.Violations.On("hook-200-repeats") {
			return false, nil
		}
		if d.opts.Violations.On("hook-acks-in-memory") {
			d.violMu.Lock()
			d.violAcks[st.uuid] = w.UpdateCanonical
			d.violMu.Unlock()
			return true, nil
		}
		if d.opts.Violations.On("hook-config-ignored") {
			d.violMu.Lock()
			d.violAcks[st.uuid] = sansConfig(w)
			d.violMu.Unlock()
		}
		hw.AckUpdate = w.UpdateCanonical
	}
	res, err := d.writeState(ctx, hw)
	if err != nil {
		return false, err
	}
	if kind == KindUpdate && res.Done && !res.TargetChangedAt.IsZero() {
		d.metrics.ackLatency.Observe(max(d.opts.Now().Sub(res.TargetChangedAt), 0).Seconds())
	}
	return res.Done, nil
}

// writeState applies one hook-state write (an attempt before a send, an
// acknowledgement after). The store's group commit puts the writes of
// concurrent deliveries in one transaction, so deliveries to many devices
// share the cost of commits.
func (d *Dispatcher) writeState(ctx context.Context, w store.HookWrite) (store.HookWriteResult, error) {
	res, err := d.opts.Store.WriteHookState(ctx, []store.HookWrite{w})
	if err != nil {
		return store.HookWriteResult{}, err
	}
	return res[0], nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// loopKey is the work key of hook-202-never-stops' endless loop.
const loopKey = "update loop"

// loopsOn reports whether hook-202-never-stops keeps re-sending st's last
// accepted update hook although nothing is owed.
func (d *Dispatcher) loopsOn(st *devState) bool {
	return st != nil && st.memo.loopBody != nil && d.opts.Violations.On("hook-202-never-stops")
}

// violationDelay is the earliest time the violations that send late allow
// the next hook to st (zero when none applies).
func (d *Dispatcher) violationDelay(st *devState, kind, key string, w store.HookWork, looping bool, now time.Time) time.Time {
	v := d.opts.Violations
	var t time.Time
	switch {
	case looping:
		// hook-202-never-stops: the settled loop goes on every 5 intervals.
		t = st.lastSent.Add(5 * d.opts.RetryInterval)
	case kind == KindUpdate && v.On("hook-202-cadence-5x") && st.memo.acceptedCanon == w.UpdateCanonical:
		t = st.lastSent.Add(5 * d.opts.RetryInterval)
	}
	if kind == KindUpdate && v.On("hook-update-late") {
		if st.memo.lateKey != key {
			st.memo.lateKey, st.memo.lateSince = key, now
		}
		t = later(t, st.memo.lateSince.Add(10*d.opts.RetryInterval))
	}
	return t
}

// violationSkipsUpdate applies the violations that take an update hook as
// acknowledged without sending it: hook-acks-in-memory (acknowledged in
// this run's memory only) and hook-config-ignored (the acknowledged target
// differed only in config). It reports whether nothing is to be sent.
func (d *Dispatcher) violationSkipsUpdate(ctx context.Context, st *devState, w store.HookWork) bool {
	v := d.opts.Violations
	d.violMu.Lock()
	acked := d.violAcks[st.uuid]
	d.violMu.Unlock()
	switch {
	case v.On("hook-acks-in-memory"):
		return acked == w.UpdateCanonical
	case v.On("hook-config-ignored") && acked != "" && acked == sansConfig(w):
		_, err := d.writeState(ctx, store.HookWrite{UUID: st.uuid, AckUpdate: w.UpdateCanonical})
		return err == nil
	}
	return false
}

// sansConfig is w's update target without its config.
func sansConfig(w store.HookWork) string {
	if w.Update == nil {
		return ""
	}
	h := w.Update.Hook()
	h.Config = nil
	b, _ := json.Marshal(h)
	return string(b)
}
