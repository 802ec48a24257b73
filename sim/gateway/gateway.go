// Package gateway is the reference gateway app of a dependent application:
// the user program that runs next to the supervisor, provisions dependent
// devices, listens for the supervisor's hooks (update, restart, delete),
// downloads each release's assets once, flashes them onto the devices (a
// target that changes only environment or config is applied without a
// flash) and reports their state and logs back through the supervisor API.
//
// The gateway keeps no state of its own: when it starts again (a process
// or container restart), it adopts the devices the supervisor already has
// for its apps instead of provisioning the fleet a second time. The
// adoptable devices are those of GET /v1/devices in one of its apps that
// are not awaiting a delete acknowledgement (GET /v1/devices/{uuid}
// answers 410 for those, which the list includes). Fleet devices, in index
// order, each take the adoptable device of their app (Apps[index mod
// len(Apps)], as for provisioning) with the lowest local id not taken yet;
// only the fleet devices left without one are provisioned. Adoptable
// devices beyond the fleet's size are logged and left alone (their hooks
// answer 404, as for any device the gateway does not manage), and devices
// of other apps are ignored. An adopted device is reported as a new one
// is; since the simulated device starts without firmware, a target commit
// on the supervisor's device object is flashed at once, as if an update
// hook had brought it (the supervisor sends no hook for a target already
// acknowledged or reported).
//
// Its devices are simulated (sim/fleet). It talks to the supervisor over
// HTTP only, through sim/client; it must not import the reference proxy's
// packages (api, the wire types, is the one exception).
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
)

// Policy is how the gateway answers update hooks.
type Policy string

const (
	// PolicyAck answers 200 at once (the supervisor will not send that
	// target again) and updates the device in the background.
	PolicyAck Policy = "200"
	// PolicyAccepted answers 202 (the supervisor resends the hook every
	// retry interval) and reports the device's state through PUT
	// /v1/devices/{uuid} once it is flashed, which ends the resends.
	PolicyAccepted Policy = "202"
)

// ParsePolicy reads "200" or "202".
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyAck, PolicyAccepted:
		return p, nil
	}
	return "", fmt.Errorf("policy %q: want 200 or 202", s)
}

// Device status strings the gateway reports.
const (
	StatusIdle     = "Idle"
	StatusUpdating = "Updating"
	StatusFailed   = "Failed"
)

// Options configure a Gateway.
type Options struct {
	// Client talks to the supervisor. Required. Give it a Retry policy
	// (e.g. MaxAttempts -1) so that reports survive a supervisor restart.
	Client *client.Client
	// Fleet is the devices the gateway manages. Required. The gateway does
	// not run it: call Fleet.Run alongside Run.
	Fleet *fleet.Fleet
	// Apps are the dependent apps to provision devices into, device i into
	// Apps[i mod len(Apps)]. If empty, Run uses every app of GET
	// /v1/dependent-apps, waiting until there is one. Devices the
	// supervisor already has in these apps are adopted first (Run).
	Apps []int64
	// Policy, if empty, is PolicyAck.
	Policy Policy
	// Concurrency bounds the devices updated (downloaded, flashed,
	// reported) at once, and the log lines in flight. Zero means 16.
	Concurrency int
	// ProvisionAhead, if positive, bounds the devices provisioned by this
	// run that have not yet reported a commit (their first update): the
	// next device is provisioned only while fewer are waiting. Without it a
	// large fleet's provisioning runs ahead of the updates, and what the
	// supervisor holds for the devices waiting (hooks owed, reports queued
	// for the cloud) grows with the gap. Zero: no bound. Give it room for
	// what the pipeline holds at full speed (provisioning rate × time to a
	// device's first report), or it slows provisioning; a supervisor that
	// sends no update hook stops provisioning at this many devices.
	ProvisionAhead int
	// Logger, if nil, discards.
	Logger *slog.Logger
	// Registerer, if nil, means the metrics are not registered.
	Registerer prometheus.Registerer
	// Now, if nil, is time.Now. It times updates (UpdateDuration).
	Now func() time.Time
	// Rand, if nil, is seeded from the clock. It draws the jitter of
	// retries.
	Rand *rand.Rand
	// ExpectedChecksum, if set, gives the checksum (fleet.Checksum) a
	// release's assets must have, as its publisher states it. Devices
	// refuse firmware that does not match: a corrupted or substituted
	// download then ends in StatusFailed. Without it (or when it returns
	// false) a device can only check that the tar it flashed is readable
	// and has the checksum the gateway computed after download.
	ExpectedChecksum func(appID int64, commit string) (string, bool)
	// RetryBase and RetryMax bound the exponential backoff (with jitter)
	// of a failed provision, download or flaky flash: zero means 200ms and
	// 30s.
	RetryBase, RetryMax time.Duration
	// MaxFlashAttempts is how many times a flaky flash (fleet.ErrFlashFailed)
	// of one target is tried before the device is reported Failed; zero
	// means 3. A checksum mismatch is never retried for the same target.
	MaxFlashAttempts int
	// MaxAssetBytes bounds one assets download, which is held in memory;
	// zero means 1 GiB.
	MaxAssetBytes int64
	// LogQueue is the number of device log lines waiting to be forwarded
	// before new ones are dropped; zero means 4096.
	LogQueue int
	// Observer, if nil, is told nothing. It sees the gateway's side of the
	// fleet for a live view (sim/fleetview).
	Observer Observer
}

// Gateway is the reference gateway app.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	randMu  sync.Mutex
	rand    *rand.Rand

	queue chan *managed // devices with work; each at most once
	// ahead holds a token for each device provisioned that has not yet
	// reported a commit (Options.ProvisionAhead; nil: no bound).
	ahead chan struct{}
	logs  chan logLine

	targetsMu sync.Mutex
	targets   map[string]*target // update hook body → its target (hookTarget)

	sf      singleflight.Group
	cacheMu sync.Mutex
	cache   map[string]fleet.Firmware // "app/commit" → firmware

	mu      sync.Mutex
	byUUID  map[string]*managed
	byIndex []*managed // by fleet index; nil: not managed
	runCtx  context.Context
	timers  map[*time.Timer]struct{}
	running bool
	stopped bool
}

// managed is a provisioned or adopted device. Fields below mu are guarded by
// Gateway.mu.
type managed struct {
	uuid  string
	appID int64
	dev   *fleet.Device

	queued, working bool
	forgotten       bool
	pending         *target   // latest target not yet worked on
	target          *target   // latest target received
	targetAt        time.Time // when target was first received
	restarts        int
	initialReport   bool
	holdsAhead      bool // holds a token of Gateway.ahead until it reports a commit
	reportOnline    bool
	reported        reported
	flashAttempts   int
	badTarget       string // canonical target whose firmware failed verification
}

// reported is what the gateway last reported successfully.
type reported struct {
	ok          bool
	status      string
	commit      string
	environment string // canonical JSON
	config      string
}

type logLine struct {
	m     *managed
	entry api.LogEntry
}

// New returns a gateway. Its Handler serves hooks at once; Run provisions
// the devices and does the work the hooks ask for.
func New(opts Options) (*Gateway, error) {
	if opts.Client == nil || opts.Fleet == nil {
		return nil, errors.New("gateway: Client and Fleet are required")
	}
	switch opts.Policy {
	case "":
		opts.Policy = PolicyAck
	case PolicyAck, PolicyAccepted:
	default:
		return nil, fmt.Errorf("gateway: %w", errors.New("policy must be 200 or 202"))
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		s := uint64(time.Now().UnixNano())
		opts.Rand = rand.New(rand.NewPCG(s, s>>3))
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = 200 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 30 * time.Second
	}
	if opts.MaxFlashAttempts <= 0 {
		opts.MaxFlashAttempts = 3
	}
	if opts.MaxAssetBytes <= 0 {
		opts.MaxAssetBytes = 1 << 30
	}
	if opts.LogQueue <= 0 {
		opts.LogQueue = 4096
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	g := &Gateway{
		opts:    opts,
		log:     opts.Logger,
		metrics: NewMetrics(opts.Registerer),
		rand:    opts.Rand,
		queue:   make(chan *managed, opts.Fleet.Profile().Count+1),
		logs:    make(chan logLine, opts.LogQueue),
		cache:   map[string]fleet.Firmware{},
		targets: map[string]*target{},
		byUUID:  map[string]*managed{},
		byIndex: make([]*managed, opts.Fleet.Profile().Count),
		timers:  map[*time.Timer]struct{}{},
	}
	if opts.ProvisionAhead > 0 {
		g.ahead = make(chan struct{}, opts.ProvisionAhead)
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(newStateCollector(g))
	}
	return g, nil
}

// Metrics returns the gateway's counters.
func (g *Gateway) Metrics() *Metrics { return g.metrics }

// Device returns the fleet device managed as uuid.
func (g *Gateway) Device(uuid string) (*fleet.Device, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.byUUID[uuid]
	if m == nil {
		return nil, false
	}
	return m.dev, true
}

// ManagedCount returns the number of managed devices: len(UUIDs()), without
// listing them.
func (g *Gateway) ManagedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.byUUID)
}

// UUIDs returns the uuids of the managed devices, in fleet order.
func (g *Gateway) UUIDs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.byUUID))
	for _, m := range g.byIndex {
		if m != nil {
			out = append(out, m.uuid)
		}
	}
	return out
}

// Stats is a summary of the managed devices.
type Stats struct {
	Managed   int
	States    map[fleet.State]int
	Online    int
	Converged int
}

// Stats summarizes the managed devices. A device is converged when the
// state the gateway last reported for it equals its latest update hook's
// target and is not Failed.
func (g *Gateway) Stats() Stats {
	g.mu.Lock()
	ms := make([]*managed, 0, len(g.byUUID))
	converged := 0
	for _, m := range g.byUUID {
		ms = append(ms, m)
		if m.target != nil && m.reported.ok && m.reported.status != StatusFailed && m.reported.matches(m.target) {
			converged++
		}
	}
	g.mu.Unlock()
	s := Stats{Managed: len(ms), States: map[fleet.State]int{}, Converged: converged}
	for _, m := range ms {
		st, on := m.dev.Condition()
		s.States[st]++
		if on {
			s.Online++
		}
	}
	return s
}

func (r reported) matches(t *target) bool {
	return r.commit == t.Commit && r.environment == t.env && r.config == t.cfg
}

// target is an update hook's target with its canonical forms, computed once
// when the hook arrives: a device's work compares and reports them several
// times.
type target struct {
	*api.UpdateHook
	env, cfg string // canonical(Environment), canonical(Config)
	// key is the same for two hooks with the same app, commit, environment
	// and config.
	key string
}

func newTarget(h *api.UpdateHook) *target {
	t := &target{UpdateHook: h, env: canonical(h.Environment), cfg: canonical(h.Config)}
	t.key = strconv.FormatInt(h.AppID, 10) + "\x00" + h.Commit + "\x00" + t.env + "\x00" + t.cfg
	return t
}

// fleetTarget is t as the device takes it.
func (t *target) fleetTarget() fleet.Target {
	return fleet.Target{AppID: t.AppID, Commit: t.Commit, Environment: t.Environment, Config: t.Config}
}

// canonical is the JSON of vars with sorted keys; nil is {}.
func canonical(v map[string]any) string {
	if len(v) == 0 {
		return "{}"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("unencodable %v", err)
	}
	return string(b)
}

// Run waits for the supervisor, adopts the devices it already has for the
// gateway's apps (see the package documentation for the rule), provisions
// the fleet devices left without one, then does the work hooks and devices
// ask for (updates, restarts, is_online reports, log forwarding) until ctx
// is done. It returns nil after a clean
// shutdown, once every goroutine it started has ended, or the error that
// made provisioning impossible (e.g. an app id the supervisor refuses).
// A Gateway runs once.
func (g *Gateway) Run(ctx context.Context) error {
	g.mu.Lock()
	if g.running || g.stopped {
		g.mu.Unlock()
		return errors.New("gateway: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g.running, g.runCtx = true, ctx
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.running, g.stopped = false, true
		for t := range g.timers {
			t.Stop()
		}
		g.timers = nil
		g.mu.Unlock()
	}()

	stopWatch := g.opts.Fleet.Watch(g.onEvent)
	defer stopWatch()

	var wg sync.WaitGroup
	for range g.opts.Concurrency {
		wg.Go(func() { g.worker(ctx) })
		wg.Go(func() { g.forwardLogs(ctx) })
	}
	err := g.provisionAll(ctx)
	if err != nil && ctx.Err() == nil {
		// Nothing can be managed: stop the workers and say why.
		g.log.Error("provisioning failed", "err", err)
		cancel()
		wg.Wait()
		return err
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// onEvent is the fleet's watcher: it must not block.
func (g *Gateway) onEvent(e fleet.Event) {
	g.mu.Lock()
	var m *managed
	if e.Device >= 0 && e.Device < len(g.byIndex) {
		m = g.byIndex[e.Device]
	}
	if m == nil {
		g.mu.Unlock()
		return
	}
	switch e.Kind {
	case fleet.EventOnline, fleet.EventOffline:
		m.reportOnline = true
		g.enqueueLocked(m)
		g.mu.Unlock()
	case fleet.EventLog:
		g.mu.Unlock()
		ts := e.Time.UnixMilli()
		entry := api.LogEntry{Message: e.Message, Timestamp: &ts}
		if e.System {
			sys := true
			entry.IsSystem = &sys
		}
		select {
		case g.logs <- logLine{m: m, entry: entry}:
		default:
			g.metrics.LogsDropped.Inc()
		}
	default:
		g.mu.Unlock()
	}
}
