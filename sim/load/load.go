// Package load drives load scenarios against a supervisor: a rollout of a
// new release, an environment change, churn of devices between online and
// offline, a log storm, a deletion wave and a restart wave. It runs the
// reference gateway app (sim/gateway) with a simulated fleet (sim/fleet)
// in-process, drives the fake cloud through its HTTP control API
// (fakes/cloud's ControlClient), samples convergence over time, and
// measures per-device latencies, API request latencies and errors; report.go
// renders the results as JSON and a self-contained HTML page.
//
// It talks to the supervisor over HTTP only, so it works the same against
// the in-process reference proxy and an external one. It may import
// api, sim/* and fakes/cloud; it must not import world/ or the
// reference proxy's packages (internal/depcheck enforces it): the command
// composes the in-process world and hands this package URLs and clients.
package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/defaults"
	"github.com/depharness/depharness/internal/httpserver"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
)

// Defaults of Options and Params.
const (
	DefaultDevices            = 1000
	DefaultGatewayConcurrency = 256
	// DefaultProvisionAhead leaves room for the devices a fast pipeline
	// holds between provisioning and the first report (about 1,000 a
	// second for up to 20 s in process), bounding only a backlog.
	DefaultProvisionAhead   = 65536
	DefaultFlashTime        = 20 * time.Millisecond
	DefaultFirmwareBytes    = 16 << 10
	DefaultTimeout          = 5 * time.Minute
	DefaultSampleEvery      = 20 * time.Millisecond
	DefaultLogLines         = 5
	DefaultLogConcurrency   = 64
	DefaultChurnDuration    = 10 * time.Second
	DefaultChurnProbability = 0.2
	DefaultChurnInterval    = time.Second
	DefaultRebootTime       = 100 * time.Millisecond
	// DefaultSupervisorConcurrency is the reference proxy's: hooks and
	// PATCHes to the cloud, 16 at a time.
	DefaultSupervisorConcurrency = 16
	// EnvVar is the app environment variable the env scenario changes.
	EnvVar = "LOAD_ENV"
)

// Options configure a Harness. Zero values mean the defaults given.
type Options struct {
	// ProxyURL is the supervisor API's base URL. Required.
	ProxyURL string
	// APIKey is the supervisor API key.
	APIKey string
	// Cloud drives the fake cloud the supervisor is attached to. Required.
	Cloud *cloud.ControlClient
	// GatewayUUID is the gateway device the supervisor runs as; empty means
	// the cloud's only gateway.
	GatewayUUID string
	// CloudLookup, if nil, reads the cloud's view of devices through Cloud
	// (one HTTP request listing the app's devices per sample). In-process,
	// a read of the cloud's model under one lock, of just the devices
	// asked for, is far cheaper at 100,000 devices and holds the cloud's
	// lock for less time.
	CloudLookup func(ctx context.Context, uuids []string) ([]CloudDevice, error)
	// BuildRelease, if set, builds a release's assets (paths relative to
	// /assets) into an image and returns its reference; nil pushes the
	// files as layers for the cloud to build.
	BuildRelease func(ctx context.Context, repo string, files map[string][]byte) (image string, err error)
	// HookListener is where the gateway serves hooks: the supervisor's hook
	// address must be http://<its address>/v1/devices/. Required.
	HookListener net.Listener
	// Devices, if zero, is DefaultDevices.
	Devices int
	// Seed seeds the fleet, the gateway's jitter, release contents and the
	// choice of devices to delete or restart.
	Seed int64
	// Policy, if empty, is 200.
	Policy gateway.Policy
	// GatewayConcurrency, if zero, is DefaultGatewayConcurrency.
	GatewayConcurrency int
	// ProvisionAhead bounds the devices the gateway has provisioned that
	// have not yet reported their first update (gateway.Options): zero is
	// DefaultProvisionAhead, negative no bound.
	ProvisionAhead int
	// FlashTime, if zero, is fixed DefaultFlashTime.
	FlashTime fleet.Dist
	// FirmwareBytes, if zero, is DefaultFirmwareBytes.
	FirmwareBytes int
	// Timeout bounds each phase; zero means DefaultTimeout.
	Timeout time.Duration
	// SampleEvery is the shortest interval between convergence samples;
	// zero means DefaultSampleEvery. A sample that takes long spaces the
	// next ones (ten times its duration), so that sampling
	// stays a small part of the load; a phase that has taken 1000 samples
	// keeps every other one and samples half as often from then on.
	SampleEvery time.Duration
	// SupervisorMetrics, if set, is read at each phase's start and end and
	// sampled (its gauges) during it; nil leaves the supervisor's own
	// figures out of the report.
	SupervisorMetrics MetricsSource
	// CloudMetrics, if set, reads the fake cloud's metrics, whose request
	// counters tell the supervisor's requests to the cloud for each phase's
	// floor; nil scrapes Cloud's BaseURL + "/metrics".
	CloudMetrics MetricsSource
	// RegistryMetrics, if set, reads the metrics of the registry the
	// supervisor pulls release images from, for the same purpose; nil
	// leaves image pulls out of the floor.
	RegistryMetrics MetricsSource
	// SupervisorConcurrency is the concurrency the floor sends the
	// supervisor's requests to the cloud and registry with (the harness
	// cannot observe it); zero means DefaultSupervisorConcurrency.
	SupervisorConcurrency int
	// Params are the scenarios' parameters.
	Params Params
	// Progress, if nil, shows nothing.
	Progress *Progress
	// Logger, if nil, discards. The harness's own lines carry
	// component=load, its gateway's and fleet's component=gateway and
	// fleet: give a Logger without a component.
	Logger *slog.Logger
}

// Params are the scenarios' parameters. Zero values mean the defaults.
type Params struct {
	// DeleteCount and RestartCount are the devices of a deletion or
	// restart wave; zero means a tenth of the devices, at least 1 and at
	// most 1000.
	DeleteCount, RestartCount int
	// LogLines per device of a log storm; zero means DefaultLogLines.
	LogLines int
	// LogConcurrency is the log requests in flight; zero means
	// DefaultLogConcurrency.
	LogConcurrency int
	// ChurnDuration is how long devices churn; zero means
	// DefaultChurnDuration.
	ChurnDuration time.Duration
	// ChurnProbability and ChurnInterval: every interval, an online device
	// goes offline with the probability, for 200ms–2s.
	ChurnProbability float64
	ChurnInterval    time.Duration
}

func (o *Options) defaults() error {
	if o.ProxyURL == "" || o.Cloud == nil || o.HookListener == nil {
		return errors.New("load: ProxyURL, Cloud and HookListener are required")
	}
	if o.Devices == 0 {
		o.Devices = DefaultDevices
	}
	if o.Devices < 0 {
		return fmt.Errorf("load: %d devices", o.Devices)
	}
	if o.Policy == "" {
		o.Policy = gateway.PolicyAck
	}
	defaults.Positive(&o.GatewayConcurrency, DefaultGatewayConcurrency)
	if o.ProvisionAhead == 0 {
		o.ProvisionAhead = DefaultProvisionAhead
	}
	if o.FlashTime == (fleet.Dist{}) {
		o.FlashTime = fleet.Dist{Dist: fleet.DistFixed, Mean: fleet.Duration(DefaultFlashTime)}
	}
	defaults.Positive(&o.FirmwareBytes, DefaultFirmwareBytes)
	defaults.Positive(&o.Timeout, DefaultTimeout)
	defaults.Positive(&o.SampleEvery, DefaultSampleEvery)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CloudMetrics == nil {
		o.CloudMetrics = ScrapeMetrics(strings.TrimRight(o.Cloud.BaseURL, "/")+"/metrics", nil)
	}
	if o.SupervisorConcurrency <= 0 {
		o.SupervisorConcurrency = DefaultSupervisorConcurrency
	}
	p := &o.Params
	wave := min(max(o.Devices/10, 1), 1000, o.Devices)
	defaults.Positive(&p.DeleteCount, wave)
	defaults.Positive(&p.RestartCount, wave)
	defaults.Positive(&p.LogLines, DefaultLogLines)
	defaults.Positive(&p.LogConcurrency, DefaultLogConcurrency)
	defaults.Positive(&p.ChurnDuration, DefaultChurnDuration)
	defaults.Positive(&p.ChurnProbability, DefaultChurnProbability)
	defaults.Positive(&p.ChurnInterval, DefaultChurnInterval)
	return nil
}

// CloudDevice is what the scenarios read of a device in the cloud.
type CloudDevice struct {
	UUID string
	// IsOnCommit is the commit the cloud last heard the device runs; empty
	// when none.
	IsOnCommit string
	IsOnline   bool
	// LogCount is the number of log lines the cloud ever received for it.
	LogCount int
}

// cloudDevices reads the cloud's view of the managed devices (those the
// cloud knows).
func (h *Harness) cloudDevices(ctx context.Context) ([]CloudDevice, error) {
	return h.cloudLookup(ctx, h.managed())
}

// cloudLookup reads the cloud's view of the devices of uuids (those the
// cloud knows).
func (h *Harness) cloudLookup(ctx context.Context, uuids []string) ([]CloudDevice, error) {
	if h.opts.CloudLookup != nil {
		return h.opts.CloudLookup(ctx, uuids)
	}
	ds, err := h.opts.Cloud.Devices(ctx, cloud.DeviceFilter{Gateway: h.gatewayUUID, AppID: h.app.ID})
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(uuids))
	for _, u := range uuids {
		want[u] = true
	}
	out := make([]CloudDevice, 0, len(uuids))
	for _, d := range ds {
		if !want[d.UUID] {
			continue
		}
		cd := CloudDevice{UUID: d.UUID, IsOnline: d.IsOnline, LogCount: d.LogCount}
		if d.IsOnCommit != nil {
			cd.IsOnCommit = *d.IsOnCommit
		}
		out = append(out, cd)
	}
	return out, nil
}

// Harness is a running reference gateway with its fleet, provisioned into a
// dependent app of its own, and the instruments the scenarios read.
type Harness struct {
	opts Options
	log  *slog.Logger

	api    *APIRecorder
	hooks  *HookRecorder
	client *client.Client // the gateway's, timed by api
	// probe is the scenarios' own client for sampling convergence, timed
	// by probeAPI apart from the gateway's requests.
	probe    *client.Client
	probeAPI *APIRecorder
	fleet    *fleet.Fleet
	gw       *gateway.Gateway
	metrics  *prometheus.Registry
	prevGW   map[string]float64

	gatewayUUID string
	app         cloud.App
	randMu      sync.Mutex
	rand        *rand.Rand
	releases    int
	envSeq      int
	fleetRan    bool

	checksumMu sync.Mutex
	checksums  map[string]string // "<app>/<commit>" → fleet checksum

	srv    *httpserver.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	runErr error
}

// Start creates a dependent app with a first release under the gateway,
// builds the fleet and the reference gateway (its supervisor client timed
// by an APIRecorder, its hook handler by a HookRecorder), serves hooks on
// HookListener and starts the gateway, which provisions the devices. Call
// Provision next; Close stops everything.
func Start(ctx context.Context, opts Options) (_ *Harness, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	h := &Harness{
		opts: opts, log: opts.Logger.With("component", "load"),
		api:       &APIRecorder{},
		probeAPI:  &APIRecorder{},
		rand:      rand.New(rand.NewPCG(uint64(opts.Seed), 3)),
		checksums: map[string]string{},
		prevGW:    map[string]float64{},
	}
	h.gatewayUUID = opts.GatewayUUID
	if h.gatewayUUID == "" {
		gws, err := opts.Cloud.Gateways(ctx)
		if err != nil {
			return nil, fmt.Errorf("load: listing gateways: %w", err)
		}
		if len(gws) != 1 {
			return nil, fmt.Errorf("load: the cloud has %d gateways; name the supervisor's", len(gws))
		}
		h.gatewayUUID = gws[0].UUID
	}
	name := fmt.Sprintf("load-%s-%04x", time.Now().UTC().Format("20060102t150405"), h.rand.Uint32()&0xffff)
	h.app, err = opts.Cloud.CreateApp(ctx, cloud.AppSpec{Name: name, Gateway: h.gatewayUUID, Environment: map[string]string{EnvVar: "0"}})
	if err != nil {
		return nil, fmt.Errorf("load: creating app: %w", err)
	}
	if _, err := h.pushRelease(ctx, h.newCommit()); err != nil {
		return nil, err
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 0
	tr.MaxIdleConnsPerHost = 2 * max(opts.GatewayConcurrency, opts.Params.LogConcurrency)
	h.api.Next = tr
	h.client, err = client.New(client.Options{BaseURL: opts.ProxyURL, APIKey: opts.APIKey, HTTPClient: &http.Client{Transport: h.api},
		Retry: client.Retry{MaxAttempts: -1, Rand: rand.New(rand.NewPCG(uint64(opts.Seed), 4))}})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	h.probeAPI.Next = tr
	h.probe, err = client.New(client.Options{BaseURL: opts.ProxyURL, APIKey: opts.APIKey, HTTPClient: &http.Client{Transport: h.probeAPI},
		Retry: client.Retry{MaxAttempts: 3, Rand: rand.New(rand.NewPCG(uint64(opts.Seed), 6))}})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	prof := fleet.Profile{
		Count: opts.Devices, Seed: opts.Seed, FlashTime: opts.FlashTime,
		RebootTime: fleet.Dist{Mean: fleet.Duration(DefaultRebootTime)},
		Offline: fleet.Churn{Probability: opts.Params.ChurnProbability, Interval: fleet.Duration(opts.Params.ChurnInterval),
			Duration: fleet.Dist{Dist: fleet.DistUniform, Min: fleet.Duration(200 * time.Millisecond), Max: fleet.Duration(2 * time.Second)}},
	}
	if h.fleet, err = fleet.New(prof, fleet.Options{Logger: h.opts.Logger.With("component", "fleet")}); err != nil {
		return nil, err
	}
	h.metrics = prometheus.NewRegistry()
	h.gw, err = gateway.New(gateway.Options{
		Client: h.client, Fleet: h.fleet, Apps: []int64{h.app.ID}, Policy: opts.Policy, Concurrency: opts.GatewayConcurrency,
		ProvisionAhead: max(opts.ProvisionAhead, 0),
		Logger:         h.opts.Logger.With("component", "gateway"), Registerer: h.metrics,
		Rand:             rand.New(rand.NewPCG(uint64(opts.Seed), 5)),
		ExpectedChecksum: h.expectedChecksum,
	})
	if err != nil {
		return nil, err
	}
	h.hooks = &HookRecorder{Next: h.gw.Handler()}
	h.srv = httpserver.Start(opts.HookListener, h.hooks, httpserver.Options{})
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel = cancel
	h.wg.Go(func() {
		if err := h.srv.Err(); err != nil {
			h.fail(fmt.Errorf("hook server: %w", err))
		}
	})
	h.wg.Go(func() {
		if err := h.gw.Run(runCtx); err != nil && runCtx.Err() == nil {
			h.fail(fmt.Errorf("gateway: %w", err))
		}
	})
	h.log.Info("load harness started", "app", h.app.Name, "app_id", h.app.ID, "devices", opts.Devices,
		"hooks", "http://"+opts.HookListener.Addr().String()+"/v1/devices/")
	return h, nil
}

func (h *Harness) fail(err error) {
	h.log.Error("load harness", "err", err)
	h.errMu.Lock()
	h.runErr = errors.Join(h.runErr, err)
	h.errMu.Unlock()
}

// Err returns what stopped the gateway or the hook server, if anything.
func (h *Harness) Err() error {
	h.errMu.Lock()
	defer h.errMu.Unlock()
	return h.runErr
}

// Close stops the gateway, the fleet and the hook server.
func (h *Harness) Close() error {
	h.cancel()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(sctx) // closes what is left when sctx ends
	h.wg.Wait()
	return h.Err()
}

// App returns the dependent app the harness provisions its devices into.
func (h *Harness) App() cloud.App { return h.app }

// GatewayUUID returns the gateway device the supervisor runs as.
func (h *Harness) GatewayUUID() string { return h.gatewayUUID }

// Gateway returns the reference gateway.
func (h *Harness) Gateway() *gateway.Gateway { return h.gw }

func (h *Harness) expectedChecksum(appID int64, commit string) (string, bool) {
	h.checksumMu.Lock()
	defer h.checksumMu.Unlock()
	c, ok := h.checksums[fmt.Sprintf("%d/%s", appID, commit)]
	return c, ok
}

// newCommit draws a release commit (40 lowercase hex characters).
func (h *Harness) newCommit() string {
	h.randMu.Lock()
	defer h.randMu.Unlock()
	return fmt.Sprintf("%016x%016x%08x", h.rand.Uint64(), h.rand.Uint64(), h.rand.Uint32())
}

// pushRelease pushes a new release of the harness's app with commit and
// fresh firmware, and records its checksum for the devices to verify.
func (h *Harness) pushRelease(ctx context.Context, commit string) (cloud.Release, error) {
	h.randMu.Lock()
	h.releases++
	n := h.releases
	fw := make([]byte, h.opts.FirmwareBytes)
	for i := range fw {
		fw[i] = byte(h.rand.Uint32())
	}
	h.randMu.Unlock()
	copy(fw, fmt.Sprintf("load firmware v%d %s\n", n, commit))
	files := map[string][]byte{
		"firmware.bin":  fw,
		"manifest.json": fmt.Appendf(nil, `{"version":"%d.0.0","commit":%q}`, n, commit),
	}
	h.checksumMu.Lock()
	h.checksums[fmt.Sprintf("%d/%s", h.app.ID, commit)] = fleet.ChecksumFiles(files)
	h.checksumMu.Unlock()
	spec := cloud.ReleaseSpec{Commit: commit}
	if h.opts.BuildRelease != nil {
		img, err := h.opts.BuildRelease(ctx, "load/"+strings.ToLower(h.app.Name), files)
		if err != nil {
			return cloud.Release{}, fmt.Errorf("load: building release image: %w", err)
		}
		spec.Image = img
	} else {
		layer := cloud.Layer{Files: map[string][]byte{}}
		for p, b := range files {
			layer.Files["assets/"+p] = b
		}
		spec.Layers = []cloud.Layer{layer}
	}
	rel, err := h.opts.Cloud.PushRelease(ctx, h.app.ID, spec)
	if err != nil {
		return rel, fmt.Errorf("load: pushing release: %w", err)
	}
	h.log.Info("release pushed", "app", h.app.ID, "commit", rel.Commit, "release", n)
	return rel, nil
}

// managed returns the uuids of the devices the gateway manages.
func (h *Harness) managed() []string { return h.gw.UUIDs() }
