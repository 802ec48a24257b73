// Package proxy is the reference proxy: the supervisor side of the
// dependent-device API, composed from its parts. It opens the store, builds
// the cloud client, the assets cache, the target sync, the hook dispatcher,
// the outbox and the HTTP API, and runs them until its context ends.
//
// It must not import fakes/, sim/, features/ or world/: it talks to the cloud,
// the registry and the gateway app over the network only.
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	gosync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/depharness/depharness/internal/httpserver"
	"github.com/depharness/depharness/internal/promreg"
	"github.com/depharness/depharness/proxy/assets"
	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/proxy/hooks"
	"github.com/depharness/depharness/proxy/httpapi"
	"github.com/depharness/depharness/proxy/outbox"
	"github.com/depharness/depharness/proxy/store"
	targetsync "github.com/depharness/depharness/proxy/sync"
)

// Options are the in-process knobs of New beyond the configuration.
type Options struct {
	// Logger, if nil, discards.
	Logger *slog.Logger
	// Registry, if nil, is a new registry with the Go and process collectors.
	// The metrics listener serves it.
	Registry *prometheus.Registry
	// Listener, if set, is used for the API instead of listening on
	// cfg.ListenAddress() (tests pass one on 127.0.0.1:0).
	Listener net.Listener
	// MetricsListener, if set, is used for metrics instead of listening on
	// cfg.MetricsAddress.
	MetricsListener net.Listener
}

// Proxy is one running reference proxy. Build it with New, run it with Run.
type Proxy struct {
	cfg      config.Config
	log      *slog.Logger
	reg      *prometheus.Registry
	store    *store.Store
	assets   *assets.Cache
	sync     *targetsync.Syncer
	hooks    *hooks.Dispatcher
	outbox   *outbox.Outbox
	api      *httpapi.Handler
	ln, mln  net.Listener
	addrOnce gosync.Once
	ready    chan struct{}
}

// New validates cfg, opens the store in cfg.DataDir and builds every part. It
// does not listen yet; Run does.
func New(cfg config.Config, opts Options) (*Proxy, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = promreg.NewProcessRegistry()
	}
	st, err := store.Open(cfg.DataDir, store.Options{
		ReportQueueBytes: cfg.ReportQueueBytes,
		// Violations that need a device's reports queued apart.
		KeepReportsUnmerged: cfg.Violations.On("outbox-reorder") || cfg.Violations.On("outbox-late-older-patch"),
	})
	if err != nil {
		return nil, fmt.Errorf("DATA_DIR %q: %w", cfg.DataDir, err)
	}
	p := &Proxy{cfg: cfg, log: log, reg: reg, store: st, ln: opts.Listener, mln: opts.MetricsListener, ready: make(chan struct{})}
	if err := p.build(); err != nil {
		st.Close()
		return nil, err
	}
	return p, nil
}

func (p *Proxy) build() error {
	cfg, log, reg := p.cfg, p.log, p.reg
	// The parts see the allowances in the same Set as the violations.
	cfg.Violations = cfg.Violations.Union(cfg.Allowances)
	poll := cfg.PollInterval
	if cfg.Violations.Allows("cadence-2x") {
		poll = poll * 3 / 2 // slower than the reference, within CLOUD-STATE's 2 intervals
	}
	cloud, err := cloudclient.New(cloudclient.Options{
		BaseURL: cfg.APIEndpoint, GatewayUUID: cfg.DeviceUUID, GatewayID: cfg.DeviceID,
		APIKey: cfg.DeviceAPIKey, Timeout: cfg.CloudTimeout, Registerer: reg, Logger: log.With("component", "cloud"),
		Violations: cfg.Violations, MaxStateBytes: cfg.TargetStateMaxBytes,
	})
	if err != nil {
		return err
	}
	p.assets, err = assets.New(assets.Options{
		Dir: filepath.Join(cfg.DataDir, "assets"), MaxBytes: cfg.AssetMaxBytes,
		StallTimeout: cfg.AssetStallTimeout, Insecure: cfg.RegistryInsecure, InsecureRegistries: cfg.RegistryInsecureHosts,
		Registerer: reg, Logger: log.With("component", "assets"), Violations: cfg.Violations,
	})
	if err != nil {
		return err
	}
	p.hooks, err = hooks.New(hooks.Options{
		Store: p.store, BaseAddress: cfg.HookAddress, RetryInterval: cfg.HookRetryInterval,
		Timeout: cfg.HookTimeout, Concurrency: cfg.HookConcurrency, BackoffMax: cfg.HookBackoffMax,
		Registerer: reg, Logger: log.With("component", "hooks"), Violations: cfg.Violations,
	})
	if err != nil {
		return err
	}
	// The outbox bounds each call itself (CLOUD_TIMEOUT, stretched after a
	// call whose outcome is unknown, see outbox.Options.CallTimeout): its
	// client allows the stretched bound.
	outboxCloud, err := cloudclient.New(cloudclient.Options{
		BaseURL: cfg.APIEndpoint, GatewayUUID: cfg.DeviceUUID, GatewayID: cfg.DeviceID,
		APIKey: cfg.DeviceAPIKey, Timeout: outbox.MaxCallTimeout(cfg.CloudTimeout), Registerer: reg, Logger: log.With("component", "cloud"),
		Violations: cfg.Violations,
	})
	if err != nil {
		return err
	}
	p.outbox, err = outbox.New(outbox.Options{
		Store: p.store, Cloud: outboxCloud, CallTimeout: cfg.CloudTimeout, LogBatchBytes: cfg.LogBatchBytes,
		Registerer: reg, Logger: log.With("component", "outbox"), Violations: cfg.Violations,
	})
	if err != nil {
		return err
	}
	p.sync, err = targetsync.New(targetsync.Options{
		Store: p.store, Cloud: cloud, Assets: p.assets, PollInterval: poll,
		OnChange: p.hooks.Notify, Registerer: reg, Logger: log.With("component", "sync"),
		Violations: cfg.Violations,
	})
	if err != nil {
		return err
	}
	p.api, err = httpapi.New(httpapi.Options{
		Store: p.store, Cloud: cloud, Assets: p.assets, APIKey: cfg.APIKey,
		OnProvisioned: p.sync.Trigger,
		OnDeviceReported: func(uuid string, targetFields bool) {
			// A report of status or is_online alone changes no hook owed.
			if targetFields {
				p.hooks.NotifyDevice(uuid)
			}
			p.outbox.Notify()
		},
		OnLogAccepted:   func(string) { p.outbox.Notify() },
		MaxLogLines:     cfg.LogBufferLines,
		MaxLogBytes:     cfg.LogBufferBytes,
		MaxLogLineBytes: cfg.LogLineMaxBytes,
		Violations:      cfg.Violations,
		Registerer:      reg, Logger: log.With("component", "api"),
	})
	return err
}

// Handler is the supervisor API.
func (p *Proxy) Handler() http.Handler { return p.api }

// MetricsHandler serves the proxy's Prometheus metrics at GET (and HEAD)
// /metrics, the metrics listener's only route: other paths are 404, other
// methods on /metrics 405.
func (p *Proxy) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{Registry: p.reg}))
	return mux
}

// Ready is closed once Run listens; Addr is valid from then on.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// Addr is the API's listen address once Ready is closed.
func (p *Proxy) Addr() string {
	if p.ln == nil {
		return ""
	}
	return p.ln.Addr().String()
}

// Run listens, serves the API and metrics, and runs the sync, hook and
// outbox loops until ctx ends; then it shuts down gracefully and closes the
// store. A Proxy runs once.
func (p *Proxy) Run(ctx context.Context) error {
	defer p.store.Close()
	defer p.assets.Close()
	if p.cfg.Allowances.Allows("slow-start") {
		// A slow start-up: the API listens (and /ping answers) 3 s late.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(SlowStart):
		}
	}
	var err error
	if p.ln == nil {
		if p.ln, err = net.Listen("tcp", p.cfg.ListenAddress()); err != nil {
			return fmt.Errorf("listen on %s: %w", p.cfg.ListenAddress(), err)
		}
	}
	if p.mln == nil && p.cfg.MetricsAddress != "off" {
		if p.mln, err = net.Listen("tcp", p.cfg.MetricsAddress); err != nil {
			p.ln.Close()
			return fmt.Errorf("metrics listen on %s: %w", p.cfg.MetricsAddress, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Both listeners bound what a client can hold (SRV-1).
	srvOpts := httpserver.Options{ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		ReadHeaderTimeout: p.cfg.ServerHeaderTimeout, BodyReadTimeout: p.cfg.ServerBodyTimeout, IdleTimeout: p.cfg.ServerIdleTimeout}
	if p.cfg.Violations.On("srv-no-deadlines") {
		srvOpts.ReadHeaderTimeout, srvOpts.BodyReadTimeout, srvOpts.IdleTimeout = -1, -1, -1
	}
	servers := []*httpserver.Server{httpserver.Start(p.ln, p.api, srvOpts)}
	if p.mln != nil {
		servers = append(servers, httpserver.Start(p.mln, p.MetricsHandler(), srvOpts))
	}
	errc := make(chan error, 8)
	var wg gosync.WaitGroup
	for _, srv := range servers {
		wg.Go(func() {
			if err := srv.Err(); err != nil {
				errc <- fmt.Errorf("serve %s: %w", srv.Addr(), err)
			}
		})
	}
	loops := map[string]func(context.Context) error{"sync": p.sync.Run, "hooks": p.hooks.Run, "outbox": p.outbox.Run}
	for name, run := range loops {
		wg.Go(func() {
			if err := run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	attrs := []any{"api", p.ln.Addr().String(), "hook_address", p.cfg.HookAddress, "data_dir", p.cfg.DataDir}
	if p.mln != nil {
		attrs = append(attrs, "metrics", p.mln.Addr().String())
	}
	if len(p.cfg.Violations) > 0 {
		p.log.Warn("deliberate contract violations enabled: for the suite's self-check only", "violations", fmt.Sprint(p.cfg.Violations))
	}
	if len(p.cfg.Allowances) > 0 {
		p.log.Warn("allowances enabled (deviations the contract allows): for the suite's self-check only", "allowances", fmt.Sprint(p.cfg.Allowances))
	}
	p.log.Info("reference proxy listening", attrs...)
	close(p.ready)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		p.log.Error("stopping on error", "err", runErr)
	}
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	for _, srv := range servers {
		srv.Shutdown(shutdownCtx) // closes what is left when shutdownCtx ends
	}
	wg.Wait()
	if p.cfg.Allowances.Allows("slow-stop") && runErr == nil {
		// A slow shutdown, still under the harness's 10 s before SIGKILL.
		time.Sleep(SlowStop)
	}
	p.log.Info("reference proxy stopped")
	return runErr
}

// SlowStart and SlowStop are the delays of the allowances slow-start (before
// the API listens) and slow-stop (before Run returns after ctx ends).
const (
	SlowStart = 3 * time.Second
	SlowStop  = 4 * time.Second
)
