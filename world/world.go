package world

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/promreg"
	"github.com/depharness/depharness/proxy"
	"github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/proxy/violation"
)

// Default intervals of an in-process world: short, so that a demo or a test
// converges in seconds rather than the historical 30 s loops.
const (
	DefaultPollInterval      = 500 * time.Millisecond
	DefaultHookRetryInterval = time.Second
	DefaultHookTimeout       = 5 * time.Second
)

// ProxyOptions configure the reference proxy of a world. Zero values mean
// the defaults given.
type ProxyOptions struct {
	// DataDir is the proxy's DATA_DIR. Required.
	DataDir string
	// Listen is the API's address; empty means 127.0.0.1:0.
	Listen string
	// MetricsListen is the metrics address; empty means 127.0.0.1:0.
	MetricsListen string
	// APIKey is BALENA_SUPERVISOR_API_KEY; empty generates one.
	APIKey string
	// HookAddress is the hook base address; empty means the seed's default.
	HookAddress string
	// Intervals; zero means the Default… constants of this package.
	PollInterval, HookRetryInterval, HookTimeout time.Duration
	// HookConcurrency; zero means the proxy's default.
	HookConcurrency int
	// TargetStateMaxBytes (TARGET_STATE_MAX_BYTES); zero means the proxy's
	// default.
	TargetStateMaxBytes int64
	// Violations are for the suite's self-check only.
	Violations violation.Set
}

// Proxy is a running reference proxy of a world.
type Proxy struct {
	*proxy.Proxy
	// URL is the API's base URL (BALENA_SUPERVISOR_ADDRESS).
	URL string
	// MetricsURL is the metrics endpoint's URL.
	MetricsURL string
	// APIKey is BALENA_SUPERVISOR_API_KEY.
	APIKey string
	// Registry gathers the proxy's metrics.
	Registry *prometheus.Registry
	// Config is the configuration it runs with.
	Config config.Config

	cancel context.CancelFunc
	done   chan error
}

// StartProxy creates a gateway identity in the fakes' cloud (unless gw is
// given) and starts a reference proxy for it. Stop it with Stop.
func (f *Fakes) StartProxy(ctx context.Context, gw *cloud.Gateway, opts ProxyOptions, log *slog.Logger) (*Proxy, cloud.Gateway, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.DataDir == "" {
		return nil, cloud.Gateway{}, errors.New("world: ProxyOptions.DataDir is required")
	}
	var g cloud.Gateway
	if gw != nil {
		g = *gw
	} else {
		var err error
		if g, err = f.Cloud.CreateGateway(cloud.GatewaySpec{}); err != nil {
			return nil, g, fmt.Errorf("create gateway: %w", err)
		}
	}
	key := opts.APIKey
	if key == "" {
		key = randomHex(16)
	}
	cfg := config.Config{
		APIEndpoint: f.CloudURL, DeviceUUID: g.UUID, DeviceID: g.DeviceID, DeviceAPIKey: g.APIKey,
		APIKey: key, HookAddress: opts.HookAddress, DataDir: opts.DataDir,
		PollInterval:        orDefault(opts.PollInterval, DefaultPollInterval),
		HookRetryInterval:   orDefault(opts.HookRetryInterval, DefaultHookRetryInterval),
		HookTimeout:         orDefault(opts.HookTimeout, DefaultHookTimeout),
		HookConcurrency:     opts.HookConcurrency,
		Violations:          opts.Violations,
		TargetStateMaxBytes: opts.TargetStateMaxBytes,
	}
	ln, err := net.Listen("tcp", orDefaultAddr(opts.Listen))
	if err != nil {
		return nil, g, fmt.Errorf("proxy listen: %w", err)
	}
	mln, err := net.Listen("tcp", orDefaultAddr(opts.MetricsListen))
	if err != nil {
		ln.Close()
		return nil, g, fmt.Errorf("proxy metrics listen: %w", err)
	}
	host, port := splitHostPort(ln.Addr().String())
	cfg.ListenHost, cfg.Port, cfg.MetricsAddress = host, port, mln.Addr().String()
	reg := promreg.NewProcessRegistry()
	// The proxy names its parts itself (component=hooks, sync, …): a
	// component given here would appear twice on each line.
	p, err := proxy.New(cfg, proxy.Options{Logger: log, Registry: reg, Listener: ln, MetricsListener: mln})
	if err != nil {
		ln.Close()
		mln.Close()
		return nil, g, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	wp := &Proxy{
		Proxy: p, URL: "http://" + ln.Addr().String(), MetricsURL: "http://" + mln.Addr().String() + "/metrics",
		APIKey: key, Registry: reg, Config: cfg.WithDefaults(), cancel: cancel, done: make(chan error, 1),
	}
	go func() { wp.done <- p.Run(runCtx) }()
	select {
	case <-p.Ready():
	case err := <-wp.done:
		cancel()
		return nil, g, fmt.Errorf("proxy: %w", err)
	}
	return wp, g, nil
}

// Stop shuts the proxy down gracefully and waits for it.
func (p *Proxy) Stop() error {
	p.cancel()
	err := <-p.done
	p.done <- err // Stop may be called again
	return err
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func orDefaultAddr(a string) string {
	if a == "" {
		return "127.0.0.1:0"
	}
	return a
}

func splitHostPort(addr string) (string, int) {
	h, p, _ := net.SplitHostPort(addr)
	var port int
	fmt.Sscanf(p, "%d", &port)
	return h, port
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// hookBase is the hook base address for a gateway app listening on addr.
func hookBase(addr string) string {
	return "http://" + strings.TrimSuffix(addr, "/") + "/v1/devices/"
}
