package world

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/fleetview"
	"github.com/depharness/depharness/sim/gateway"
)

// StackOptions configure StartStack. Zero values mean the defaults given.
type StackOptions struct {
	Fakes FakesOptions
	Proxy ProxyOptions
	// NoGateway leaves the hooks to the user's own gateway app at
	// Proxy.HookAddress: no reference gateway and no fleet are started.
	NoGateway bool
	// GatewayListen is the reference gateway's hook listener; empty means
	// 127.0.0.1:0.
	GatewayListen string
	// GatewayMetricsListen, if set, serves the gateway's metrics there.
	GatewayMetricsListen string
	// FleetViewListen, if set, serves the live fleet view there
	// (sim/fleetview); "127.0.0.1:0" picks a free port.
	FleetViewListen string
	// FleetViewInterval is the fleet view's frame interval; zero means its
	// default.
	FleetViewInterval time.Duration
	// Policy is the gateway's answer to update hooks; empty means 200.
	Policy gateway.Policy
	// Profile is the fleet; Profile.Count devices are provisioned.
	Profile fleet.Profile
	// Demo seeds the demo world: two dependent apps with releases. Without
	// it the stack starts with no dependent app, and the fleet is
	// provisioned once there is one. A cloud that loaded a state file with
	// a gateway is not seeded: the stack resumes as that gateway (the one
	// named DemoGatewayName, else the first), with its apps, and the
	// gateway app adopts the devices the proxy still has.
	Demo bool
	// Logger, if nil, discards.
	Logger *slog.Logger
}

// Stack is the whole world in one process.
type Stack struct {
	*Fakes
	Proxy *Proxy
	// Identity is the gateway device the proxy runs as.
	Identity cloud.Gateway
	// Apps are the demo's dependent apps (empty without Demo). Resumed
	// apps have no Files or Checksum: what was pushed is not known.
	Apps []DemoApp
	// Resumed tells that the cloud came from a state file with a gateway,
	// so nothing was seeded.
	Resumed bool
	// Gateway and Fleet are nil with NoGateway.
	Gateway *gateway.Gateway
	Fleet   *fleet.Fleet
	// GatewayURL is the gateway app's hook listener base URL.
	GatewayURL string
	// GatewayMetricsURL is set when GatewayMetricsListen was.
	GatewayMetricsURL string
	// GatewayMetrics gathers the gateway's metrics.
	GatewayMetrics *prometheus.Registry
	// FleetView and FleetViewURL are set when FleetViewListen was.
	FleetView    *fleetview.View
	FleetViewURL string

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errMu   sync.Mutex
	runErr  error
	servers []*loopbackServer
}

// DemoGatewayName is the name of the gateway device StartStack creates.
const DemoGatewayName = "gateway"

// StartStack starts the fakes, creates the gateway identity and (with Demo)
// the demo apps and releases, starts the reference proxy and, unless
// NoGateway, the reference gateway app with its fleet.
func StartStack(ctx context.Context, opts StackOptions) (_ *Stack, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fk, err := StartFakes(ctx, opts.Fakes)
	if err != nil {
		return nil, err
	}
	s := &Stack{Fakes: fk}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if gws := fk.Cloud.Gateways(); len(gws) > 0 {
		s.Resumed = true
		s.Identity = gws[0]
		for _, gw := range gws {
			if gw.Name == DemoGatewayName {
				s.Identity = gw
				break
			}
		}
		for _, a := range fk.Cloud.Apps() {
			if a.ParentApp == s.Identity.AppID && a.Release != nil {
				s.Apps = append(s.Apps, DemoApp{App: a, Release: *a.Release})
			}
		}
		log.Info("resuming the world of the cloud's state file", "gateway", s.Identity.UUID, "apps", len(s.Apps))
	} else {
		s.Identity, err = fk.Cloud.CreateGateway(cloud.GatewaySpec{Name: DemoGatewayName, AppName: "gateway-fleet"})
		if err != nil {
			return nil, err
		}
		if opts.Demo {
			if s.Apps, err = SeedDemo(ctx, fk, s.Identity); err != nil {
				return nil, fmt.Errorf("seed demo world: %w", err)
			}
		}
	}
	var hookLn net.Listener
	if !opts.NoGateway {
		if hookLn, err = net.Listen("tcp", orDefaultAddr(opts.GatewayListen)); err != nil {
			return nil, fmt.Errorf("gateway listen: %w", err)
		}
		s.GatewayURL = "http://" + hookLn.Addr().String()
		opts.Proxy.HookAddress = hookBase(hookLn.Addr().String())
	}
	s.Proxy, _, err = fk.StartProxy(ctx, &s.Identity, opts.Proxy, log)
	if err != nil {
		if hookLn != nil {
			hookLn.Close()
		}
		return nil, err
	}
	if opts.NoGateway {
		return s, nil
	}
	if err := s.startGateway(ctx, opts, hookLn, log); err != nil {
		hookLn.Close()
		return nil, err
	}
	return s, nil
}

func (s *Stack) startGateway(ctx context.Context, opts StackOptions, hookLn net.Listener, log *slog.Logger) error {
	cl, err := client.New(client.Options{BaseURL: s.Proxy.URL, APIKey: s.Proxy.APIKey, Retry: client.Retry{MaxAttempts: -1}})
	if err != nil {
		return err
	}
	s.Fleet, err = fleet.New(opts.Profile, fleet.Options{Logger: log.With("component", "fleet")})
	if err != nil {
		return err
	}
	checksums := map[[2]string]string{}
	for _, a := range s.Apps {
		if a.Checksum != "" {
			checksums[[2]string{fmt.Sprint(a.App.ID), a.Release.Commit}] = a.Checksum
		}
	}
	var observer gateway.Observer
	if opts.FleetViewListen != "" {
		s.FleetView, err = fleetview.New(fleetview.Options{Fleet: s.Fleet, Apps: cl.Apps, Interval: opts.FleetViewInterval,
			Logger: log.With("component", "fleetview")})
		if err != nil {
			return err
		}
		observer = s.FleetView.Observer()
	}
	s.GatewayMetrics = prometheus.NewRegistry()
	var appIDs []int64
	for _, a := range s.Apps {
		appIDs = append(appIDs, a.App.ID)
	}
	s.Gateway, err = gateway.New(gateway.Options{
		Client: cl, Fleet: s.Fleet, Apps: appIDs, Policy: opts.Policy,
		Logger: log.With("component", "gateway"), Registerer: s.GatewayMetrics,
		Rand: rand.New(rand.NewPCG(uint64(opts.Profile.Seed), 1)), Observer: observer,
		ExpectedChecksum: func(appID int64, commit string) (string, bool) {
			c, ok := checksums[[2]string{fmt.Sprint(appID), commit}]
			return c, ok
		},
	})
	if err != nil {
		return err
	}
	s.servers = append(s.servers, serveOn(hookLn, s.Gateway.Handler(), log))
	if opts.GatewayMetricsListen != "" {
		ms, err := serve(opts.GatewayMetricsListen, promhttp.HandlerFor(s.GatewayMetrics, promhttp.HandlerOpts{}), log)
		if err != nil {
			return err
		}
		s.servers = append(s.servers, ms)
		s.GatewayMetricsURL = "http://" + ms.addr + "/metrics"
	}
	runs := map[string]func(context.Context) error{"fleet": s.Fleet.Run, "gateway": s.Gateway.Run}
	if s.FleetView != nil {
		vs, err := serve(opts.FleetViewListen, s.FleetView.Handler(), log)
		if err != nil {
			return fmt.Errorf("fleet view listen: %w", err)
		}
		s.servers = append(s.servers, vs)
		s.FleetViewURL = "http://" + vs.addr + "/"
		runs["fleetview"] = s.FleetView.Run
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	for name, run := range runs {
		s.wg.Go(func() {
			if err := run(runCtx); err != nil && runCtx.Err() == nil {
				log.Error("stopped", "component", name, "err", err)
				s.errMu.Lock()
				s.runErr = errors.Join(s.runErr, fmt.Errorf("%s: %w", name, err))
				s.errMu.Unlock()
			}
		})
	}
	return nil
}

// Close stops the gateway and fleet, the proxy and the fakes, in that order.
func (s *Stack) Close() error {
	var errs []error
	if s.cancel != nil {
		s.cancel()
		s.wg.Wait()
	}
	for _, srv := range s.servers {
		errs = append(errs, srv.close())
	}
	if s.Proxy != nil {
		errs = append(errs, s.Proxy.Stop())
	}
	errs = append(errs, s.Fakes.Close())
	s.errMu.Lock()
	errs = append(errs, s.runErr)
	s.errMu.Unlock()
	return errors.Join(errs...)
}

// DemoApp is a dependent app of the demo world with its release.
type DemoApp struct {
	App     cloud.App
	Release cloud.Release
	// Files are the release's /assets, flattened.
	Files map[string][]byte
	// Checksum is fleet.ChecksumFiles(Files): what a device verifies.
	Checksum string
}

// SeedDemo creates the demo's two dependent apps under gw's application,
// each with a release of firmware assets, and returns them.
func SeedDemo(ctx context.Context, f *Fakes, gw cloud.Gateway) ([]DemoApp, error) {
	specs := []struct {
		name   string
		config map[string]string
		env    map[string]string
		layers []cloud.Layer
	}{
		{
			name:   "thermostat-fw",
			config: map[string]string{"RESIN_SUPERVISOR_DELTA": "1"},
			env:    map[string]string{"SAMPLE_RATE": "10"},
			layers: []cloud.Layer{
				{Files: map[string][]byte{
					"assets/firmware.bin":   demoFirmware("thermostat", 1, 64<<10),
					"assets/manifest.json":  []byte(`{"board":"esp32","version":"1.0.0"}`),
					"assets/.build-info":    []byte("built-by=demo\n"),
					"assets/calib/zone.hex": []byte(":10000000DEADBEEF\n:00000001FF\n"),
				}},
				{Files: map[string][]byte{"assets/manifest.json": []byte(`{"board":"esp32","version":"1.0.1"}`)}},
			},
		},
		{
			name: "led-strip-fw",
			env:  map[string]string{"BRIGHTNESS": "80"},
			layers: []cloud.Layer{
				{Files: map[string][]byte{
					"assets/firmware.hex": demoFirmware("led-strip", 1, 32<<10),
					"assets/debug.log":    []byte("left over from the build\n"),
				}},
				{Delete: []string{"assets/debug.log"}},
			},
		},
	}
	var out []DemoApp
	for _, sp := range specs {
		app, err := f.Cloud.CreateApp(cloud.AppSpec{Name: sp.name, Gateway: gw.UUID, Config: sp.config, Environment: sp.env})
		if err != nil {
			return nil, err
		}
		rel, err := f.Cloud.PushRelease(ctx, app.ID, cloud.ReleaseSpec{Layers: sp.layers})
		if err != nil {
			return nil, err
		}
		files := FlattenAssets(sp.layers)
		out = append(out, DemoApp{App: app, Release: rel, Files: files, Checksum: fleet.ChecksumFiles(files)})
	}
	return out, nil
}

// FlattenAssets is the /assets content (paths relative to /assets) that
// release layers produce, as a supervisor must serve it.
func FlattenAssets(layers []cloud.Layer) map[string][]byte {
	rl := make([]registry.Layer, len(layers))
	for i, l := range layers {
		rl[i] = registry.LayerFromRoot(l.Files, l.Delete)
	}
	return registry.Flatten(rl...)
}

// demoFirmware is deterministic pseudo-firmware of n bytes.
func demoFirmware(name string, version, n int) []byte {
	r := rand.New(rand.NewPCG(uint64(len(name)), uint64(version)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, fmt.Sprintf("%s firmware v%d\n", name, version))
	return b
}

// FleetConvergence is Convergence over the devices the reference gateway
// manages (every device of the gateway identity with NoGateway): a resumed
// world may hold devices of an earlier, larger fleet that no one manages.
func (s *Stack) FleetConvergence() (converged, total int) {
	if s.Gateway == nil {
		return s.Convergence(s.Identity.UUID)
	}
	managed := map[string]bool{}
	for _, u := range s.Gateway.UUIDs() {
		managed[u] = true
	}
	return s.convergence(s.Identity.UUID, managed)
}

// Convergence counts the dependent devices of gateway gw whose commit, as
// the cloud last heard it from the supervisor, is their app's latest
// release: the end-to-end measure of a rollout.
func (f *Fakes) Convergence(gw string) (converged, total int) {
	return f.convergence(gw, nil)
}

// convergence is Convergence over the devices of only (all if nil).
func (f *Fakes) convergence(gw string, only map[string]bool) (converged, total int) {
	latest := map[int64]string{}
	for _, a := range f.Cloud.Apps() {
		if a.Release != nil {
			latest[a.ID] = a.Release.Commit
		}
	}
	for _, d := range f.Cloud.Devices(cloud.DeviceFilter{Gateway: gw}) {
		if only != nil && !only[d.UUID] {
			continue
		}
		total++
		if c, ok := latest[d.AppID]; ok && d.IsOnCommit != nil && *d.IsOnCommit == c {
			converged++
		}
	}
	return converged, total
}
