package httpserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/internal/testkit"
)

// start serves h with opts on a free port for the test's duration.
func start(t *testing.T, h http.Handler, opts Options) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads from c until the server closes it or limit passes, and
// returns how long that took from start.
func closedWithin(t *testing.T, c net.Conn, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v, want it closed", limit)
	}
	return time.Since(start)
}

// dribble writes s one byte every d until it is written or the connection
// fails.
func dribble(c net.Conn, s string, d time.Duration) {
	for i := range len(s) {
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
		time.Sleep(d)
	}
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	io.WriteString(w, "ok")
})

func TestHeadersSentTooSlowlyAreCutOff(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := start(t, ok, Options{ReadHeaderTimeout: timeout})
	c := dial(t, s)
	t0 := time.Now()
	go dribble(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "+strings.Repeat("a", 100), 50*time.Millisecond)
	if took := closedWithin(t, c, t0, 10*timeout); took < timeout {
		t.Errorf("closed after %v, want no sooner than the header timeout %v", took, timeout)
	}
}

func TestABodySentTooSlowlyIsCutOff(t *testing.T) {
	const timeout = 300 * time.Millisecond
	readErr := make(chan error, 1)
	s := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
	}), Options{BodyReadTimeout: timeout})
	c := dial(t, s)
	t0 := time.Now()
	fmt.Fprintf(c, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	go dribble(c, strings.Repeat("b", 100), 50*time.Millisecond)
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("the handler read the whole dribbled body, want a read deadline error")
		}
		if took := time.Since(t0); took < timeout {
			t.Errorf("body read failed after %v, want no sooner than the body timeout %v", took, timeout)
		}
	case <-time.After(10 * timeout):
		t.Fatalf("the body read still runs after %v, want it cut off after %v", 10*timeout, timeout)
	}
	closedWithin(t, c, t0, 10*timeout)
}

func TestTheBodyDeadlineEndsWithTheBody(t *testing.T) {
	const timeout = 100 * time.Millisecond
	s := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// A long handler after its body: neither its context nor its
		// answer suffers from the body deadline.
		time.Sleep(4 * timeout)
		if err := r.Context().Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "done")
	}), Options{BodyReadTimeout: timeout})
	for range 2 { // the second request on the same kept-alive connection
		resp, err := http.Post(s.URL, "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "done" {
			t.Fatalf("got %d %q, want 200 done", resp.StatusCode, b)
		}
	}
}

func TestAnIdleKeptAliveConnectionIsClosed(t *testing.T) {
	const idle = 300 * time.Millisecond
	s := start(t, ok, Options{IdleTimeout: idle})
	c := dial(t, s)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	t0 := time.Now()
	if resp.Close {
		t.Fatal("the answer closes the connection, want it kept alive")
	}
	if took := closedWithin(t, c, t0, 10*idle); took < idle*9/10 {
		t.Errorf("idle connection closed after %v, want no sooner than the idle timeout %v", took, idle)
	}
}

func TestHeadersOverTheLimitAre431(t *testing.T) {
	s := start(t, ok, Options{MaxHeaderBytes: 1 << 10})
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	req.Header.Set("X-Big", strings.Repeat("x", 8<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("got %d, want 431", resp.StatusCode)
	}
}

func TestDefaultsAndNegativeValues(t *testing.T) {
	got := Options{}.withDefaults()
	if got.ReadHeaderTimeout != DefaultReadHeaderTimeout || got.BodyReadTimeout != DefaultBodyReadTimeout ||
		got.IdleTimeout != DefaultIdleTimeout || got.MaxHeaderBytes != DefaultMaxHeaderBytes {
		t.Errorf("zero options: got %+v, want the defaults", got)
	}
	if got.ReadHeaderTimeout > 30*time.Second || got.BodyReadTimeout > 30*time.Second || got.IdleTimeout > 120*time.Second {
		t.Errorf("defaults %+v exceed SRV-1's bounds (30 s reads, 120 s idle)", got)
	}
	off := Options{ReadHeaderTimeout: -1, BodyReadTimeout: -1, IdleTimeout: -1, MaxHeaderBytes: -1}.withDefaults()
	if off.ReadHeaderTimeout != 0 || off.BodyReadTimeout != 0 || off.IdleTimeout != 0 || off.MaxHeaderBytes != 0 {
		t.Errorf("negative options: got %+v, want every bound off", off)
	}
}

func TestCloseAndShutdownStopServing(t *testing.T) {
	s := start(t, ok, Options{})
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("URL: got %q", s.URL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err after Shutdown: got %v, want nil", err)
	}
	if _, err := http.Get(s.URL); err == nil {
		t.Error("GET after Shutdown: got an answer, want a refused connection")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Shutdown: %v", err)
	}
}

func TestOptionsStarReachesTheHandler(t *testing.T) {
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	})
	s := start(t, refuse, Options{})
	if got := testkit.RawStatus(t, s.Addr().String(), "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"); got != http.StatusUnauthorized {
		t.Errorf("OPTIONS * = %d, want the handler's 401 (not net/http's own 200)", got)
	}
}
