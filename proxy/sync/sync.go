// Package sync keeps the proxy's store in line with the cloud's dependent
// target state: it polls the state with an ETag (CLOUD-STATE), validates it
// whole (a malformed state is rejected, logged and counted; the last good one
// stays in force), looks up devices provisioned elsewhere (CLOUD-GET),
// applies the state to the store (apps, devices, marks for deletion, restart
// requests) and downloads new app releases in the background, making a commit
// current only once its assets tar is ready (HOOK-UPD-2). It wakes the hook
// dispatcher through OnChange.
//
// When the cloud cannot be reached the proxy keeps serving from the store and
// the next poll tries again.
//
// It depends on proxy/store, api/cloud and proxy/violation, and reaches
// the cloud client and the asset cache through small interfaces; it must not
// import the HTTP API, the hook dispatcher, fakes or the simulator.
package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	stdsync "sync"
	"time"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/defaults"
	"github.com/depharness/depharness/proxy/store"
	"github.com/depharness/depharness/proxy/violation"
	"github.com/prometheus/client_golang/prometheus"
)

// Cloud is the part of the cloud client sync uses; *cloudclient.Client
// implements it.
type Cloud interface {
	// GetState fetches the target state; with a non-empty etag a 304 gives
	// notModified. A device unchanged since the last state may come with
	// the very values of that state, maps included: neither side modifies
	// them (the validator takes such a device as already checked).
	GetState(ctx context.Context, etag string) (state *cloud.TargetState, newETag string, notModified bool, err error)
	// GetDeviceByUUID looks a device up; found is false if the cloud has none.
	GetDeviceByUUID(ctx context.Context, uuid string) (dev cloud.Device, found bool, err error)
}

// Assets is the part of the asset cache sync uses; *assets.Cache implements it.
type Assets interface {
	// Ensure pulls image and builds the assets tar of appID at commit,
	// blocking until it is ready.
	Ensure(ctx context.Context, appID int64, commit, image string) error
	// Prune removes appID's cached tars other than keep.
	Prune(appID int64, keep string) error
}

// Store is the part of the store sync uses; *store.Store implements it.
type Store interface {
	ApplyTarget(ctx context.Context, t store.Target, pollStartedAt time.Time) (store.TargetSummary, error)
	UnknownDevices(ctx context.Context, uuids []string) ([]string, error)
	MarkedDevices(ctx context.Context) ([]string, error)
	TargetETag(ctx context.Context) (string, error)
	AppsNeedingDownload(ctx context.Context) ([]store.AppDownload, error)
	SetAppCurrentCommit(ctx context.Context, appID int64, commit string) error
	RemoveDeleted(ctx context.Context, uuid string) (bool, error)
}

// Defaults of Options.
const (
	DefaultPollInterval        = 60 * time.Second
	DefaultDownloadConcurrency = 2
	DefaultDownloadRetry       = time.Second
	DefaultDownloadRetryMax    = 2 * time.Minute
	DefaultLookupConcurrency   = 8
)

// Options configure a Syncer. Store, Cloud and Assets are required.
type Options struct {
	Store  Store
	Cloud  Cloud
	Assets Assets
	// PollInterval is the time between polls. Zero means DefaultPollInterval.
	PollInterval time.Duration
	// DownloadConcurrency bounds downloads across apps. Zero means
	// DefaultDownloadConcurrency.
	DownloadConcurrency int
	// DownloadRetry is the first wait after a failed download, doubled per
	// failure up to DownloadRetryMax. Zero means the defaults.
	DownloadRetry, DownloadRetryMax time.Duration
	// LookupConcurrency bounds CLOUD-GET lookups of unknown devices. Zero
	// means DefaultLookupConcurrency.
	LookupConcurrency int
	// OnChange, if not nil, is called after the store changed in a way that
	// may change the hooks owed (new target, new current commit). It must
	// not block.
	OnChange func()
	// Logger, if nil, discards.
	Logger *slog.Logger
	// Registerer, if nil, registers no metrics.
	Registerer prometheus.Registerer
	// Now, if nil, is time.Now.
	Now func() time.Time
	// Violations enables deliberate contract violations (self-check only).
	Violations violation.Set
}

// Syncer polls and applies the target state. Create with New, start with Run.
type Syncer struct {
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	trigger chan struct{}

	// knownMu guards known: the devices of the last target applied, less
	// those it skipped. The store holds each of them (a device leaves the
	// store only once marked, that is once a target left it out), so a
	// poll asks the store only about the others (lookUpUnknown).
	knownMu stdsync.Mutex
	known   map[string]bool

	// validMu guards valid, which checks and converts each target state
	// (Validate), keeping the devices of the last one.
	validMu stdsync.Mutex
	valid   validator

	mu        stdsync.Mutex
	downloads map[int64]*download // by app id
	dlSem     chan struct{}
	dlWG      stdsync.WaitGroup
}

// download is one app's background download of one commit.
type download struct {
	commit, image string
	ctx           context.Context
	cancel        context.CancelFunc
}

// New checks opts and builds a Syncer.
func New(opts Options) (*Syncer, error) {
	if opts.Store == nil || opts.Cloud == nil || opts.Assets == nil {
		return nil, errors.New("sync: Options.Store, Cloud and Assets are required")
	}
	defaults.Positive(&opts.PollInterval, DefaultPollInterval)
	if opts.Violations.On("state-poll-slow") {
		opts.PollInterval *= 10
	}
	defaults.Positive(&opts.DownloadConcurrency, DefaultDownloadConcurrency)
	defaults.Positive(&opts.DownloadRetry, DefaultDownloadRetry)
	defaults.Positive(&opts.DownloadRetryMax, DefaultDownloadRetryMax)
	opts.DownloadRetryMax = max(opts.DownloadRetryMax, opts.DownloadRetry)
	defaults.Positive(&opts.LookupConcurrency, DefaultLookupConcurrency)
	if opts.OnChange == nil {
		opts.OnChange = func() {}
	}
	defaults.Clock(&opts.Now)
	defaults.Logger(&opts.Logger)
	log := opts.Logger
	m, err := NewMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("sync: metrics: %w", err)
	}
	return &Syncer{
		opts:      opts,
		log:       log,
		metrics:   m,
		trigger:   make(chan struct{}, 1),
		downloads: map[int64]*download{},
		dlSem:     make(chan struct{}, opts.DownloadConcurrency),
	}, nil
}

// triggerSpacing spaces the polls that Trigger brings forward: after a
// poll that took T, the next waits until triggerSpacing × T have passed, so
// that a burst of Trigger calls (provisioning many devices) keeps the sync
// busy at most a tenth of the time, whatever the size of the target. The
// poll's own time is not all it costs: the cloud renders the document and
// the garbage of both sides is collected on other cores, which, with a
// million devices (a document of 100 MB), took most of the machine at a
// quarter.
const triggerSpacing = 9

// Trigger asks for a poll now (e.g. right after provisioning a device): at
// once, or, right after a poll, once triggerSpacing times as long as that
// poll took has passed. It never blocks.
func (s *Syncer) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Run polls until ctx is done, then stops the downloads and returns nil. It
// returns an error only if the store cannot be read at start.
func (s *Syncer) Run(ctx context.Context) error {
	if _, err := s.opts.Store.TargetETag(ctx); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	dctx, stopDownloads := context.WithCancel(ctx)
	defer func() {
		stopDownloads()
		s.dlWG.Wait()
	}()
	// Downloads interrupted by a restart resume at once.
	s.reconcileDownloads(ctx, dctx)

	ageTick := time.NewTicker(min(time.Second, s.opts.PollInterval))
	defer ageTick.Stop()
	poll := time.NewTimer(0)
	defer poll.Stop()
	// next is when the next poll starts. A Trigger brings it forward, but
	// after a poll that took T not before triggerSpacing × T have passed
	// since it ended (see triggerSpacing).
	var (
		next, lastEnd time.Time
		lastTook      time.Duration
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ageTick.C:
			s.metrics.observeAge(s.opts.Now())
			continue
		case <-s.trigger:
			if at := lastEnd.Add(triggerSpacing * lastTook); at.Before(next) {
				next = at
				poll.Reset(max(time.Until(at), 0))
			}
			continue
		case <-poll.C:
		}
		select { // a Trigger sent before this poll starts is answered by it
		case <-s.trigger:
		default:
		}
		started := time.Now()
		if s.Poll(ctx) == nil {
			s.reconcileDownloads(ctx, dctx)
		}
		s.metrics.observeAge(s.opts.Now())
		lastEnd = time.Now()
		lastTook = lastEnd.Sub(started)
		// Polls start one interval apart, however long applying a target
		// took (CLOUD-STATE: a poll in every window of 2 intervals).
		next = started.Add(s.opts.PollInterval)
		poll.Reset(max(time.Until(next), 0))
	}
}

// Poll outcomes, as metric label values.
const (
	OutcomeApplied     = "applied"
	OutcomeNotModified = "not_modified"
	OutcomeRejected    = "rejected"
	OutcomeError       = "error"
)

// errRejected marks a target state that failed validation.
var errRejected = errors.New("target state rejected")

// Poll fetches the target state once and applies it. It returns nil when the
// store holds the cloud's current target (applied, or not modified). Run
// calls it every poll interval; call it directly only while Run is not
// running.
func (s *Syncer) Poll(ctx context.Context) error {
	started := s.opts.Now()
	// The store keeps the ETag of the target it holds, and forgets it while
	// it holds devices that no applied target has listed yet.
	etag, err := s.opts.Store.TargetETag(ctx)
	if err != nil {
		s.metrics.polls.WithLabelValues(OutcomeError).Inc()
		return fmt.Errorf("sync: %w", err)
	}
	if s.opts.Violations.On("state-no-etag") {
		etag = ""
	}
	state, newETag, notModified, err := s.opts.Cloud.GetState(ctx, etag)
	if err != nil {
		if ctx.Err() == nil {
			s.metrics.polls.WithLabelValues(OutcomeError).Inc()
			s.log.Warn("sync: target state unavailable; serving from the store", "err", err)
		}
		return err
	}
	if notModified {
		s.metrics.polls.WithLabelValues(OutcomeNotModified).Inc()
		s.metrics.succeeded(s.opts.Now())
		return nil
	}
	s.validMu.Lock()
	t, err := s.valid.validate(state)
	s.validMu.Unlock()
	if err != nil {
		s.metrics.polls.WithLabelValues(OutcomeRejected).Inc()
		s.metrics.rejected.Inc()
		s.log.Error("sync: malformed target state rejected; keeping the last good one", "err", err)
		return fmt.Errorf("%w: %v", errRejected, err)
	}
	t.ETag = newETag
	if err := s.lookUpUnknown(ctx, &t); err != nil {
		if ctx.Err() == nil {
			s.metrics.polls.WithLabelValues(OutcomeError).Inc()
			s.log.Error("sync: read store", "err", err)
		}
		return err
	}
	pollStartedAt := started
	if s.opts.Violations.On("delete-not-marked") {
		pollStartedAt = time.Time{} // every device counts as provisioned during the poll
	}
	if s.opts.Violations.On("readded-stays-deleted") {
		if err := s.dropMarked(ctx, &t); err != nil {
			return err
		}
	}
	sum, err := s.opts.Store.ApplyTarget(ctx, t, pollStartedAt)
	if err != nil {
		if ctx.Err() == nil {
			s.metrics.polls.WithLabelValues(OutcomeError).Inc()
			s.log.Error("sync: apply target", "err", err)
		}
		return err
	}
	s.remember(t, sum)
	if s.opts.Violations.On("app-removal-silent") {
		s.removeSilently(ctx, sum)
	}
	s.metrics.polls.WithLabelValues(OutcomeApplied).Inc()
	s.metrics.succeeded(s.opts.Now())
	s.log.Info("sync: target applied", "apps", len(t.Apps), "devices", len(t.Devices),
		"added", len(sum.Added), "marked", len(sum.Marked), "unmarked", len(sum.Unmarked),
		"targets_changed", len(sum.UpdateTargetChanged), "restarts", len(sum.RestartRequested),
		"skipped", len(sum.Skipped), "apps_new_commit", len(sum.AppsNewCommit), "apps_removed", len(sum.AppsRemoved))
	if sum.HookWorkChanged() {
		s.opts.OnChange()
	}
	return nil
}

// lookUpUnknown attaches the cloud record (CLOUD-GET) to target devices the
// store does not know yet. A device the cloud does not return, or whose
// lookup fails, is left without one: ApplyTarget skips it and the next poll
// tries again.
func (s *Syncer) lookUpUnknown(ctx context.Context, t *store.Target) error {
	var uuids []string
	s.knownMu.Lock()
	for _, d := range t.Devices {
		if !s.known[d.UUID] {
			uuids = append(uuids, d.UUID)
		}
	}
	s.knownMu.Unlock()
	if len(uuids) == 0 {
		return nil
	}
	unknown, err := s.opts.Store.UnknownDevices(ctx, uuids)
	if err != nil || len(unknown) == 0 || s.opts.Violations.On("cloud-get-skipped") {
		return err
	}
	index := map[string]int{}
	for i, d := range t.Devices {
		index[d.UUID] = i
	}
	var (
		wg  stdsync.WaitGroup
		mu  stdsync.Mutex
		sem = make(chan struct{}, s.opts.LookupConcurrency)
	)
	for _, u := range unknown {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			dev, found, err := s.opts.Cloud.GetDeviceByUUID(ctx, u)
			switch {
			case err != nil:
				s.metrics.lookups.WithLabelValues(OutcomeError).Inc()
				s.log.Warn("sync: look up device", "uuid", u, "err", err)
				return
			case !found || dev.ID <= 0:
				s.metrics.lookups.WithLabelValues("not_found").Inc()
				s.log.Warn("sync: target device unknown to the cloud", "uuid", u)
				return
			}
			s.metrics.lookups.WithLabelValues("found").Inc()
			mu.Lock()
			t.Devices[index[u]].Cloud = &store.CloudDevice{
				ID: dev.ID, DeviceType: dev.DeviceType, LogsChannel: dev.LogsChannel, Note: dev.Note, Name: dev.DeviceName,
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// remember records the devices of t, just applied with summary sum, as
// known to the store.
func (s *Syncer) remember(t store.Target, sum store.TargetSummary) {
	known := make(map[string]bool, len(t.Devices))
	for _, d := range t.Devices {
		known[d.UUID] = true
	}
	for _, u := range sum.Skipped {
		delete(known, u)
	}
	s.knownMu.Lock()
	s.known = known
	s.knownMu.Unlock()
}

// dropMarked removes devices marked for deletion from t
// (readded-stays-deleted).
func (s *Syncer) dropMarked(ctx context.Context, t *store.Target) error {
	marked, err := s.opts.Store.MarkedDevices(ctx)
	if err != nil {
		return err
	}
	m := map[string]bool{}
	for _, u := range marked {
		m[u] = true
	}
	kept := t.Devices[:0]
	for _, d := range t.Devices {
		if !m[d.UUID] {
			kept = append(kept, d)
		}
	}
	t.Devices = kept
	return nil
}

// removeSilently drops devices of removed apps without a delete hook
// (app-removal-silent).
func (s *Syncer) removeSilently(ctx context.Context, sum store.TargetSummary) {
	removed := map[int64]bool{}
	for _, a := range sum.AppsRemoved {
		removed[a] = true
	}
	for _, d := range sum.Marked {
		if removed[d.AppID] {
			s.opts.Store.RemoveDeleted(ctx, d.UUID)
		}
	}
}

// reconcileDownloads starts a download for each app whose target commit is
// not current, and cancels downloads no longer wanted (app removed, or a
// newer commit superseding the one in flight).
func (s *Syncer) reconcileDownloads(ctx, dctx context.Context) {
	want, err := s.opts.Store.AppsNeedingDownload(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("sync: read apps to download", "err", err)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	wanted := map[int64]store.AppDownload{}
	for _, a := range want {
		wanted[a.AppID] = a
	}
	for id, dl := range s.downloads {
		if a, ok := wanted[id]; !ok || a.Commit != dl.commit {
			s.log.Info("sync: download superseded", "app", id, "commit", dl.commit)
			dl.cancel()
			delete(s.downloads, id)
		}
	}
	for _, a := range want {
		if _, ok := s.downloads[a.AppID]; ok {
			continue
		}
		c, cancel := context.WithCancel(dctx)
		dl := &download{commit: a.Commit, image: a.Image, ctx: c, cancel: cancel}
		s.downloads[a.AppID] = dl
		s.metrics.downloading.Set(float64(len(s.downloads)))
		s.dlWG.Add(1)
		go s.runDownload(ctx, a.AppID, dl)
	}
	s.metrics.downloading.Set(float64(len(s.downloads)))
}

// runDownload ensures dl's assets tar, retrying with backoff, then makes its
// commit current unless superseded meanwhile.
func (s *Syncer) runDownload(ctx context.Context, appID int64, dl *download) {
	defer s.dlWG.Done()
	defer dl.cancel()
	if s.opts.Violations.On("hook-update-before-download") {
		if s.makeCurrent(ctx, appID, dl) {
			s.opts.OnChange()
		}
	}
	wait := s.opts.DownloadRetry
	for {
		select {
		case s.dlSem <- struct{}{}:
		case <-dl.ctx.Done():
			return
		}
		start := time.Now()
		err := s.opts.Assets.Ensure(dl.ctx, appID, dl.commit, dl.image)
		<-s.dlSem
		if dl.ctx.Err() != nil {
			return
		}
		if err == nil {
			s.metrics.downloads.WithLabelValues("ok").Inc()
			s.metrics.downloadSeconds.Observe(time.Since(start).Seconds())
			break
		}
		s.metrics.downloads.WithLabelValues(OutcomeError).Inc()
		if isPermanent(err) {
			// The same release would fail the same way (a tar over
			// ASSET_MAX_BYTES): wait for the app's target to change.
			s.log.Error("sync: download failed; not retried until the app's target changes", "app", appID, "commit", dl.commit, "image", dl.image, "err", err)
			return
		}
		s.log.Warn("sync: download failed; retrying", "app", appID, "commit", dl.commit, "image", dl.image, "in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-dl.ctx.Done():
			return
		}
		wait = min(2*wait, s.opts.DownloadRetryMax)
	}
	for !s.makeCurrent(ctx, appID, dl) {
		if dl.ctx.Err() != nil {
			return
		}
		select {
		case <-time.After(wait):
		case <-dl.ctx.Done():
			return
		}
	}
	if dl.ctx.Err() != nil {
		return // superseded
	}
	if err := s.opts.Assets.Prune(appID, dl.commit); err != nil {
		s.log.Warn("sync: prune old assets", "app", appID, "err", err)
	}
	s.mu.Lock()
	if s.downloads[appID] == dl {
		delete(s.downloads, appID)
	}
	s.metrics.downloading.Set(float64(len(s.downloads)))
	s.mu.Unlock()
	s.log.Info("sync: release ready", "app", appID, "commit", dl.commit)
	s.opts.OnChange()
}

// isPermanent reports whether err of Assets.Ensure says that the same
// release will never download (it has a Permanent method returning true).
func isPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// makeCurrent sets dl's commit as appID's current commit unless dl was
// superseded; it reports whether it is done (set, or no longer wanted).
func (s *Syncer) makeCurrent(ctx context.Context, appID int64, dl *download) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if dl.ctx.Err() != nil {
		return true
	}
	if err := s.opts.Store.SetAppCurrentCommit(ctx, appID, dl.commit); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return true
		}
		s.log.Error("sync: set current commit", "app", appID, "commit", dl.commit, "err", err)
		return false
	}
	return true
}
