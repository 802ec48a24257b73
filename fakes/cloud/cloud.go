// Package cloud is a fake balena cloud: it serves the cloud protocol of
// CONTRACT.md ("Cloud protocol": target state with ETag, provisioning, device
// PATCH and lookup, the log stream) to any number of gateways, keeps its
// whole model in memory (and, with Options.StateFile, on disk across
// restarts), and offers what a test harness needs around it: a Go
// control API and the same over HTTP under /control/v1/, fault knobs
// (Delay, FailNext, Outage, Hang, RefuseLogLines), await functions built on
// change notification, a journal of received protocol requests (with the
// start of each body), and Prometheus metrics on /metrics.
//
// It imports only the leaf wire package api/cloud and the internal helpers
// from this module (plus the standard library and the Prometheus client);
// it must not import the proxy, the simulator or the suite. Images of
// releases are built through the small ImageBuilder interface, which the
// fake registry satisfies through an adapter.
package cloud

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/depharness/depharness/internal/broadcast"
	"github.com/depharness/depharness/internal/defaults"
)

// Default limits of Options.
const (
	DefaultJournalSize = 100_000
	// DefaultJournalBodyBytes bounds the body kept per journal entry.
	DefaultJournalBodyBytes = 64 << 10
	// DefaultJournalBodyBudget bounds the body bytes of the whole journal.
	DefaultJournalBodyBudget = 64 << 20
	DefaultLogsPerDevice     = 10_000
)

// Options configure New. Every zero value means the documented default.
type Options struct {
	// Logger, if nil, discards.
	Logger *slog.Logger
	// Registerer receives the metrics. If nil, New makes a fresh
	// prometheus.Registry, which then also serves /metrics.
	Registerer prometheus.Registerer
	// Gatherer serves /metrics. If nil, it is Registerer when that is a
	// *prometheus.Registry, else /metrics answers 404.
	Gatherer prometheus.Gatherer
	// AdminToken guards the HTTP control API ("Authorization: Bearer
	// <token>"). If empty, New generates a random one (see AdminToken).
	AdminToken string
	// Seed seeds the randomness of the fake (generated names, commits,
	// uuids, api keys, Delay jitter). If 0, a seed is drawn at random. The
	// seed in use is logged and returned by Seed, so a run can be replayed.
	Seed uint64
	// Now, if nil, is time.Now.
	Now func() time.Time
	// Builder builds release images from layers (PushRelease with Layers).
	// If nil, only releases that name a ready image can be pushed.
	Builder ImageBuilder
	// JournalSize bounds the journal of protocol requests (oldest dropped).
	// 0 means DefaultJournalSize.
	JournalSize int
	// JournalBodyBytes bounds the start of each request body kept in the
	// journal (Request.Body); 0 means DefaultJournalBodyBytes.
	JournalBodyBytes int
	// JournalBodyBudget bounds the body bytes the whole journal keeps: past
	// it, the oldest entries lose their bodies (their BodySize stays). 0
	// means DefaultJournalBodyBudget.
	JournalBodyBudget int
	// LogsPerDevice bounds the log lines kept per device (oldest dropped,
	// still counted by LogCount). 0 means DefaultLogsPerDevice.
	LogsPerDevice int
	// StateFile, if set, keeps the model on disk (see persist.go): New
	// loads it when the file exists (then Seed is the saved one, and an
	// empty AdminToken is the saved one), changes reach it within
	// SaveInterval, and Close writes it a last time.
	StateFile string
	// SaveInterval bounds how long a change waits to reach StateFile; 0
	// means DefaultSaveInterval.
	SaveInterval time.Duration
}

// Server is the fake cloud. It is an http.Handler; the caller chooses the
// listener. All methods are safe for concurrent use.
type Server struct {
	log        *slog.Logger
	metrics    *Metrics
	gatherer   prometheus.Gatherer
	adminToken string
	seed       uint64
	now        func() time.Time
	builder    ImageBuilder
	handler    http.Handler

	// Wrapped protocol handlers of /v6/, routed by handleV6.
	v6Get, v6Provision, v6Patch, unknown http.Handler

	faults faults

	// The state file (persist.go).
	stateFile      string
	saveMu         sync.Mutex // serialises Save
	lastSavedModel [32]byte   // hash of the last content written; guarded by saveMu
	stopSave       chan struct{}
	saveDone       chan struct{}
	closeOnce      sync.Once

	// changed is notified on every change; modelChanged on every change of
	// the model (not of the journal).
	changed, modelChanged broadcast.Signal

	mu      sync.Mutex
	pcg     *mrand.PCG  // the source of rng, kept in the state file
	rng     *mrand.Rand // guarded by mu
	model               // guarded by mu
	journal journal     // guarded by mu
	held    int         // requests held by Hang; guarded by mu
}

// New returns a fake cloud configured by opts.
func New(opts Options) (*Server, error) {
	s := &Server{
		log:        opts.Logger,
		adminToken: opts.AdminToken,
		seed:       opts.Seed,
		now:        opts.Now,
		builder:    opts.Builder,
		gatherer:   opts.Gatherer,
	}
	defaults.Logger(&s.log)
	defaults.Clock(&s.now)
	if s.seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		for _, c := range b {
			s.seed = s.seed<<8 | uint64(c)
		}
		if s.seed == 0 {
			s.seed = 1
		}
	}
	s.pcg = mrand.NewPCG(s.seed, s.seed^0x9e3779b97f4a7c15)
	s.rng = mrand.New(s.pcg)
	if s.adminToken == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		s.adminToken = hex.EncodeToString(b[:])
	}
	reg := opts.Registerer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg = r
	}
	if s.gatherer == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			s.gatherer = g
		}
	}
	m, err := NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.model.init()
	n := opts.JournalSize
	if n <= 0 {
		n = DefaultJournalSize
	}
	s.journal.limit = n
	s.journal.bodyLimit = opts.JournalBodyBytes
	if s.journal.bodyLimit <= 0 {
		s.journal.bodyLimit = DefaultJournalBodyBytes
	}
	s.journal.bodyBudget = opts.JournalBodyBudget
	if s.journal.bodyBudget <= 0 {
		s.journal.bodyBudget = DefaultJournalBodyBudget
	}
	s.logsPerDevice = opts.LogsPerDevice
	if s.logsPerDevice <= 0 {
		s.logsPerDevice = DefaultLogsPerDevice
	}
	if s.stateFile = opts.StateFile; s.stateFile != "" {
		loaded, err := s.loadState(s.stateFile, opts.AdminToken != "")
		if err != nil {
			return nil, fmt.Errorf("fake cloud: state file %s: %w", s.stateFile, err)
		}
		if loaded {
			s.log.Info("fake cloud state loaded", "file", s.stateFile, "gateways", len(s.gateways),
				"apps", len(s.apps), "devices", len(s.devices))
		}
		// Writable now, not at the first change: a bad path fails here.
		if err := s.Save(); err != nil {
			return nil, err
		}
		interval := opts.SaveInterval
		if interval <= 0 {
			interval = DefaultSaveInterval
		}
		s.stopSave, s.saveDone = make(chan struct{}), make(chan struct{})
		go s.saveLoop(interval, s.stopSave, s.saveDone)
	}
	s.faults.init(s.seed)
	s.handler = s.routes()
	s.log.Info("fake cloud ready", "seed", s.seed)
	return s, nil
}

// Seed returns the seed of the fake's randomness.
func (s *Server) Seed() uint64 { return s.seed }

// AdminToken returns the token of the HTTP control API.
func (s *Server) AdminToken() string { return s.adminToken }

// ServeHTTP serves the cloud protocol, /control/v1/ and /metrics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /device/v2/{uuid}/state", s.protocol(RouteState, s.handleState))
	mux.Handle("POST /device/v2/{uuid}/log-stream", s.protocol(RouteLogs, s.handleLogs))
	s.v6Get = s.protocol(RouteGet, s.handleGet)
	s.v6Provision = s.protocol(RouteProvision, s.handleProvision)
	s.v6Patch = s.protocol(RoutePatch, s.handlePatch)
	s.unknown = s.protocol(routeUnknown, s.handleUnknown)
	mux.HandleFunc("/v6/", s.handleV6)
	if s.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	}
	s.controlRoutes(mux)
	mux.Handle("/", s.unknown)
	return mux
}

// notifyLocked tells that the model changed: it wakes every waiter of the
// await functions and the state-file saver.
func (s *Server) notifyLocked() {
	s.wakeLocked()
	s.modelChanged.Notify()
}

// wakeLocked wakes every waiter of the await functions, for changes outside
// the model (the journal, held requests) that the state file does not keep.
func (s *Server) wakeLocked() {
	s.changed.Notify()
}
