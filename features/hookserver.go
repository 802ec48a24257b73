package features

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/depharness/depharness/fakes/hookrecv"
	"github.com/depharness/depharness/internal/httpserver"
)

// hookServer is the gateway app's hook listener of one scenario: a fixed
// loopback port (the hook address the target is started with) that can stop
// and start listening again, serving the current hookrecv.Receiver.
type hookServer struct {
	log  *slog.Logger
	port int

	mu     sync.Mutex
	recv   *hookrecv.Receiver
	prefix string
	srv    *httpserver.Server
	// listenedAt is when the listener last started listening again.
	listenedAt time.Time
}

// newHookServer listens on port (which must be free) for hooks under
// prefix.
func newHookServer(port int, prefix string, log *slog.Logger) (*hookServer, error) {
	h := &hookServer{log: log, prefix: prefix, port: port}
	h.recv = hookrecv.New(hookrecv.Options{Prefix: prefix, Logger: log.With("component", "hooks")})
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	h.serve(ln)
	return h, nil
}

// receiver returns the current receiver.
func (h *hookServer) receiver() *hookrecv.Receiver {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.recv
}

// baseURL is the hook address the target is given.
func (h *hookServer) baseURL() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("http://127.0.0.1:%d%s", h.port, h.prefix)
}

// setPrefix replaces the receiver with one expecting hooks under prefix;
// the callback carries over, recorded hooks do not.
func (h *hookServer) setPrefix(prefix string, onReceive hookrecv.OnReceive) *hookrecv.Receiver {
	r := hookrecv.New(hookrecv.Options{Prefix: prefix, Logger: h.log.With("component", "hooks")})
	if onReceive != nil {
		r.SetOnReceive(onReceive)
	}
	h.mu.Lock()
	old := h.recv
	h.recv, h.prefix = r, r.Prefix()
	h.mu.Unlock()
	old.Close()
	return r
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.receiver().ServeHTTP(w, r)
}

func (h *hookServer) serve(ln net.Listener) {
	srv := httpserver.Start(ln, h, httpserver.Options{})
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
	go func() {
		if err := srv.Err(); err != nil {
			h.log.Error("hook server", "err", err)
		}
	}()
}

// stopListening closes the listener and every open connection: the target
// then gets connection refused.
func (h *hookServer) stopListening() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
}

// startListening listens on the same port again.
func (h *hookServer) startListening(ctx context.Context) error {
	h.mu.Lock()
	running := h.srv != nil
	h.mu.Unlock()
	if running {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", h.port))
	if err != nil {
		return fmt.Errorf("listening for hooks again on port %d: %w", h.port, err)
	}
	h.serve(ln)
	h.mu.Lock()
	h.listenedAt = time.Now()
	h.mu.Unlock()
	return nil
}

// listeningSince is when the listener last started listening again (zero if
// it never stopped).
func (h *hookServer) listeningSince() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.listenedAt
}

func (h *hookServer) close() {
	h.receiver().Close()
	h.stopListening()
}
