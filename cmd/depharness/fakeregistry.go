package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/httpserver"
	"github.com/depharness/depharness/internal/promreg"
	"github.com/depharness/depharness/internal/settings"
)

// fakeRegistryOptions are the fake-registry command's settings.
type fakeRegistryOptions struct {
	log                                                  logOptions
	listen, dir, metricsPath, push, pushRepo, adminToken string
	seed, maxBlob                                        int64
}

func newFakeRegistryCmd(env *cliEnv) *cobra.Command {
	var o fakeRegistryOptions
	table := append(logSettings(&o.log, "info"),
		listenSetting(&o.listen, "127.0.0.1:48481", "FAKE_REGISTRY_LISTEN"),
		settings.Setting{Flag: "dir", Legacy: []string{"FAKE_REGISTRY_DIR"}, Value: settings.Text(&o.dir, ""),
			Help: "directory keeping blobs and manifests across restarts; empty keeps them in memory"},
		settings.Setting{Flag: "metrics", Legacy: []string{"FAKE_REGISTRY_METRICS"}, Value: settings.Text(&o.metricsPath, "/metrics"),
			Help: "path of the Prometheus metrics on the listener; empty or off disables them"},
		settings.Setting{Flag: "seed", Legacy: []string{"FAKE_REGISTRY_SEED"}, Value: settings.Int64(&o.seed, 0),
			Help: "seed of the fault randomness; 0 picks one (logged)"},
		settings.Setting{Flag: "push", Legacy: []string{"FAKE_REGISTRY_PUSH"}, Value: settings.Text(&o.push, ""),
			Help: "directory pushed at start as the /assets of an image"},
		settings.Setting{Flag: "push-repo", Legacy: []string{"FAKE_REGISTRY_PUSH_REPO"}, Value: settings.Text(&o.pushRepo, "assets/demo"),
			Help: "repository of the image pushed with --push"},
		registryTokenSetting(&o.adminToken, "token the control API and pushes need (Authorization: Bearer, or a Docker login's password); empty leaves them open", "admin-token"),
		settings.Setting{Flag: "max-blob-bytes", Legacy: []string{"FAKE_REGISTRY_MAX_BLOB_BYTES"}, Value: settings.Int64(&o.maxBlob, registry.DefaultMaxBlobBytes),
			Help: "largest blob a push may upload; larger ones are answered 413"},
	)
	return newCommand("fake-registry", "run the fake OCI registry (pullable by Docker on 127.0.0.1)",
		"Run the fake OCI registry: the distribution API under /v2/ (in memory, or on disk\n"+
			"with --dir), Prometheus metrics and the fault control API (/control/v1/: throttle, fail/{kind},\n"+
			"corrupt, heal, requests) on the same listener. With --admin-token, pushes and the control API\n"+
			"need it (pulls never do). With --push, first push a directory as an image's /assets and print\n"+
			"its digest reference on stdout.",
		table, func(cmd *cobra.Command) error {
			return listenError(cmd, runFakeRegistry(cmd.Context(), env, &o), settings.Listener{Addr: o.listen, Flags: []string{"listen"}})
		})
}

func runFakeRegistry(ctx context.Context, env *cliEnv, o *fakeRegistryOptions) error {
	log := o.log.logger(env.stderr)
	if o.metricsPath == "off" {
		o.metricsPath = ""
	}
	if o.metricsPath != "" && (!strings.HasPrefix(o.metricsPath, "/") || strings.HasPrefix(o.metricsPath, "/v2")) {
		return usagef("--metrics %q must be a path starting with / outside /v2", o.metricsPath)
	}
	if o.seed == 0 {
		o.seed = time.Now().UnixNano()
	}
	if o.maxBlob <= 0 {
		return usagef("--max-blob-bytes must be positive")
	}

	reg := promreg.NewProcessRegistry()
	srv, err := registry.New(registry.Options{
		Dir: o.dir, Logger: log, Metrics: registry.NewMetrics(reg), Seed: o.seed, AdminToken: o.adminToken, MaxBlobBytes: o.maxBlob,
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err // named by the caller
	}
	mux := http.NewServeMux()
	mux.Handle("/", srv)
	mux.Handle("/control/v1/", http.StripPrefix("/control/v1", srv.ControlHandler()))
	if o.metricsPath != "" {
		mux.Handle("GET "+o.metricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	}
	hs := httpserver.Start(ln, mux, httpserver.Options{})
	addr := ln.Addr().String()
	log.Info("fake registry listening", "addr", addr, "dir", o.dir, "metrics", o.metricsPath, "seed", o.seed,
		"max_blob_bytes", o.maxBlob, "admin_token_set", o.adminToken != "")
	if o.adminToken == "" {
		log.Warn("no admin token: anyone who reaches the listener can push and drive the control API")
	}

	if o.push != "" {
		b := registry.NewBuilder(registry.BuilderOptions{Registry: addr, Token: o.adminToken})
		ref, _, err := b.BuildFromDir(ctx, o.pushRepo, o.push)
		if err != nil {
			_ = hs.Close()
			return fmt.Errorf("push %s: %w", o.push, err)
		}
		fmt.Fprintln(env.stdout, ref)
		log.Info("pushed", "dir", o.push, "ref", ref)
	}

	if err := serveUntilCancelled(ctx, hs); err != nil {
		return err
	}
	// Throttled transfers may outlast the grace period.
	if err := shutdownWithGrace(hs); err != nil {
		return err
	}
	log.Info("fake registry stopped")
	return nil
}
