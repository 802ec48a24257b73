package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/depharness/depharness/internal/httpserver"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/fleetview"
	"github.com/depharness/depharness/sim/gateway"
)

func init() {
	commands["gateway"] = command{
		summary: "run the reference gateway app with a simulated fleet of dependent devices",
		run:     runGateway,
	}
}

// defaultFleetSize is the number of devices without --devices or --profile.
const defaultFleetSize = 10

func runGateway(ctx context.Context, env *cliEnv, args []string) error {
	f := newFlags(env, "gateway", "Run the reference gateway app: provision a simulated fleet of dependent devices through\n"+
		"the supervisor API, serve the supervisor's hooks (update, restart, delete) on --listen,\n"+
		"download each release's assets once, flash them onto the devices, report their state and\n"+
		"forward their logs. The hook address for the supervisor is http://<listen>/v1/devices/.")
	supervisor := f.String("supervisor-address", "BALENA_SUPERVISOR_ADDRESS", "http://127.0.0.1:48484", "the supervisor API's base URL")
	apiKey := f.String("api-key", "BALENA_SUPERVISOR_API_KEY", "", "the supervisor API key")
	keyHeader := f.Bool("api-key-header", "GATEWAY_API_KEY_HEADER", false, "send the key as Authorization: Bearer instead of ?apikey=")
	listen := f.String("listen", "GATEWAY_LISTEN", "0.0.0.0:1337", "host:port of the hook server")
	apps := f.String("app", "GATEWAY_APPS", "", "dependent app ids to provision devices into, comma-separated, round-robin; empty: every app the supervisor lists")
	devices := f.Int("devices", "GATEWAY_DEVICES", -1, fmt.Sprintf("number of devices; -1 means the profile's count (%d without --profile)", defaultFleetSize))
	profilePath := f.String("profile", "GATEWAY_PROFILE", "", "JSON fleet profile (count, seed, flashTime, failureProbability, offline, logRate, rebootTime)")
	policy := f.String("policy", "GATEWAY_POLICY", string(gateway.PolicyAck), "answer to update hooks: 200 (acknowledge, update in background) or 202 (report when flashed)")
	concurrency := f.Int("concurrency", "GATEWAY_CONCURRENCY", 16, "devices updated at once, and log lines in flight")
	seed := f.Int64("seed", "GATEWAY_SEED", 0, "seed of the fleet and of retry jitter; when not given, the profile's seed")
	metricsListen := f.String("metrics-listen", "GATEWAY_METRICS_LISTEN", "", "host:port serving Prometheus /metrics; empty disables it")
	fleetViewListen := f.String("fleet-view-listen", "GATEWAY_FLEET_VIEW_LISTEN", "", "host:port serving the live fleet view (a browser page, e.g. 127.0.0.1:48487); empty disables it")
	checksums := f.String("expected-checksums", "GATEWAY_EXPECTED_CHECKSUMS", "", `JSON file {"<appId>/<commit>": "<sha256 hex>"} of releases' expected checksums (fleet.Checksum)`)
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	pol, err := gateway.ParsePolicy(*policy)
	if err != nil {
		return usagef("--policy: %v", err)
	}
	if *concurrency <= 0 {
		return usagef("--concurrency must be positive, got %d", *concurrency)
	}
	appIDs, err := parseAppIDs(*apps)
	if err != nil {
		return usagef("--app: %v", err)
	}
	profile := fleet.Profile{Count: defaultFleetSize}
	if *profilePath != "" {
		if profile, err = fleet.LoadProfile(*profilePath); err != nil {
			return usagef("--profile: %v", err)
		}
	}
	if *devices >= 0 {
		profile.Count = *devices
	} else if *devices != -1 {
		return usagef("--devices must be ≥ 0 (or -1 for the profile's count), got %d", *devices)
	}
	if set["seed"] {
		profile.Seed = *seed
	}
	expected, err := loadExpectedChecksums(*checksums)
	if err != nil {
		return usagef("--expected-checksums: %v", err)
	}
	mode := client.KeyInQuery
	if *keyHeader {
		mode = client.KeyInHeader
	}
	s := uint64(profile.Seed)
	c, err := client.New(client.Options{BaseURL: *supervisor, APIKey: *apiKey, KeyMode: mode,
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
	if *fleetViewListen != "" {
		if view, err = fleetview.New(fleetview.Options{Fleet: fl, Apps: c.Apps, Logger: log}); err != nil {
			return err
		}
		observer = view.Observer()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gw, err := gateway.New(gateway.Options{Client: c, Fleet: fl, Apps: appIDs, Policy: pol, Concurrency: *concurrency,
		Logger: log, Registerer: reg, Rand: rand.New(rand.NewPCG(s, 2)), ExpectedChecksum: expected, Observer: observer})
	if err != nil {
		return err
	}

	hookLn, err := net.Listen("tcp", *listen)
	if err != nil {
		return usagef("--listen %s: %v", *listen, err)
	}
	var servers []*httpserver.Server
	var mln net.Listener
	if *metricsListen != "" {
		mln, err = net.Listen("tcp", *metricsListen)
		if err != nil {
			hookLn.Close()
			return usagef("--metrics-listen %s: %v", *metricsListen, err)
		}
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	servers = append(servers, httpserver.Start(hookLn, gw.Handler(), httpserver.Options{}))
	if view != nil {
		vln, err := net.Listen("tcp", *fleetViewListen)
		if err != nil {
			for _, srv := range servers {
				srv.Close()
			}
			if mln != nil {
				mln.Close()
			}
			return usagef("--fleet-view-listen %s: %v", *fleetViewListen, err)
		}
		servers = append(servers, httpserver.Start(vln, view.Handler(), httpserver.Options{}))
		log.Info("fleet view listening", "url", "http://"+vln.Addr().String()+"/")
	}
	if mln != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		servers = append(servers, httpserver.Start(mln, mux, httpserver.Options{}))
	}
	log.Info("gateway starting", "supervisor", *supervisor, "hooks", "http://"+hookLn.Addr().String()+"/v1/devices/",
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
