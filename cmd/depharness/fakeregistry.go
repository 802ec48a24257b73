package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/httpserver"
)

func init() {
	commands["fake-registry"] = command{
		summary: "run the fake OCI registry (pullable by Docker on 127.0.0.1)",
		run:     runFakeRegistry,
	}
}

func runFakeRegistry(ctx context.Context, env *cliEnv, args []string) error {
	f := newFlags(env, "fake-registry", "Run the fake OCI registry: the distribution API under /v2/ (in memory, or on disk\n"+
		"with --dir), Prometheus metrics and the fault control API (/control/v1/: throttle, fail/{kind},\n"+
		"corrupt, heal, requests) on the same listener. With --admin-token, pushes and the control API\n"+
		"need it (pulls never do). With --push, first push a directory as an image's /assets and print\n"+
		"its digest reference on stdout.")
	listen := f.String("listen", "FAKE_REGISTRY_LISTEN", "127.0.0.1:48481", "host:port to listen on (port 0 picks a free one)")
	dir := f.String("dir", "FAKE_REGISTRY_DIR", "", "directory keeping blobs and manifests across restarts; empty keeps them in memory")
	metricsPath := f.String("metrics", "FAKE_REGISTRY_METRICS", "/metrics", "path of the Prometheus metrics on the listener; empty or off disables them")
	seed := f.Int64("seed", "FAKE_REGISTRY_SEED", 0, "seed of the fault randomness; 0 picks one (logged)")
	push := f.String("push", "FAKE_REGISTRY_PUSH", "", "directory pushed at start as the /assets of an image")
	pushRepo := f.String("push-repo", "FAKE_REGISTRY_PUSH_REPO", "assets/demo", "repository of the image pushed with --push")
	adminToken := f.String("admin-token", "FAKE_REGISTRY_ADMIN_TOKEN", "", "token the control API and pushes need (Authorization: Bearer, or a Docker login's password); empty leaves them open")
	maxBlob := f.Int64("max-blob-bytes", "FAKE_REGISTRY_MAX_BLOB_BYTES", registry.DefaultMaxBlobBytes, "largest blob a push may upload; larger ones are answered 413")
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	if *metricsPath == "off" {
		*metricsPath = ""
	}
	if *metricsPath != "" && (!strings.HasPrefix(*metricsPath, "/") || strings.HasPrefix(*metricsPath, "/v2")) {
		return usagef("--metrics %q must be a path starting with / outside /v2", *metricsPath)
	}
	if *seed == 0 {
		*seed = time.Now().UnixNano()
	}
	if *maxBlob <= 0 {
		return usagef("--max-blob-bytes must be positive")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := registry.New(registry.Options{
		Dir: *dir, Logger: log, Metrics: registry.NewMetrics(reg), Seed: *seed, AdminToken: *adminToken, MaxBlobBytes: *maxBlob,
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return usagef("listen on %s: %v", *listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", srv)
	mux.Handle("/control/v1/", http.StripPrefix("/control/v1", srv.ControlHandler()))
	if *metricsPath != "" {
		mux.Handle("GET "+*metricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	}
	hs := httpserver.Start(ln, mux, httpserver.Options{})
	addr := ln.Addr().String()
	log.Info("fake registry listening", "addr", addr, "dir", *dir, "metrics", *metricsPath, "seed", *seed,
		"max_blob_bytes", *maxBlob, "admin_token_set", *adminToken != "")
	if *adminToken == "" {
		log.Warn("no admin token: anyone who reaches the listener can push and drive the control API")
	}

	if *push != "" {
		b := registry.NewBuilder(registry.BuilderOptions{Registry: addr, Token: *adminToken})
		ref, _, err := b.BuildFromDir(ctx, *pushRepo, *push)
		if err != nil {
			_ = hs.Close()
			return fmt.Errorf("push %s: %w", *push, err)
		}
		fmt.Fprintln(env.stdout, ref)
		log.Info("pushed", "dir", *push, "ref", ref)
	}

	select {
	case <-hs.Done():
		return fmt.Errorf("serve: %w", hs.Err())
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		// Throttled transfers may outlast the grace period: Shutdown cuts
		// them.
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	log.Info("fake registry stopped")
	return nil
}
