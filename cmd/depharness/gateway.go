package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/depharness/depharness/internal/httpserver"
	"github.com/depharness/depharness/internal/promreg"
	"github.com/depharness/depharness/internal/settings"
	"github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/fleetview"
	"github.com/depharness/depharness/sim/gateway"
)

// defaultFleetSize is the number of devices without --devices or --profile.
const defaultFleetSize = 10

// gatewayOptions are the gateway command's settings.
type gatewayOptions struct {
	log                                       logOptions
	supervisor, apiKey, listen, apps, profile string
	policy, metricsListen, fleetViewListen    string
	checksums                                 string
	keyHeader                                 bool
	devices, concurrency                      int
	seed                                      int64
	seedGiven                                 bool
}

func newGatewayCmd(env *cliEnv) *cobra.Command {
	var o gatewayOptions
	table := append(logSettings(&o.log, "info"),
		settings.Setting{Flag: "supervisor-address", Env: "BALENA_SUPERVISOR_ADDRESS", Value: settings.Text(&o.supervisor, "http://127.0.0.1:48484"),
			Help: "the supervisor API's base URL"},
		settings.Setting{Flag: "api-key", Env: config.EnvAPIKey, Value: settings.Text(&o.apiKey, ""), Help: "the supervisor API key"},
		settings.Setting{Flag: "api-key-header", Legacy: []string{"GATEWAY_API_KEY_HEADER"}, Value: settings.Bool(&o.keyHeader, false),
			Help: "send the key as Authorization: Bearer instead of ?apikey="},
		settings.Setting{Flag: "listen", Legacy: []string{"GATEWAY_LISTEN"}, Value: settings.Text(&o.listen, "127.0.0.1:1337"),
			Help: "host:port of the hook server (0.0.0.0:1337 in a container); the supervisor's hook address is http://<listen>/v1/devices/"},
		settings.Setting{Flag: "app", Legacy: []string{"GATEWAY_APPS"}, Value: settings.Text(&o.apps, ""),
			Help: "dependent app ids to provision devices into, comma-separated, round-robin; empty: every app the supervisor lists"},
		settings.Setting{Flag: "devices", Legacy: []string{"GATEWAY_DEVICES"}, Value: settings.Int(&o.devices, -1),
			Help: fmt.Sprintf("number of devices; -1 means the profile's count (%d without --profile)", defaultFleetSize)},
		settings.Setting{Flag: "profile", Legacy: []string{"GATEWAY_PROFILE"}, Value: settings.Text(&o.profile, ""),
			Help: "JSON fleet profile (count, seed, flashTime, failureProbability, offline, logRate, rebootTime)"},
		policySetting(&o.policy, "GATEWAY_POLICY"),
		settings.Setting{Flag: "concurrency", Legacy: []string{"GATEWAY_CONCURRENCY"}, Value: settings.Int(&o.concurrency, 16),
			Help: "devices updated at once, and log lines in flight"},
		settings.Setting{Flag: "seed", Legacy: []string{"GATEWAY_SEED"}, Value: settings.Int64(&o.seed, 0),
			Help: "seed of the fleet and of retry jitter; when not given, the profile's seed"},
		settings.Setting{Flag: "metrics-listen", Legacy: []string{"GATEWAY_METRICS_LISTEN"}, Value: settings.Text(&o.metricsListen, ""),
			Help: "host:port serving Prometheus /metrics; empty disables it"},
		settings.Setting{Flag: "fleet-view-listen", Legacy: []string{"GATEWAY_FLEET_VIEW_LISTEN"}, Value: settings.Text(&o.fleetViewListen, ""),
			Help: "host:port serving the live fleet view (a browser page, e.g. 127.0.0.1:48487); empty disables it"},
		settings.Setting{Flag: "expected-checksums", Legacy: []string{"GATEWAY_EXPECTED_CHECKSUMS"}, Value: settings.Text(&o.checksums, ""),
			Help: `JSON file {"<appId>/<commit>": "<sha256 hex>"} of releases' expected checksums (fleet.Checksum)`},
	)
	return newCommand("gateway", "run the reference gateway app with a simulated fleet of dependent devices",
		"Run the reference gateway app: provision a simulated fleet of dependent devices through\n"+
			"the supervisor API, serve the supervisor's hooks (update, restart, delete) on --listen,\n"+
			"download each release's assets once, flash them onto the devices, report their state and\n"+
			"forward their logs. The hook address for the supervisor is http://<listen>/v1/devices/.",
		table, func(cmd *cobra.Command) error {
			o.seedGiven = cmd.Flags().Changed("seed")
			return listenError(cmd, runGateway(cmd.Context(), env, &o),
				settings.Listener{Addr: o.listen, Flags: []string{"listen"}},
				settings.Listener{Addr: o.metricsListen, Flags: []string{"metrics-listen"}},
				settings.Listener{Addr: o.fleetViewListen, Flags: []string{"fleet-view-listen"}})
		})
}

func runGateway(ctx context.Context, env *cliEnv, o *gatewayOptions) error {
	log := o.log.logger(env.stderr)
	pol := gateway.Policy(o.policy)
	if o.concurrency <= 0 {
		return usagef("--concurrency must be positive, got %d", o.concurrency)
	}
	appIDs, err := parseAppIDs(o.apps)
	if err != nil {
		return usagef("--app: %v", err)
	}
	profile := fleet.Profile{Count: defaultFleetSize}
	if o.profile != "" {
		if profile, err = fleet.LoadProfile(o.profile); err != nil {
			return usagef("--profile: %v", err)
		}
	}
	if o.devices >= 0 {
		profile.Count = o.devices
	} else if o.devices != -1 {
		return usagef("--devices must be ≥ 0 (or -1 for the profile's count), got %d", o.devices)
	}
	if o.seedGiven {
		profile.Seed = o.seed
	}
	expected, err := loadExpectedChecksums(o.checksums)
	if err != nil {
		return usagef("--expected-checksums: %v", err)
	}
	mode := client.KeyInQuery
	if o.keyHeader {
		mode = client.KeyInHeader
	}
	s := uint64(profile.Seed)
	c, err := client.New(client.Options{BaseURL: o.supervisor, APIKey: o.apiKey, KeyMode: mode,
		Retry: client.Retry{MaxAttempts: -1, Base: 200 * time.Millisecond, Max: 10 * time.Second, Rand: rand.New(rand.NewPCG(s, 1))}})
	if err != nil {
		return usagef("--supervisor-address: %v", err)
	}
	fl, err := fleet.New(profile, fleet.Options{Logger: log})
	if err != nil {
		return usagef("fleet: %v", err)
	}
	var view *fleetview.View
	var observer gateway.Observer
	if o.fleetViewListen != "" {
		if view, err = fleetview.New(fleetview.Options{Fleet: fl, Apps: c.Apps, Logger: log}); err != nil {
			return err
		}
		observer = view.Observer()
	}
	reg := promreg.NewProcessRegistry()
	gw, err := gateway.New(gateway.Options{Client: c, Fleet: fl, Apps: appIDs, Policy: pol, Concurrency: o.concurrency,
		Logger: log, Registerer: reg, Rand: rand.New(rand.NewPCG(s, 2)), ExpectedChecksum: expected, Observer: observer})
	if err != nil {
		return err
	}

	hookLn, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err // named by the caller
	}
	var servers []*httpserver.Server
	var mln net.Listener
	if o.metricsListen != "" {
		mln, err = net.Listen("tcp", o.metricsListen)
		if err != nil {
			hookLn.Close()
			return err
		}
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	servers = append(servers, httpserver.Start(hookLn, gw.Handler(), httpserver.Options{}))
	if view != nil {
		vln, err := net.Listen("tcp", o.fleetViewListen)
		if err != nil {
			for _, srv := range servers {
				srv.Close()
			}
			if mln != nil {
				mln.Close()
			}
			return err
		}
		servers = append(servers, httpserver.Start(vln, view.Handler(), httpserver.Options{}))
		log.Info("fleet view listening", "url", "http://"+vln.Addr().String()+"/")
	}
	if mln != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		servers = append(servers, httpserver.Start(mln, mux, httpserver.Options{}))
	}
	log.Info("gateway starting", "supervisor", o.supervisor, "hooks", "http://"+hookLn.Addr().String()+"/v1/devices/",
		"devices", profile.Count, "apps", appIDs, "policy", pol, "seed", profile.Seed)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(servers)+1)
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Go(func() {
			if err := srv.Err(); err != nil {
				errs <- fmt.Errorf("serve %s: %w", srv.Addr(), err)
			}
		})
	}
	wg.Go(func() { _ = fl.Run(ctx) })
	if view != nil {
		wg.Go(func() { _ = view.Run(ctx) })
	}
	wg.Go(func() {
		if err := gw.Run(ctx); err != nil {
			errs <- err
		}
	})

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		log.Error("gateway stopping", "err", runErr)
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	for _, srv := range servers {
		_ = srv.Shutdown(sctx) // closes what is left when sctx ends
	}
	wg.Wait()
	log.Info("gateway stopped")
	return runErr
}

// parseAppIDs reads a comma-separated list of positive app ids.
func parseAppIDs(s string) ([]int64, error) {
	var ids []int64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, err := strconv.ParseInt(part, 10, 64)
		if err != nil || id <= 0 {
			return nil, fmt.Errorf("%q is not a positive app id", part)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// loadExpectedChecksums reads {"<appId>/<commit>": "<sha256 hex>"}; an
// empty path gives nil (devices check download consistency only).
func loadExpectedChecksums(path string) (func(int64, string) (string, bool), error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range m {
		app, commit, ok := strings.Cut(k, "/")
		if _, err := strconv.ParseInt(app, 10, 64); !ok || err != nil || commit == "" {
			return nil, fmt.Errorf("key %q: want <appId>/<commit>", k)
		}
		if len(v) != 64 {
			return nil, fmt.Errorf("checksum of %s: want 64 hex characters", k)
		}
	}
	return func(app int64, commit string) (string, bool) {
		v, ok := m[strconv.FormatInt(app, 10)+"/"+commit]
		return v, ok
	}, nil
}
