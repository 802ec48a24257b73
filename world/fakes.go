// Package world composes the whole depharness world in one process: the fake
// cloud, the fake registry, the reference proxy, the reference gateway app and
// its simulated fleet, each on its own loopback listener. `depharness up`,
// `depharness load`, the compliance suite and the integration tests all start
// the world through it.
//
// It is the one package that may import every other part; nothing but
// commands and tests may import it.
package world

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/httpserver"
)

// FakesOptions configure StartFakes. Zero values mean the defaults given.
type FakesOptions struct {
	// CloudListen and RegistryListen are listen addresses; empty means
	// 127.0.0.1:0 (a free port).
	CloudListen, RegistryListen string
	// AdminToken guards the fake cloud's control API; empty generates one.
	AdminToken string
	// RegistryToken guards the fake registry's control API and pushes
	// (pulls stay open); empty generates one. The cloud's image builder
	// pushes with it.
	RegistryToken string
	// MaxBlobBytes bounds a blob pushed to the registry; zero means
	// registry.DefaultMaxBlobBytes.
	MaxBlobBytes int64
	// RegistryDir, if set, keeps the registry's blobs on disk.
	RegistryDir string
	// CloudStateFile, if set, keeps the cloud's model on disk (loaded when
	// it exists; see cloud.Options.StateFile). Release images name the
	// registry's address: a world resumed from these files needs the
	// registry on the same RegistryListen address.
	CloudStateFile string
	// Seed seeds both fakes; 0 draws one (logged by the cloud).
	Seed int64
	// Logger, if nil, discards.
	Logger *slog.Logger
}

// Fakes are the outside world of a supervisor: a fake cloud whose releases
// are built into a fake registry.
type Fakes struct {
	Cloud *cloud.Server
	// CloudURL is the cloud's base URL (a supervisor's API_ENDPOINT).
	CloudURL string
	// CloudMetrics gathers the cloud's metrics (served on CloudURL/metrics).
	CloudMetrics *prometheus.Registry
	Registry     *registry.Server
	// RegistryAddr is host:port of the registry, as it appears in image
	// references.
	RegistryAddr string
	// RegistryToken is the registry's admin token.
	RegistryToken string
	// Images builds and pushes images into Registry.
	Images *registry.Builder

	servers []*loopbackServer
}

// StartFakes starts the fake registry and the fake cloud, the cloud pushing
// release images to the registry. Close stops them.
func StartFakes(ctx context.Context, opts FakesOptions) (*Fakes, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fakes{RegistryToken: opts.RegistryToken}
	if f.RegistryToken == "" {
		f.RegistryToken = randomHex(16)
	}
	regMetrics := prometheus.NewRegistry()
	var err error
	f.Registry, err = registry.New(registry.Options{
		Dir: opts.RegistryDir, Logger: log.With("component", "fake-registry"), Metrics: registry.NewMetrics(regMetrics), Seed: opts.Seed,
		AdminToken: f.RegistryToken, MaxBlobBytes: opts.MaxBlobBytes,
	})
	if err != nil {
		return nil, err
	}
	regMux := http.NewServeMux()
	regMux.Handle("/metrics", promhttp.HandlerFor(regMetrics, promhttp.HandlerOpts{}))
	regMux.Handle("/control/v1/", http.StripPrefix("/control/v1", f.Registry.ControlHandler()))
	regMux.Handle("/", f.Registry)
	rs, err := serve(opts.RegistryListen, regMux, log)
	if err != nil {
		f.Registry.Close()
		return nil, fmt.Errorf("registry: %w", err)
	}
	f.servers = append(f.servers, rs)
	f.RegistryAddr = rs.addr
	f.Images = registry.NewBuilder(registry.BuilderOptions{Registry: rs.addr, Transport: registry.HandlerTransport(f.Registry), Token: f.RegistryToken})

	f.CloudMetrics = prometheus.NewRegistry()
	f.Cloud, err = cloud.New(cloud.Options{
		Logger:     log.With("component", "fake-cloud"),
		Registerer: f.CloudMetrics,
		AdminToken: opts.AdminToken,
		Seed:       uint64(opts.Seed),
		Builder:    CloudBuilder(f.Images),
		StateFile:  opts.CloudStateFile,
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	cs, err := serve(opts.CloudListen, f.Cloud, log)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cloud: %w", err)
	}
	f.servers = append(f.servers, cs)
	f.CloudURL = "http://" + cs.addr
	return f, nil
}

// CloudBuilder adapts the registry's image builder to the fake cloud's
// ImageBuilder: release layers (paths from the image root) become registry
// layers.
func CloudBuilder(b *registry.Builder) cloud.ImageBuilder {
	return cloud.ImageBuilderFunc(func(ctx context.Context, repo string, ls []cloud.Layer) (string, error) {
		rl := make([]registry.Layer, len(ls))
		for i, l := range ls {
			rl[i] = registry.LayerFromRoot(l.Files, l.Delete)
		}
		ref, _, err := b.Build(ctx, repo, rl...)
		return ref, err
	})
}

// Close stops the fakes' servers (and writes the cloud's state file a last
// time).
func (f *Fakes) Close() error {
	var errs []error
	for i := len(f.servers) - 1; i >= 0; i-- {
		errs = append(errs, f.servers[i].close())
	}
	f.servers = nil
	if f.Cloud != nil {
		errs = append(errs, f.Cloud.Close())
	}
	if f.Registry != nil {
		errs = append(errs, f.Registry.Close())
	}
	return errors.Join(errs...)
}

// loopbackServer is an HTTP server on its own listener (SRV-1's bounds,
// through httpserver).
type loopbackServer struct {
	addr string
	srv  *httpserver.Server
	once sync.Once
	err  error
}

// serve starts h on addr ("" = 127.0.0.1:0).
func serve(addr string, h http.Handler, log *slog.Logger) (*loopbackServer, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return serveOn(ln, h, log), nil
}

func serveOn(ln net.Listener, h http.Handler, log *slog.Logger) *loopbackServer {
	s := &loopbackServer{
		addr: ln.Addr().String(),
		srv:  httpserver.Start(ln, h, httpserver.Options{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}),
	}
	go func() {
		if err := s.srv.Err(); err != nil {
			log.Error("server stopped", "addr", s.addr, "err", err)
		}
	}()
	return s
}

func (s *loopbackServer) close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			s.err = err
		}
	})
	return s.err
}
