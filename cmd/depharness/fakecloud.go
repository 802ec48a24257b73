package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/httpserver"
	"github.com/depharness/depharness/internal/promreg"
	"github.com/depharness/depharness/internal/settings"
	"github.com/depharness/depharness/world"
)

// fakeCloudOptions are the fake-cloud command's settings.
type fakeCloudOptions struct {
	log                                          logOptions
	listen, adminToken, reg, regToken, stateFile string
	seed                                         int64
	gateway                                      bool
	saveInterval                                 time.Duration
}

func newFakeCloudCmd(env *cliEnv) *cobra.Command {
	var o fakeCloudOptions
	table := append(logSettings(&o.log, "info"),
		listenSetting(&o.listen, "127.0.0.1:48480", "FAKE_CLOUD_LISTEN"),
		cloudAdminTokenSetting(&o.adminToken, "token of the control API; empty generates one (printed on stdout as "+envCloudAdminToken+"=…, never logged)"),
		registrySetting(&o.reg, "host:port of the registry release images are pushed to; empty: releases must name a ready image", "FAKE_CLOUD_REGISTRY"),
		registryTokenSetting(&o.regToken, "the registry's admin token, sent with pushes to --registry"),
		settings.Setting{Flag: "seed", Legacy: []string{"FAKE_CLOUD_SEED"}, Value: settings.Int64(&o.seed, 0),
			Help: "seed of generated names, ids, keys and delay jitter; 0 picks one (logged)"},
		settings.Setting{Flag: "gateway", Legacy: []string{"FAKE_CLOUD_GATEWAY"}, Value: settings.Bool(&o.gateway, false),
			Help: "create one gateway at start and print API_ENDPOINT, DEVICE_UUID, DEVICE_ID, DEVICE_API_KEY on stdout"},
		settings.Setting{Flag: "state-file", Legacy: []string{"FAKE_CLOUD_STATE_FILE"}, Value: settings.Text(&o.stateFile, ""),
			Help: "keep the model in this file across restarts (loaded at start, saved after changes and at exit); empty keeps it in memory only"},
		settings.Setting{Flag: "save-interval", Legacy: []string{"FAKE_CLOUD_SAVE_INTERVAL"}, Value: settings.Duration(&o.saveInterval, cloud.DefaultSaveInterval),
			Help: "with --state-file, how soon a change is written"},
	)
	return newCommand("fake-cloud", "run the fake balena cloud (cloud protocol, control API, faults)",
		"Run the fake balena cloud: the cloud protocol a supervisor speaks (target state, provisioning,\n"+
			"device PATCH and lookup, log stream), the control API under /control/v1/ (Bearer admin token;\n"+
			"see 'depharness cloud') and Prometheus metrics on /metrics, on one listener. With --registry,\n"+
			"releases pushed as files are built into images and pushed to that registry. With --gateway, a\n"+
			"gateway is created at start and its identity printed on stdout as environment lines.",
		table, func(cmd *cobra.Command) error {
			return listenError(cmd, runFakeCloud(cmd.Context(), env, &o), settings.Listener{Addr: o.listen, Flags: []string{"listen"}})
		})
}

func runFakeCloud(ctx context.Context, env *cliEnv, o *fakeCloudOptions) error {
	log := o.log.logger(env.stderr)
	if o.seed < 0 {
		return usagef("--seed must not be negative")
	}
	if o.saveInterval <= 0 {
		return usagef("--save-interval must be positive")
	}
	opts := cloud.Options{Logger: log, AdminToken: o.adminToken, Seed: uint64(o.seed), StateFile: o.stateFile, SaveInterval: o.saveInterval}
	if o.reg != "" {
		if _, _, err := net.SplitHostPort(o.reg); err != nil {
			return usagef("--registry %q: want host:port", o.reg)
		}
		opts.Builder = world.CloudBuilder(registry.NewBuilder(registry.BuilderOptions{Registry: o.reg, Token: o.regToken}))
	}
	metrics := promreg.NewProcessRegistry()
	opts.Registerer = metrics
	srv, err := cloud.New(opts)
	if err != nil {
		if o.stateFile != "" {
			return usageError{err} // an unusable state file is bad configuration
		}
		return err
	}
	defer srv.Close() // on early returns; the normal end reports its error
	if o.adminToken == "" {
		// Printed for the operator, never logged: no token in any log.
		fmt.Fprintf(env.stdout, "%s=%s\n", envCloudAdminToken, srv.AdminToken())
		log.Info("generated a control API token (printed on stdout as " + envCloudAdminToken + ")")
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err // named by the caller
	}
	hs := httpserver.Start(ln, srv, httpserver.Options{})
	addr := ln.Addr().String()
	log.Info("fake cloud listening", "addr", addr, "seed", srv.Seed(), "registry", o.reg)

	if o.gateway {
		gw, err := srv.CreateGateway(cloud.GatewaySpec{})
		if err != nil {
			_ = hs.Close()
			return err
		}
		fmt.Fprintf(env.stdout, "API_ENDPOINT=http://%s\nDEVICE_UUID=%s\nDEVICE_ID=%d\nDEVICE_API_KEY=%s\n", addr, gw.UUID, gw.DeviceID, gw.APIKey)
	}

	if err := serveUntilCancelled(ctx, hs); err != nil {
		return err
	}
	// Release requests held by Hang so that they can finish; long-lived
	// log streams may still outlast the grace period.
	srv.ResetFaults()
	if err := shutdownWithGrace(hs); err != nil {
		return err
	}
	if err := srv.Close(); err != nil {
		return err
	}
	log.Info("fake cloud stopped")
	return nil
}

// serveUntilCancelled waits until ctx ends, or returns the error hs stopped
// serving with first.
func serveUntilCancelled(ctx context.Context, hs *httpserver.Server) error {
	select {
	case <-hs.Done():
		return fmt.Errorf("serve: %w", hs.Err())
	case <-ctx.Done():
		return nil
	}
}

// shutdownWithGrace shuts hs down, giving requests in flight 5s; the ones
// still running then (long-lived streams, throttled transfers) are cut,
// which is not an error.
func shutdownWithGrace(hs *httpserver.Server) error {
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
