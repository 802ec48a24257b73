// Package fleetview is a live view of a simulated fleet in the browser:
// the dependent apps and their releases, every device as a cell coloured
// by its state (provisioning, pending, downloading, flashing, on target,
// failed, offline, deleted), the rollout's progress and rate, hooks and
// reports per second, and the last errors. It is served by `depharness
// up` and `depharness gateway`.
//
// Its data comes from the fleet's events (fleet.Watch) and the gateway's
// Observer; the page gets it over server-sent events: a snapshot when it
// connects, then every Interval the devices that changed (a delta, or a
// snapshot again when more than a third changed). Every client shares the
// one encoded frame of a step; a client whose buffer of frames is full
// (it reads too slowly) is dropped, never waited for, and its browser
// reconnects for a fresh snapshot. The page is self-contained: its files
// are embedded, it loads nothing from elsewhere.
//
// It imports the simulator's packages and the API's wire types only; it
// never talks to the supervisor itself (Options.Apps does).
package fleetview

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/defaults"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
)

//go:embed static
var static embed.FS

// Defaults of Options.
const (
	DefaultInterval     = 500 * time.Millisecond
	DefaultAppsInterval = 2 * time.Second
	DefaultMaxClients   = 32
	DefaultClientBuffer = 8
	DefaultWriteTimeout = 10 * time.Second
)

// Options configure a View. Zero values mean the defaults given.
type Options struct {
	// Fleet is the fleet shown. Required.
	Fleet *fleet.Fleet
	// Apps, if set, lists the supervisor's dependent apps (the gateway's
	// client.Apps): their names and release commits. Without it an app's
	// release is the latest update hook's commit.
	Apps func(context.Context) ([]api.App, error)
	// Interval is the time between two frames (DefaultInterval).
	Interval time.Duration
	// AppsInterval is the time between two calls of Apps
	// (DefaultAppsInterval).
	AppsInterval time.Duration
	// MaxClients bounds the pages connected at once; more are answered
	// 503 (DefaultMaxClients).
	MaxClients int
	// ClientBuffer is the number of frames a client may lag behind before
	// it is dropped (DefaultClientBuffer).
	ClientBuffer int
	// WriteTimeout bounds the writing of one frame to a client
	// (DefaultWriteTimeout).
	WriteTimeout time.Duration
	// Now, if nil, is time.Now.
	Now func() time.Time
	// Logger, if nil, discards.
	Logger *slog.Logger
}

// View serves the live fleet view. Pass Observer to the gateway's
// Options, serve Handler, and call Run.
type View struct {
	opts      Options
	log       *slog.Logger
	model     *Model
	stopWatch func()

	mu      sync.Mutex
	clients map[*sseClient]struct{}
	closed  bool
	dropped uint64
}

type sseClient struct {
	frames chan []byte
	gone   chan struct{} // closed when the view drops the client
}

// New returns the view of opts.Fleet; it watches the fleet from now on,
// until Run returns.
func New(opts Options) (*View, error) {
	if opts.Fleet == nil {
		return nil, errors.New("fleetview: Fleet is required")
	}
	defaults.Positive(&opts.Interval, DefaultInterval)
	defaults.Positive(&opts.AppsInterval, DefaultAppsInterval)
	defaults.Positive(&opts.WriteTimeout, DefaultWriteTimeout)
	defaults.Positive(&opts.MaxClients, DefaultMaxClients)
	defaults.Positive(&opts.ClientBuffer, DefaultClientBuffer)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	v := &View{opts: opts, log: opts.Logger, model: NewModel(opts.Fleet, opts.Now),
		clients: map[*sseClient]struct{}{}}
	v.stopWatch = opts.Fleet.Watch(v.model.FleetEvent)
	return v, nil
}

// Observer is what the gateway tells the view (gateway.Options.Observer).
func (v *View) Observer() gateway.Observer { return v.model }

// Model is the view's state.
func (v *View) Model() *Model { return v.model }

// Run publishes a frame every Interval and refreshes the apps every
// AppsInterval until ctx is done; then it stops watching the fleet, ends
// every client's stream and returns nil. Call it once.
func (v *View) Run(ctx context.Context) error {
	defer v.close()
	var wg sync.WaitGroup
	defer wg.Wait()
	if v.opts.Apps != nil {
		wg.Go(func() { v.pollApps(ctx) })
	}
	tick := time.NewTicker(v.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			v.step()
		}
	}
}

func (v *View) pollApps(ctx context.Context) {
	for {
		actx, cancel := context.WithTimeout(ctx, v.opts.AppsInterval)
		apps, err := v.opts.Apps(actx)
		cancel()
		if err == nil {
			v.model.SetApps(apps)
		} else if ctx.Err() == nil {
			v.log.Debug("fleet view: listing apps", "err", err)
		}
		t := time.NewTimer(v.opts.AppsInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-v.model.appsStale:
			t.Stop()
		}
	}
}

// step publishes the next frame to every client, dropping those whose
// buffer is full.
func (v *View) step() {
	v.mu.Lock()
	defer v.mu.Unlock()
	kind, seq, data := v.model.Step()
	msg := sseMessage(kind, seq, data)
	for c := range v.clients {
		select {
		case c.frames <- msg:
		default:
			v.dropLocked(c)
			v.dropped++
			v.log.Info("fleet view: a client too slow to follow was dropped", "buffer", v.opts.ClientBuffer)
		}
	}
}

func (v *View) dropLocked(c *sseClient) {
	if _, ok := v.clients[c]; ok {
		delete(v.clients, c)
		close(c.gone)
	}
}

func (v *View) close() {
	v.stopWatch()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	v.closed = true
	for c := range v.clients {
		v.dropLocked(c)
	}
}

// Clients returns the clients connected, and how many were dropped for
// being too slow.
func (v *View) Clients() (connected int, dropped uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.clients), v.dropped
}

func sseMessage(kind string, seq uint64, data []byte) []byte {
	b := make([]byte, 0, len(data)+48)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, "\nevent: "...)
	b = append(b, kind...)
	b = append(b, "\ndata: "...)
	b = append(b, data...) // JSON: no newline
	return append(b, "\n\n"...)
}

// Handler serves the page and its data:
//
//	GET /                     the page
//	GET /static/…             its script and style
//	GET /events               server-sent events: "snap" then "delta"s
//	GET /api/state            the current snapshot, as JSON
//	GET /api/devices/{index}  one device in detail
func (v *View) Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, sub, "index.html")
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(sub)))
	mux.HandleFunc("GET /events", v.serveEvents)
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) {
		_, data := v.model.Snapshot()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(data)
	})
	mux.HandleFunc("GET /api/devices/{index}", func(w http.ResponseWriter, r *http.Request) {
		i, err := strconv.Atoi(r.PathValue("index"))
		info, ok := v.model.Device(i)
		if err != nil || !ok {
			http.Error(w, "no such device", http.StatusNotFound)
			return
		}
		writeJSON(w, info)
	})
	return mux
}

func (v *View) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	c := &sseClient{frames: make(chan []byte, v.opts.ClientBuffer), gone: make(chan struct{})}
	v.mu.Lock()
	switch {
	case v.closed:
		v.mu.Unlock()
		http.Error(w, "fleet view stopped", http.StatusServiceUnavailable)
		return
	case len(v.clients) >= v.opts.MaxClients:
		v.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("too many fleet view clients (at most %d)", v.opts.MaxClients), http.StatusServiceUnavailable)
		return
	}
	// Registered in the same critical section as the snapshot is taken,
	// so the next frame this client gets is the delta that follows it.
	seq, snap := v.model.Snapshot()
	v.clients[c] = struct{}{}
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.dropLocked(c)
		v.mu.Unlock()
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(v.opts.WriteTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if write(append([]byte("retry: 2000\n"), sseMessage("snap", seq, snap)...)) != nil {
		return
	}
	for {
		select {
		case msg := <-c.frames:
			if write(msg) != nil {
				return
			}
		case <-c.gone:
			return
		case <-r.Context().Done():
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(b)
}
