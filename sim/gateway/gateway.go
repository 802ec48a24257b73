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
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/ctxtime"
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
	logs  chan logLine

	sf      singleflight.Group
	cacheMu sync.Mutex
	cache   map[string]fleet.Firmware // "app/commit" → firmware

	mu      sync.Mutex
	byUUID  map[string]*managed
	byIndex map[int]*managed
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
	pending         *api.UpdateHook // latest target not yet worked on
	target          *api.UpdateHook // latest target received
	targetAt        time.Time       // when target was first received
	restarts        int
	initialReport   bool
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
		byUUID:  map[string]*managed{},
		byIndex: map[int]*managed{},
		timers:  map[*time.Timer]struct{}{},
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

// UUIDs returns the uuids of the managed devices, in fleet order.
func (g *Gateway) UUIDs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.byIndex))
	for i := range g.opts.Fleet.Profile().Count {
		if m := g.byIndex[i]; m != nil {
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
		snap := m.dev.Snapshot()
		s.States[snap.State]++
		if snap.Online {
			s.Online++
		}
	}
	return s
}

func (r reported) matches(t *api.UpdateHook) bool {
	return r.commit == t.Commit && r.environment == canonical(t.Environment) && r.config == canonical(t.Config)
}

// canonical is the JSON of vars with sorted keys; nil is {}.
func canonical(v map[string]any) string {
	if v == nil {
		return "{}"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("unencodable %v", err)
	}
	return string(b)
}

func targetKey(t *api.UpdateHook) string {
	return strconv.FormatInt(t.AppID, 10) + "\x00" + t.Commit + "\x00" + canonical(t.Environment) + "\x00" + canonical(t.Config)
}

// Handler serves the hooks the supervisor sends to
// BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS (default
// http://0.0.0.0:1337/v1/devices/):
//
//	PUT    /v1/devices/{uuid}          update: 200 or 202 by Policy
//	PUT    /v1/devices/{uuid}/restart  restart: 200
//	DELETE /v1/devices/{uuid}          delete: the device is forgotten, 200
//
// A hook for a device the gateway does not manage answers 404 (delete:
// 200, it is forgotten already); a malformed update body answers 400.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/devices/{uuid}", g.updateHook)
	mux.HandleFunc("PUT /v1/devices/{uuid}/restart", g.restartHook)
	mux.HandleFunc("DELETE /v1/devices/{uuid}", g.deleteHook)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		g.log.Warn("unexpected request to the hook server", "method", r.Method, "path", r.URL.Path)
		g.metrics.HooksReceived.WithLabelValues("unknown", "404").Inc()
		g.opts.Observer.HookReceived("unknown", -1, http.StatusNotFound, "")
		http.Error(w, "Not found", http.StatusNotFound)
	})
	return mux
}

// answer writes a hook's answer; index is the fleet device's (-1: none) and
// commit the update hook's target commit, for the Observer.
func (g *Gateway) answer(w http.ResponseWriter, kind string, index int, commit string, status int, msg string) {
	g.metrics.HooksReceived.WithLabelValues(kind, strconv.Itoa(status)).Inc()
	g.opts.Observer.HookReceived(kind, index, status, commit)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

func (g *Gateway) updateHook(w http.ResponseWriter, r *http.Request) {
	var t api.UpdateHook
	if err := json.NewDecoder(io.LimitReader(r.Body, api.MaxBodyBytes)).Decode(&t); err != nil {
		g.answer(w, "update", -1, "", http.StatusBadRequest, "Malformed update hook body")
		return
	}
	uuid := r.PathValue("uuid")
	g.mu.Lock()
	m := g.byUUID[uuid]
	if m == nil {
		g.mu.Unlock()
		g.answer(w, "update", -1, t.Commit, http.StatusNotFound, "Device not found")
		return
	}
	// A resend of a target being worked on is queued too: it is answered
	// by reporting the device's state again once the work is done (a
	// device already at the target is not flashed again).
	if m.target == nil || targetKey(m.target) != targetKey(&t) {
		m.targetAt = g.opts.Now()
	}
	m.target, m.pending = &t, &t
	g.enqueueLocked(m)
	index := m.dev.Index
	g.mu.Unlock()
	g.log.Debug("update hook", "uuid", uuid, "commit", t.Commit, "env", t.Environment, "config", t.Config, "policy", g.opts.Policy)
	if g.opts.Policy == PolicyAccepted {
		g.answer(w, "update", index, t.Commit, http.StatusAccepted, "Accepted")
		return
	}
	g.answer(w, "update", index, t.Commit, http.StatusOK, "OK")
}

func (g *Gateway) restartHook(w http.ResponseWriter, r *http.Request) {
	uuid := r.PathValue("uuid")
	g.mu.Lock()
	m := g.byUUID[uuid]
	index := -1
	if m != nil {
		m.restarts++
		g.enqueueLocked(m)
		index = m.dev.Index
	}
	g.mu.Unlock()
	if m == nil {
		g.answer(w, "restart", -1, "", http.StatusNotFound, "Device not found")
		return
	}
	g.answer(w, "restart", index, "", http.StatusOK, "OK")
}

func (g *Gateway) deleteHook(w http.ResponseWriter, r *http.Request) {
	uuid := r.PathValue("uuid")
	index := g.forget(uuid)
	g.answer(w, "delete", index, "", http.StatusOK, "OK")
}

// forget drops a device: no more work, reports or logs for it. It returns
// the device's fleet index, or -1 if it was not managed.
func (g *Gateway) forget(uuid string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.byUUID[uuid]
	if m == nil {
		return -1
	}
	m.forgotten = true
	delete(g.byUUID, uuid)
	delete(g.byIndex, m.dev.Index)
	g.opts.Observer.DeviceForgotten(m.dev.Index, uuid)
	g.log.Info("device forgotten", "uuid", uuid, "serial", m.dev.Serial)
	return m.dev.Index
}

// enqueueLocked queues m for a worker unless it is queued or being worked
// on already (the worker picks up new work before it lets go).
func (g *Gateway) enqueueLocked(m *managed) {
	if m.queued || m.working || m.forgotten {
		return
	}
	m.queued = true
	g.queue <- m // capacity is the fleet's size: never blocks
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
	m := g.byIndex[e.Device]
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

func (g *Gateway) forwardLogs(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case l := <-g.logs:
			g.mu.Lock()
			gone := l.m.forgotten
			g.mu.Unlock()
			if gone {
				continue
			}
			if err := g.opts.Client.Log(ctx, l.m.uuid, l.entry); err != nil {
				if ctx.Err() != nil {
					return
				}
				g.failed("log", l.m.dev.Index, err)
				g.log.Warn("forwarding a log line", "uuid", l.m.uuid, "err", err)
				if client.IsGone(err) {
					g.forget(l.m.uuid)
				}
				continue
			}
			g.metrics.LogsForwarded.Inc()
		}
	}
}

// backoff returns the wait before attempt n+1: exponential from RetryBase
// up to RetryMax, with jitter in [d/2, d].
func (g *Gateway) backoff(attempt int) time.Duration {
	d := g.opts.RetryBase
	for i := 1; i < attempt && d < g.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, g.opts.RetryMax)
	g.randMu.Lock()
	j := g.rand.Int64N(int64(d/2) + 1)
	g.randMu.Unlock()
	return d/2 + time.Duration(j)
}

// provisionAll waits for the supervisor and the apps, adopts the devices
// the supervisor already has for them (see adoptAll) and provisions the
// fleet devices left over, Concurrency at a time.
func (g *Gateway) provisionAll(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := g.opts.Client.Ping(ctx)
		if err == nil {
			break
		}
		g.log.Info("waiting for the supervisor", "err", err)
		if ctxtime.Sleep(ctx, g.backoff(attempt)) != nil {
			return ctx.Err()
		}
	}
	apps := g.opts.Apps
	for attempt := 1; len(apps) == 0; attempt++ {
		list, err := g.opts.Client.Apps(ctx)
		if err != nil && client.StatusCode(err) != 0 && !client.IsUnavailable(err) {
			return fmt.Errorf("listing dependent apps: %w", err)
		}
		for _, a := range list {
			apps = append(apps, a.ID)
		}
		if len(apps) == 0 {
			g.log.Info("waiting for a dependent app", "err", err)
			if ctxtime.Sleep(ctx, g.backoff(attempt)) != nil {
				return ctx.Err()
			}
		}
	}
	devices, err := g.adoptAll(ctx, apps)
	if err != nil {
		return err
	}
	adopted := len(g.opts.Fleet.Devices()) - len(devices)
	sem := make(chan struct{}, g.opts.Concurrency)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	for _, d := range devices {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := g.provision(ctx, d, apps[d.Index%len(apps)]); err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		g.log.Info("fleet provisioned", "adopted", adopted, "provisioned", len(devices), "apps", apps)
	}
	return firstErr
}

// adoptAll makes the gateway manage again the devices the supervisor
// already has for its apps (those a previous run of the gateway
// provisioned), so that a restarted gateway neither leaves them without
// anyone answering their hooks nor provisions the fleet a second time. It
// returns the fleet devices left without a device to adopt, which are to
// be provisioned. The package documentation states the rule.
func (g *Gateway) adoptAll(ctx context.Context, apps []int64) ([]*fleet.Device, error) {
	byApp, err := g.adoptable(ctx, apps)
	if err != nil {
		return nil, err
	}
	var rest []*fleet.Device
	for _, d := range g.opts.Fleet.Devices() {
		app := apps[d.Index%len(apps)]
		q := byApp[app]
		if len(q) == 0 {
			rest = append(rest, d)
			continue
		}
		byApp[app] = q[1:]
		g.adopt(d, q[0])
	}
	for _, app := range apps {
		left := byApp[app]
		if len(left) == 0 {
			continue
		}
		uuids := make([]string, 0, min(len(left), 10))
		for _, d := range left[:min(len(left), 10)] {
			uuids = append(uuids, d.UUID)
		}
		g.log.Warn("devices beyond the fleet's size are left alone", "app", app, "devices", len(left), "uuids", uuids)
		delete(byApp, app)
	}
	return rest, nil
}

// adoptable returns the adoptable devices of each of apps, by ascending
// local id, retrying what may succeed later.
func (g *Gateway) adoptable(ctx context.Context, apps []int64) (map[int64][]api.Device, error) {
	ours := map[int64]bool{}
	for _, a := range apps {
		ours[a] = true
	}
	for attempt := 1; ; attempt++ {
		byApp, err := g.listAdoptable(ctx, ours)
		if err == nil {
			return byApp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		g.failed("adopt", -1, err)
		if code := client.StatusCode(err); code >= 400 && code < 500 {
			return nil, fmt.Errorf("listing the devices to adopt: %w", err)
		}
		g.log.Warn("listing the devices to adopt", "err", err)
		if ctxtime.Sleep(ctx, g.backoff(attempt)) != nil {
			return nil, ctx.Err()
		}
	}
}

func (g *Gateway) listAdoptable(ctx context.Context, ours map[int64]bool) (map[int64][]api.Device, error) {
	list, err := g.opts.Client.Devices(ctx)
	if err != nil {
		return nil, err
	}
	var cands []api.Device
	for _, d := range list {
		if ours[d.AppID] && d.UUID != "" {
			cands = append(cands, d)
		}
	}
	slices.SortStableFunc(cands, func(a, b api.Device) int { return cmp.Compare(a.ID, b.ID) })
	// The list includes devices awaiting a delete acknowledgement and does
	// not say which: ask for each.
	fresh := make([]*api.Device, len(cands))
	errs := make([]error, len(cands))
	sem := make(chan struct{}, g.opts.Concurrency)
	var wg sync.WaitGroup
	for i, d := range cands {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			dev, err := g.opts.Client.Device(ctx, d.UUID)
			switch {
			case err == nil:
				fresh[i] = dev
			case client.IsGone(err):
				g.log.Info("device awaiting deletion is not adopted", "uuid", d.UUID, "app", d.AppID)
			case client.IsNotFound(err):
				// Deleted since the list was read.
			default:
				errs[i] = fmt.Errorf("device %s: %w", d.UUID, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	byApp := map[int64][]api.Device{}
	for i, d := range fresh {
		if d == nil {
			continue
		}
		dev := *d
		dev.UUID, dev.AppID = cands[i].UUID, cands[i].AppID
		byApp[dev.AppID] = append(byApp[dev.AppID], dev)
	}
	return byApp, nil
}

// adopt makes d the fleet device behind the supervisor's device dev. Its
// first work is an initial report, as for a provisioned device. The fleet
// device holds no firmware yet (the fleet starts empty), so if dev has a
// target commit, that target, as an update hook would give it (the
// device's targetCommit, targetEnvironment and targetConfig), is its
// pending update: it is flashed and reported at once, even when the
// supervisor already shows it on that commit and will send no hook (a
// 200-acknowledged target is not sent again), and a hook with a newer
// target supersedes it.
func (g *Gateway) adopt(d *fleet.Device, dev api.Device) {
	m := &managed{uuid: dev.UUID, appID: dev.AppID, dev: d, initialReport: true}
	if dev.TargetCommit != nil && *dev.TargetCommit != "" {
		t := &api.UpdateHook{AppID: dev.AppID, Commit: *dev.TargetCommit, Environment: dev.TargetEnvironment, Config: dev.TargetConfig}
		m.target, m.pending, m.targetAt = t, t, g.opts.Now()
	}
	g.mu.Lock()
	g.byUUID[m.uuid] = m
	g.byIndex[d.Index] = m
	g.enqueueLocked(m)
	g.opts.Observer.DeviceManaged(d.Index, m.uuid, m.appID)
	g.mu.Unlock()
	g.metrics.Adopted.Inc()
	commit := ""
	if dev.Commit != nil {
		commit = *dev.Commit
	}
	g.log.Info("device adopted", "serial", d.Serial, "uuid", dev.UUID, "app", dev.AppID, "name", dev.Name, "commit", commit)
}

// provision provisions one device, retrying what may succeed later, then
// reports its initial state.
func (g *Gateway) provision(ctx context.Context, d *fleet.Device, appID int64) error {
	var p *api.ProvisionResponse
	for attempt := 1; ; attempt++ {
		var err error
		p, err = g.opts.Client.Provision(ctx, appID, g.opts.Fleet.Profile().DeviceType)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		g.failed("provision", d.Index, err)
		if client.IsBadRequest(err) || client.IsUnauthorized(err) {
			return fmt.Errorf("provisioning device %s into app %d: %w", d.Serial, appID, err)
		}
		g.log.Warn("provisioning", "serial", d.Serial, "app", appID, "err", err)
		if ctxtime.Sleep(ctx, g.backoff(attempt)) != nil {
			return ctx.Err()
		}
	}
	// The device takes hooks at once; its initial report is its first
	// piece of work, so that it never lands after the report of an update.
	m := &managed{uuid: p.UUID, appID: appID, dev: d, initialReport: true}
	g.mu.Lock()
	g.byUUID[p.UUID] = m
	g.byIndex[d.Index] = m
	g.enqueueLocked(m)
	g.opts.Observer.DeviceManaged(d.Index, m.uuid, m.appID)
	g.mu.Unlock()
	g.metrics.Provisioned.Inc()
	g.log.Info("device provisioned", "serial", d.Serial, "uuid", p.UUID, "app", appID, "name", p.Name)
	return nil
}

// worker does the queued devices' work until ctx is done.
func (g *Gateway) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-g.queue:
			g.work(ctx, m)
		}
	}
}

// work does everything m has to do, one thing at a time. It clears
// m.working in the same critical section in which it finds nothing left to
// do, so that work arriving meanwhile is never lost.
func (g *Gateway) work(ctx context.Context, m *managed) {
	g.mu.Lock()
	m.queued, m.working = false, true
	for ctx.Err() == nil && !m.forgotten {
		switch {
		case m.initialReport:
			m.initialReport = false
			g.mu.Unlock()
			snap := m.dev.Snapshot()
			status := StatusIdle
			if snap.State == fleet.StateFailed {
				status = StatusFailed
			}
			g.report(ctx, m, api.DeviceUpdate{Status: &status, IsOnline: &snap.Online}, nil)
		case m.restarts > 0:
			m.restarts--
			g.mu.Unlock()
			_ = m.dev.Restart(ctx)
		case m.reportOnline:
			m.reportOnline = false
			g.mu.Unlock()
			online := m.dev.Snapshot().Online
			g.report(ctx, m, api.DeviceUpdate{IsOnline: &online}, nil)
		case m.pending != nil && m.dev.Snapshot().Online:
			t := m.pending
			m.pending = nil
			g.mu.Unlock()
			g.update(ctx, m, t)
		default:
			// Nothing to do, or an update waits for the device to come
			// online: its online event queues m again.
			m.working = false
			g.mu.Unlock()
			return
		}
		g.mu.Lock()
	}
	m.working = false
	g.mu.Unlock()
}

// update brings m to target t and reports the outcome.
func (g *Gateway) update(ctx context.Context, m *managed, t *api.UpdateHook) {
	key := targetKey(t)
	target := fleet.Target{AppID: t.AppID, Commit: t.Commit, Environment: t.Environment, Config: t.Config}
	online := true
	snap := m.dev.Snapshot()
	if snap.State == fleet.StateRunning && snap.Commit == t.Commit &&
		canonical(snap.Environment) == canonical(t.Environment) && canonical(snap.Config) == canonical(t.Config) {
		g.reportRunning(ctx, m, t)
		return
	}
	if snap.State == fleet.StateRunning && snap.Commit == t.Commit {
		// Only environment or config changed: applied without a download
		// or a flash, as a real gateway would.
		switch err := m.dev.Configure(ctx, target); {
		case err == nil:
			g.metrics.Reconfigurations.Inc()
			g.reportRunning(ctx, m, t)
			return
		case ctx.Err() != nil:
			return
		}
		// The device left the commit meanwhile: flash it.
	}
	g.mu.Lock()
	bad := m.badTarget == key
	g.mu.Unlock()
	if bad {
		failed := StatusFailed
		g.report(ctx, m, api.DeviceUpdate{Status: &failed, IsOnline: &online}, nil)
		return
	}

	updating := StatusUpdating
	g.report(ctx, m, api.DeviceUpdate{Status: &updating, IsOnline: &online}, nil)
	err := m.dev.Update(ctx, target, func(ctx context.Context) (fleet.Firmware, error) {
		return g.firmware(ctx, t.AppID, t.Commit)
	})
	var ferr *fleet.FlashError
	switch {
	case err == nil:
		g.metrics.Flashes.WithLabelValues("ok").Inc()
		g.mu.Lock()
		m.flashAttempts = 0
		g.mu.Unlock()
		g.reportRunning(ctx, m, t)
	case ctx.Err() != nil:
	case errors.As(err, &ferr):
		g.failed("flash", m.dev.Index, err)
		g.log.Warn("flash failed", "uuid", m.uuid, "commit", t.Commit, "err", err)
		g.mu.Lock()
		retry := false
		switch {
		case errors.Is(err, fleet.ErrFlashFailed):
			g.metrics.Flashes.WithLabelValues("flash_failed").Inc()
			m.flashAttempts++
			retry = m.flashAttempts < g.opts.MaxFlashAttempts
			if !retry {
				m.flashAttempts = 0
			}
		case errors.Is(err, fleet.ErrChecksumMismatch):
			g.metrics.Flashes.WithLabelValues("checksum_mismatch").Inc()
			m.badTarget = key
		default:
			g.metrics.Flashes.WithLabelValues("bad_firmware").Inc()
			m.badTarget = key
		}
		attempts := m.flashAttempts
		g.mu.Unlock()
		failed := StatusFailed
		g.report(ctx, m, api.DeviceUpdate{Status: &failed, IsOnline: &online}, nil)
		if retry {
			g.retryLater(m, t, attempts)
		}
	default:
		// The download failed: try again later.
		g.failed("download", m.dev.Index, err)
		g.log.Warn("downloading assets", "app", t.AppID, "commit", t.Commit, "err", err)
		g.retryLater(m, t, 1)
	}
}

// retryLater makes t m's pending target again after a backoff, unless a
// newer target arrived meanwhile.
func (g *Gateway) retryLater(m *managed, t *api.UpdateHook, attempt int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.timers == nil {
		return // Run has ended
	}
	var tm *time.Timer
	tm = time.AfterFunc(g.backoff(attempt), func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.timers == nil {
			return
		}
		delete(g.timers, tm)
		if m.pending == nil && m.target != nil && targetKey(m.target) == targetKey(t) {
			m.pending = t
			g.enqueueLocked(m)
		}
	})
	g.timers[tm] = struct{}{}
}

// reportRunning reports that m runs target t.
func (g *Gateway) reportRunning(ctx context.Context, m *managed, t *api.UpdateHook) {
	idle, online, commit := StatusIdle, true, t.Commit
	env, cfg := api.Vars(maps.Clone(t.Environment)), api.Vars(maps.Clone(t.Config))
	if env == nil {
		env = api.Vars{}
	}
	if cfg == nil {
		cfg = api.Vars{}
	}
	g.report(ctx, m, api.DeviceUpdate{Status: &idle, IsOnline: &online, Commit: &commit, Environment: env, Config: cfg}, t)
}

// report sends PUT /v1/devices/{uuid}; the client retries what can be
// retried. A 410 or 404 answer means the supervisor dropped the device:
// the gateway forgets it.
func (g *Gateway) report(ctx context.Context, m *managed, u api.DeviceUpdate, t *api.UpdateHook) {
	_, err := g.opts.Client.UpdateDevice(ctx, m.uuid, u)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		g.metrics.Reports.WithLabelValues("error").Inc()
		g.failed("report", m.dev.Index, err)
		g.log.Warn("reporting device state", "uuid", m.uuid, "err", err)
		if client.IsGone(err) || client.IsNotFound(err) {
			g.forget(m.uuid)
		}
		return
	}
	g.metrics.Reports.WithLabelValues("ok").Inc()
	g.opts.Observer.Reported(m.dev.Index)
	g.mu.Lock()
	defer g.mu.Unlock()
	if u.Status != nil {
		m.reported.ok = true
		m.reported.status = *u.Status
	}
	if t != nil {
		first := !m.reported.matches(t)
		m.reported.commit = t.Commit
		m.reported.environment = canonical(t.Environment)
		m.reported.config = canonical(t.Config)
		if first && m.target != nil && targetKey(m.target) == targetKey(t) && !m.targetAt.IsZero() {
			g.metrics.UpdateDuration.Observe(g.opts.Now().Sub(m.targetAt).Seconds())
		}
	}
}

// firmware returns the release (appID, commit), downloading it at most
// once however many devices ask at the same time; the result is kept in
// memory for the devices that ask later (only the latest commit of each
// app is kept).
func (g *Gateway) firmware(ctx context.Context, appID int64, commit string) (fleet.Firmware, error) {
	key := strconv.FormatInt(appID, 10) + "/" + commit
	g.cacheMu.Lock()
	fw, ok := g.cache[key]
	g.cacheMu.Unlock()
	if ok {
		return fw, nil
	}
	g.mu.Lock()
	runCtx := g.runCtx
	g.mu.Unlock()
	if runCtx == nil {
		runCtx = ctx
	}
	ch := g.sf.DoChan(key, func() (any, error) {
		// The download serves every waiting device: it is bound to Run's
		// context, not to the first caller's.
		return g.download(runCtx, appID, commit)
	})
	select {
	case <-ctx.Done():
		return fleet.Firmware{}, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return fleet.Firmware{}, r.Err
		}
		return r.Val.(fleet.Firmware), nil
	}
}

func (g *Gateway) download(ctx context.Context, appID int64, commit string) (fleet.Firmware, error) {
	key := strconv.FormatInt(appID, 10) + "/" + commit
	g.cacheMu.Lock()
	fw, ok := g.cache[key]
	g.cacheMu.Unlock()
	if ok {
		return fw, nil
	}
	a, err := g.opts.Client.Assets(ctx, appID, commit, nil)
	if err != nil {
		return fleet.Firmware{}, err
	}
	defer a.Close()
	tar, err := io.ReadAll(io.LimitReader(a, g.opts.MaxAssetBytes+1))
	if err != nil {
		return fleet.Firmware{}, fmt.Errorf("downloading assets of %s: %w", key, err)
	}
	if int64(len(tar)) > g.opts.MaxAssetBytes {
		return fleet.Firmware{}, fmt.Errorf("assets of %s are larger than %d bytes", key, g.opts.MaxAssetBytes)
	}
	g.metrics.AssetDownloads.Inc()
	g.metrics.AssetBytes.Add(float64(len(tar)))
	fw = fleet.Firmware{AppID: appID, Commit: commit, Tar: tar}
	// An unreadable tar keeps an empty checksum: every device flashing it
	// then fails verification (fleet.ErrBadFirmware).
	if sum, err := fleet.Checksum(bytes.NewReader(tar)); err == nil {
		fw.Checksum = sum
	} else {
		g.log.Warn("assets are not a readable tar", "app", appID, "commit", commit, "err", err)
	}
	if g.opts.ExpectedChecksum != nil {
		if want, ok := g.opts.ExpectedChecksum(appID, commit); ok {
			fw.Expected = want
		}
	}
	g.log.Info("assets downloaded", "app", appID, "commit", commit, "bytes", len(tar), "checksum", fw.Checksum)
	g.cacheMu.Lock()
	for k, old := range g.cache {
		if old.AppID == appID {
			delete(g.cache, k)
		}
	}
	g.cache[key] = fw
	g.cacheMu.Unlock()
	return fw, nil
}
