// Package hooks is the reference proxy's hook dispatcher: it sends the
// gateway app the update, delete and restart hooks its dependent devices are
// owed (CONTRACT.md HOOK-*), from the durable hook state in proxy/store.
//
// Per device, hooks are serialized (never two in flight), paced (the next
// hook starts at least the retry interval after the previous one ended, also
// across a restart, through the store's hook_last_at) and always carry the
// newest target (the device's state is re-read right before each send,
// unless the store says it did not change since it was last read). When
// several kinds are owed, a delete is sent first and alone (a marked device
// is owed nothing else), then restarts, then the update: a restart request
// is a one-shot action the gateway should see promptly, while the update
// hook carries the whole target and is re-sent until settled anyway.
//
// A hook's attempt time is recorded with its outcome, in one write with its
// acknowledgement; a durable send lease, extended ahead of the sends, stands
// in for the attempts a crash lost (lease.go).
//
// Across devices, hooks go out concurrently up to a bound (requests in
// flight to the gateway); more deliveries than that are under way, so that
// the reads and writes of the store before and after a request overlap
// other devices' requests instead of holding their slots. A failed hook is
// retried with exponential backoff from the retry interval up to a cap, with
// jitter. The schedule is an in-memory heap ordered by next-due time, rebuilt
// from the store at start, on Notify and every RescanInterval (NotifyDevice
// re-reads one device), so a tick never scans the table. It holds at most
// MaxScheduled devices: past that, owed devices wait in the store and are
// read in a page at a time, in row order, as the schedule drains, so that
// the memory a backlog of a million devices takes is that of the bound. A Notify re-reads
// only the devices the store changed since the schedule was last read
// (store.Store.ChangedHookWork), all of them only when the store cannot
// tell which; the RescanInterval rebuild reads every pending device. Writes of concurrent
// deliveries (each hook's attempt with its outcome, one write per hook)
// share transactions through the store's group commit.
//
// It depends on proxy/store, proxy/api and proxy/violation; it must not import
// the HTTP API, sync, the cloud client, fakes or the simulator.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/defaults"
	"github.com/depharness/depharness/proxy/store"
	"github.com/depharness/depharness/proxy/violation"
	"github.com/prometheus/client_golang/prometheus"
)

// Store is the hook state the dispatcher needs; *store.Store implements it.
type Store interface {
	PendingHooksAfter(ctx context.Context, after int64, limit int) (works []store.HookWork, next int64, done bool, err error)
	HookWorksOf(ctx context.Context, uuids []string) (map[string]*store.HookWork, error)
	ChangedHookWork(ctx context.Context, since uint64) (works map[string]*store.HookWork, at uint64, all bool, err error)
	NewHookWorkReader(ctx context.Context) (*store.HookWorkReader, error)
	WriteHookState(ctx context.Context, ws []store.HookWrite) ([]store.HookWriteResult, error)
	HookSendLease(ctx context.Context) (time.Time, error)
	SetHookSendLease(ctx context.Context, until time.Time) error
	ExpectWrites() (done func())
	// Generation and DeviceChangedSince tell whether a device's hook work
	// read at a generation is still what the store holds (see
	// store.Store.Generation).
	Generation() uint64
	DeviceChangedSince(uuid string, gen uint64) bool
}

// Defaults of Options.
const (
	DefaultRetryInterval  = 30 * time.Second
	DefaultTimeout        = 30 * time.Second
	DefaultConcurrency    = 16
	DefaultRescanInterval = time.Minute
	DefaultMaxScheduled   = 65536
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
	// Concurrency bounds hooks in flight across devices: requests sent to
	// the gateway and not yet answered. Zero means DefaultConcurrency.
	Concurrency int
	// BackoffMax caps the backoff after failures. Zero means 10*RetryInterval.
	BackoffMax time.Duration
	// RescanInterval is how often the schedule is also rebuilt from the
	// store without a Notify, a safety net for changes nobody announced.
	// Zero means DefaultRescanInterval.
	RescanInterval time.Duration
	// MaxScheduled bounds the devices the schedule holds in memory. More
	// devices owed a hook wait in the store and are read in, in row order,
	// as the schedule drains to half of it. Zero means DefaultMaxScheduled.
	MaxScheduled int
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
	// slots holds a token per hook request in flight (Concurrency).
	slots chan struct{}

	mu      sync.Mutex
	dirty   map[string]bool // devices to re-read (NotifyDevice)
	dirtyCh chan struct{}

	// lease is the send lease (lease.go); floor is the last attempt every
	// device is taken to have had before this run (zero: none), set by Run
	// before it starts any worker.
	lease lease
	floor time.Time

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
	if opts.MaxScheduled <= 0 {
		opts.MaxScheduled = DefaultMaxScheduled
	}
	defaults.Clock(&opts.Now)
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	defaults.Logger(&opts.Logger)
	log := opts.Logger
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
		slots:   make(chan struct{}, opts.Concurrency),
		dirty:   map[string]bool{},
		dirtyCh: make(chan struct{}, 1),

		violAcks: map[string]string{},
	}, nil
}

// pipelineDepth is how many deliveries may be under way per request slot:
// a delivery reads the device's state, waits for a slot, sends, and
// records the outcome in a commit it shares with other deliveries; only
// the request holds a slot.
const pipelineDepth = 4

// workers bounds the deliveries under way (a device has at most one).
func (d *Dispatcher) workers() int { return pipelineDepth * d.opts.Concurrency }

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
