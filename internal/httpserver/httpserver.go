// Package httpserver is the one HTTP server of every listener in the module
// (the reference proxy's API and metrics, the fakes, the gateway app, the
// suite's own servers): an http.Server on a listener the caller picks,
// shaped like httptest.Server (start, URL, close), that bounds what a client
// can hold (SRV-1): a read deadline for headers and one for a request's
// body, an idle timeout for kept-alive connections and a limit on header
// bytes. A slow or idle client ties up its own connection only.
//
// The body deadline runs from the end of the headers until the body has
// been read to its end: net/http lifts the connection's read deadline then
// (it starts its background read), so a handler that takes long after
// reading its body (an asset build, say) is neither cut off nor cancelled.
// Requests without a body have none.
//
// "OPTIONS *" is not answered by net/http: it reaches the handler like any
// other request (a handler of an API with a key answers it 401 without it).
//
// It imports only the standard library.
package httpserver

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of Options. The bounds of SRV-1 are 30 s for each read deadline
// and 120 s for an idle connection.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyReadTimeout   = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// Options configure a Server. A zero field means its default; a negative
// one turns the bound off.
type Options struct {
	// ReadHeaderTimeout bounds the reading of a request's headers, from the
	// request's first byte (DefaultReadHeaderTimeout).
	ReadHeaderTimeout time.Duration
	// BodyReadTimeout bounds the reading of a request's body, from the end
	// of its headers (DefaultBodyReadTimeout).
	BodyReadTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no new request
	// for that long (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxHeaderBytes limits the size of a request's headers; larger ones
	// are answered 431 (DefaultMaxHeaderBytes).
	MaxHeaderBytes int
	// ErrorLog, if nil, is net/http's default (the log package's logger).
	ErrorLog *log.Logger
}

func (o Options) withDefaults() Options {
	dur := func(d *time.Duration, def time.Duration) {
		switch {
		case *d == 0:
			*d = def
		case *d < 0:
			*d = 0
		}
	}
	dur(&o.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	dur(&o.BodyReadTimeout, DefaultBodyReadTimeout)
	dur(&o.IdleTimeout, DefaultIdleTimeout)
	switch {
	case o.MaxHeaderBytes == 0:
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	case o.MaxHeaderBytes < 0:
		o.MaxHeaderBytes = 0 // net/http's own default, 1 MiB
	}
	return o
}

// Server serves HTTP on a listener. Build it with Start.
type Server struct {
	// URL is "http://" and the listener's address.
	URL string
	// Listener is the listener served.
	Listener net.Listener

	srv  *http.Server
	done chan struct{}
	err  error
	once sync.Once
}

// Start serves h on ln with opts in a goroutine and returns at once. The
// server owns ln from then on.
func Start(ln net.Listener, h http.Handler, opts Options) *Server {
	opts = opts.withDefaults()
	s := &Server{
		URL:      "http://" + ln.Addr().String(),
		Listener: ln,
		srv: &http.Server{
			Handler:           bodyDeadline(h, opts.BodyReadTimeout),
			ReadHeaderTimeout: opts.ReadHeaderTimeout,
			IdleTimeout:       opts.IdleTimeout,
			MaxHeaderBytes:    opts.MaxHeaderBytes,
			ErrorLog:          opts.ErrorLog,
			// "OPTIONS *" goes to h like any request, so that it needs
			// the same key (net/http would answer it 200 itself).
			DisableGeneralOptionsHandler: true,
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s
}

// Listen listens on addr ("127.0.0.1:0" for any free port) and starts a
// Server there.
func Listen(addr string, h http.Handler, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return Start(ln, h, opts), nil
}

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.Listener.Addr() }

// Done is closed when the server has stopped serving.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is why the server stopped serving, once Done is closed: nil after
// Close or Shutdown.
func (s *Server) Err() error {
	<-s.done
	return s.err
}

// Shutdown stops accepting connections and waits, until ctx ends, for
// requests in progress to finish; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return err
}

// Close closes the listener and every connection at once. It may be called
// more than once.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() { err = s.srv.Close() })
	<-s.done
	return err
}

// bodyDeadline gives each request with a body d to send it, counted from
// the end of its headers (d 0: no deadline).
func bodyDeadline(h http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			h.ServeHTTP(w, r)
			return
		}
		// Only a writer that cannot set deadlines (a test recorder) fails.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		h.ServeHTTP(w, r)
	})
}
