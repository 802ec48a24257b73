package registry

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Fault knobs. They act on pulls (GET and HEAD) only, and never on the
// Builder's own requests (marked with BuilderHeader), so that images can
// still be pushed while a fault is armed. Each has its undo; Heal undoes
// them all.

type failRule struct {
	remaining int // requests still to fail; -1 is every request
	status    int
}

// Throttle limits the bandwidth of every blob body being served (including
// transfers already under way) to about bytesPerSec bytes per second.
// bytesPerSec <= 0 is Unthrottle.
func (s *Server) Throttle(bytesPerSec int64) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.rate = max(bytesPerSec, 0)
}

// Unthrottle serves blobs at full speed again.
func (s *Server) Unthrottle() { s.Throttle(0) }

// FailNext makes the next n pulls (GET or HEAD) of kind answer status (an
// HTTP error status, 400-599) with an OCI error body, without reaching the
// registry. It replaces any failure armed for kind; n <= 0 is Unfail(kind).
func (s *Server) FailNext(kind Kind, n, status int) {
	s.setFail(kind, n, status)
}

// Fail makes every pull of kind answer status until Unfail(kind).
func (s *Server) Fail(kind Kind, status int) {
	s.setFail(kind, -1, status)
}

// Unfail disarms the failures of kind.
func (s *Server) Unfail(kind Kind) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	delete(s.fail, kind)
}

func (s *Server) setFail(kind Kind, n, status int) {
	if status < 400 || status > 599 {
		panic(fmt.Sprintf("registry: fault status %d is not an HTTP error status", status))
	}
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if n == 0 || n < -1 {
		delete(s.fail, kind)
		return
	}
	s.fail[kind] = &failRule{remaining: n, status: status}
}

// takeFailure consumes one armed failure of kind, if any.
func (s *Server) takeFailure(kind Kind) (status int, ok bool) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	f := s.fail[kind]
	if f == nil {
		return 0, false
	}
	if f.remaining > 0 {
		f.remaining--
		if f.remaining == 0 {
			delete(s.fail, kind)
		}
	}
	return f.status, true
}

// CorruptNext makes the next n blob bodies served (GET answered 200 or 206,
// non-empty) differ from their digest: one byte, chosen with the seeded
// randomness, is flipped; the length is unchanged. It adds to any count
// already armed.
func (s *Server) CorruptNext(n int) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.corN += max(n, 0)
}

// Corrupt makes every GET of the blob or manifest with digest serve bytes
// that do not match it, until Uncorrupt.
func (s *Server) Corrupt(digest v1.Hash) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.corSet[digest.String()] = true
}

// Uncorrupt disarms CorruptNext and Corrupt: bodies are served intact.
func (s *Server) Uncorrupt() {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.corN = 0
	s.corSet = map[string]bool{}
}

// Heal disarms every fault: Unthrottle, Unfail of every kind, Uncorrupt.
func (s *Server) Heal() {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.rate = 0
	s.fail = map[Kind]*failRule{}
	s.corN = 0
	s.corSet = map[string]bool{}
}

func (s *Server) throttleRate() int64 {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.rate
}

// corruptOffset decides whether a body of size bytes served for a GET of
// kind/target is corrupted, and at which offset (-1: not corrupted).
func (s *Server) corruptOffset(kind Kind, target string, size int64) int64 {
	if size <= 0 {
		return -1
	}
	s.fmu.Lock()
	defer s.fmu.Unlock()
	switch {
	case s.corSet[target] && (kind == KindBlob || kind == KindManifest):
	case kind == KindBlob && s.corN > 0:
		s.corN--
	default:
		return -1
	}
	return s.rnd.Int63n(size)
}

// responseWriter records the status and body size of a response, counts
// blob bytes, and applies corruption and throttling to bodies.
type responseWriter struct {
	http.ResponseWriter
	s      *Server
	ctx    context.Context
	kind   Kind
	target string
	get    bool
	exempt bool // the builder's request: no faults

	status    int
	bytes     int64
	fault     string
	corruptAt int64 // body offset of the byte to flip; -1 none

	// throttling pace: since paceStart, paceSent bytes at paceRate.
	paceStart time.Time
	paceSent  int64
	paceRate  int64
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	w.corruptAt = -1
	if w.get && !w.exempt && (code == http.StatusOK || code == http.StatusPartialContent) {
		size, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64)
		if err == nil {
			w.corruptAt = w.s.corruptOffset(w.kind, w.target, size)
		}
		if w.corruptAt >= 0 {
			w.fault = "corrupt"
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if off := w.corruptAt - w.bytes; w.corruptAt >= 0 && off >= 0 && off < int64(len(p)) {
		q := append([]byte(nil), p...)
		q[off] ^= 0xff
		p = q
	}
	if !w.get || w.kind != KindBlob {
		n, err := w.ResponseWriter.Write(p)
		w.bytes += int64(n)
		return n, err
	}
	written := 0
	for written < len(p) {
		chunk := p[written:]
		var rate int64
		if !w.exempt {
			rate = w.s.throttleRate()
		}
		if rate > 0 {
			if w.fault == "" {
				w.fault = "throttle"
			}
			if rate != w.paceRate {
				w.paceStart, w.paceSent, w.paceRate = time.Now(), 0, rate
			}
			// Chunks of about 20ms worth of bytes.
			chunk = chunk[:min(int64(len(chunk)), max(rate/50, 1))]
		}
		n, err := w.ResponseWriter.Write(chunk)
		written += n
		w.bytes += int64(n)
		w.s.metrics.BlobBytes.Add(float64(n))
		if err != nil {
			return written, err
		}
		if rate > 0 {
			w.paceSent += int64(n)
			if err := w.pace(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// pace sleeps until the bytes sent since paceStart are due at paceRate.
func (w *responseWriter) pace() error {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	due := w.paceStart.Add(time.Duration(float64(w.paceSent) / float64(w.paceRate) * float64(time.Second)))
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.ctx.Done():
		return w.ctx.Err()
	case <-t.C:
		return nil
	}
}

// Flush lets handlers flush through the wrapper.
func (w *responseWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController access to the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
