package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/httpserver"
)

func init() {
	commands["fake-cloud"] = command{
		summary: "run the fake balena cloud (cloud protocol, control API, faults)",
		run:     runFakeCloud,
	}
}

func runFakeCloud(ctx context.Context, env *cliEnv, args []string) error {
	f := newFlags(env, "fake-cloud", "Run the fake balena cloud: the cloud protocol a supervisor speaks (target state, provisioning,\n"+
		"device PATCH and lookup, log stream), the control API under /control/v1/ (Bearer admin token;\n"+
		"see 'depharness cloud') and Prometheus metrics on /metrics, on one listener. With --registry,\n"+
		"releases pushed as files are built into images and pushed to that registry. With --gateway, a\n"+
		"gateway is created at start and its identity printed on stdout as environment lines.")
	listen := f.String("listen", "FAKE_CLOUD_LISTEN", "127.0.0.1:48480", "host:port to listen on (port 0 picks a free one)")
	adminToken := f.String("admin-token", "FAKE_CLOUD_ADMIN_TOKEN", "", "token of the control API; empty generates one (printed on stdout as FAKE_CLOUD_ADMIN_TOKEN=…)")
	reg := f.String("registry", "FAKE_CLOUD_REGISTRY", "", "host:port of the registry release images are pushed to; empty: releases must name a ready image")
	regToken := f.String("registry-token", "FAKE_REGISTRY_ADMIN_TOKEN", "", "the registry's admin token, sent with pushes to --registry")
	seed := f.Int64("seed", "FAKE_CLOUD_SEED", 0, "seed of generated names, ids, keys and delay jitter; 0 picks one (logged)")
	gateway := f.Bool("gateway", "FAKE_CLOUD_GATEWAY", false, "create one gateway at start and print API_ENDPOINT, DEVICE_UUID, DEVICE_ID, DEVICE_API_KEY on stdout")
	stateFile := f.String("state-file", "FAKE_CLOUD_STATE_FILE", "", "keep the model in this file across restarts (loaded at start, saved after changes and at exit); empty keeps it in memory only")
	saveInterval := f.Duration("save-interval", "FAKE_CLOUD_SAVE_INTERVAL", cloud.DefaultSaveInterval, "with --state-file, how soon a change is written")
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	if *seed < 0 {
		return usagef("--seed must not be negative")
	}
	if *saveInterval <= 0 {
		return usagef("--save-interval must be positive")
	}
	opts := cloud.Options{Logger: log, AdminToken: *adminToken, Seed: uint64(*seed), StateFile: *stateFile, SaveInterval: *saveInterval}
	if *reg != "" {
		if _, _, err := net.SplitHostPort(*reg); err != nil {
			return usagef("--registry %q: want host:port", *reg)
		}
		opts.Builder = registryBuilder(registry.NewBuilder(registry.BuilderOptions{Registry: *reg, Token: *regToken}))
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts.Registerer = metrics
	srv, err := cloud.New(opts)
	if err != nil {
		if *stateFile != "" {
			return usageError{err} // an unusable state file is bad configuration
		}
		return err
	}
	defer srv.Close() // on early returns; the normal end reports its error
	if *adminToken == "" {
		// Printed for the operator, never logged: no token in any log.
		fmt.Fprintf(env.stdout, "FAKE_CLOUD_ADMIN_TOKEN=%s\n", srv.AdminToken())
		log.Info("generated a control API token (printed on stdout as FAKE_CLOUD_ADMIN_TOKEN)")
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return usagef("listen on %s: %v", *listen, err)
	}
	hs := httpserver.Start(ln, srv, httpserver.Options{})
	addr := ln.Addr().String()
	log.Info("fake cloud listening", "addr", addr, "seed", srv.Seed(), "registry", *reg)

	if *gateway {
		gw, err := srv.CreateGateway(cloud.GatewaySpec{})
		if err != nil {
			_ = hs.Close()
			return err
		}
		fmt.Fprintf(env.stdout, "API_ENDPOINT=http://%s\nDEVICE_UUID=%s\nDEVICE_ID=%d\nDEVICE_API_KEY=%s\n", addr, gw.UUID, gw.DeviceID, gw.APIKey)
	}

	select {
	case <-hs.Done():
		return fmt.Errorf("serve: %w", hs.Err())
	case <-ctx.Done():
	}
	// Release requests held by Hang so that they can finish.
	srv.ResetFaults()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		// Long-lived log streams may outlast the grace period: Shutdown
		// cuts them.
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	if err := srv.Close(); err != nil {
		return err
	}
	log.Info("fake cloud stopped")
	return nil
}

// registryBuilder adapts the fake registry's image builder to the fake
// cloud's: release layers (paths from the image root) become registry
// layers.
func registryBuilder(b *registry.Builder) cloud.ImageBuilder {
	return cloud.ImageBuilderFunc(func(ctx context.Context, repo string, ls []cloud.Layer) (string, error) {
		rl := make([]registry.Layer, len(ls))
		for i, l := range ls {
			rl[i] = registry.LayerFromRoot(l.Files, l.Delete)
		}
		ref, _, err := b.Build(ctx, repo, rl...)
		return ref, err
	})
}
