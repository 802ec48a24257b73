// Package registry is the project's fake OCI registry: go-containerregistry's
// pkg/registry (in memory, or with blobs and manifests on disk) behind a
// middleware that records requests, counts them in Prometheus metrics and
// injects faults (throttled blob bandwidth, failing requests, corrupt
// blobs); plus an image builder that turns asset files into images whose
// files live under /assets, pushes them, and predicts the flattened /assets
// content a compliant supervisor must serve.
//
// With an admin token (Options.AdminToken) the control API and every push
// need it; pulls never do. A pushed blob is bounded (Options.MaxBlobBytes,
// 413 beyond) and, with a Dir, spooled to disk while it is uploaded.
//
// It must not depend on the proxy, the simulator or the suite: it imports
// only the standard library, go-containerregistry and the Prometheus client.
package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"

	"github.com/depharness/depharness/internal/broadcast"
	"github.com/depharness/depharness/internal/defaults"
)

// Options configure a Server. The zero value of each field is its
// documented default.
type Options struct {
	// Dir, if set, keeps blobs and manifests on disk under it, so that a
	// new Server on the same Dir serves what an earlier one stored (one
	// Server at a time; blobs are re-hashed on each read, fine for test
	// sizes). Empty means in memory.
	Dir string
	// Logger receives one debug line per request and a warning for
	// requests the registry does not understand. Nil discards.
	Logger *slog.Logger
	// Metrics, if nil, are created unregistered.
	Metrics *Metrics
	// Seed seeds the randomness of faults (which byte of a blob is
	// corrupted).
	Seed int64
	// Now, if nil, is time.Now. It stamps recorded requests.
	Now func() time.Time
	// RequestLogSize bounds the recorded requests (oldest dropped); zero
	// means 10000.
	RequestLogSize int
	// AdminToken, if set, guards the control API and every push: requests
	// other than GET and HEAD under /v2/ need "Authorization: Bearer
	// <token>" (or Basic with the token as password) and are answered 401
	// without it. Pulls stay open. Empty leaves everything open.
	AdminToken string
	// MaxBlobBytes bounds one pushed blob: an upload that would exceed it
	// is answered 413 (before its body is read when its Content-Length
	// says so). Zero means DefaultMaxBlobBytes.
	MaxBlobBytes int64
}

// Server is the fake registry: an http.Handler serving the OCI
// distribution API under /v2/, with fault knobs and a request log. The
// caller chooses the listener. It is safe for concurrent use.
type Server struct {
	inner   http.Handler
	journal *journal // nil in memory mode
	uploads *uploads
	// tokenSum is the SHA-256 of Options.AdminToken; nil when none is set.
	tokenSum *[sha256.Size]byte
	log      *slog.Logger
	metrics  *Metrics
	now      func() time.Time
	logSize  int

	fmu    sync.Mutex // guards the fault state below
	rnd    *rand.Rand
	rate   int64 // blob bytes per second; 0 is unthrottled
	fail   map[Kind]*failRule
	corN   int
	corSet map[string]bool // digests ("sha256:…") served corrupt

	rmu      sync.Mutex // guards the request log
	requests []Request
	changed  broadcast.Signal // notified when requests changes
}

// New returns a Server. With opts.Dir it creates the directory if needed and
// loads the manifests stored there.
func New(opts Options) (*Server, error) {
	s := &Server{
		log:     opts.Logger,
		metrics: opts.Metrics,
		now:     opts.Now,
		logSize: opts.RequestLogSize,
		rnd:     rand.New(rand.NewSource(opts.Seed)),
		fail:    map[Kind]*failRule{},
		corSet:  map[string]bool{},
	}
	defaults.Logger(&s.log)
	if s.metrics == nil {
		s.metrics = NewMetrics(nil)
	}
	defaults.Clock(&s.now)
	defaults.Positive(&s.logSize, 10000)
	if opts.AdminToken != "" {
		sum := sha256.Sum256([]byte(opts.AdminToken))
		s.tokenSum = &sum
	}
	defaults.Positive(&opts.MaxBlobBytes, DefaultMaxBlobBytes)
	spool := ""
	if opts.Dir != "" {
		spool = filepath.Join(opts.Dir, "uploads")
	}
	var err error
	if s.uploads, err = newUploads(spool, opts.MaxBlobBytes); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	ropts := []ggcr.Option{ggcr.Logger(log.New(io.Discard, "", 0))}
	var entries []journalEntry
	if opts.Dir != "" {
		blobDir := filepath.Join(opts.Dir, "blobs")
		if err := os.MkdirAll(blobDir, 0o755); err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
		j, es, err := openJournal(filepath.Join(opts.Dir, "manifests"))
		if err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
		s.journal, entries = j, es
		ropts = append(ropts, ggcr.WithBlobHandler(ggcr.NewDiskBlobHandler(blobDir)))
	}
	s.inner = ggcr.New(ropts...)
	if s.journal != nil {
		if err := s.journal.replay(s.inner, entries); err != nil {
			_ = s.journal.close()
			return nil, fmt.Errorf("registry: %w", err)
		}
	}
	return s, nil
}

// Close releases the disk store's files. The Server must not serve after.
func (s *Server) Close() error {
	if s.journal == nil {
		return nil
	}
	return s.journal.close()
}

// Kind is the kind of a registry request, by path.
type Kind string

// The request kinds.
const (
	KindManifest Kind = "manifest" // /v2/<repo>/manifests/<ref>
	KindBlob     Kind = "blob"     // /v2/<repo>/blobs/<digest>
	KindUpload   Kind = "upload"   // /v2/<repo>/blobs/uploads/…
	KindTags     Kind = "tags"     // /v2/<repo>/tags/list
	KindCatalog  Kind = "catalog"  // /v2/_catalog
	KindBase     Kind = "base"     // /v2/
	KindOther    Kind = "other"    // anything else (answered 404)
)

// Request is one request the registry answered.
type Request struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Kind   Kind      `json:"kind"`
	Repo   string    `json:"repo,omitempty"`   // "" for base, catalog and other
	Target string    `json:"target,omitempty"` // manifest tag or digest, blob digest, upload id
	Status int       `json:"status"`
	Bytes  int64     `json:"bytes"`           // response body bytes written
	Fault  string    `json:"fault,omitempty"` // "", "fail", "corrupt" or "throttle"
	// Done is when the answer was complete (its last byte written).
	Done time.Time `json:"done"`
}

// classify splits a request path into its kind, repository and target,
// the way ggcr's registry routes it.
func classify(p string) (kind Kind, repo, target string) {
	if p == "/v2" || p == "/v2/" {
		return KindBase, "", ""
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return KindOther, "", ""
	}
	el := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	n := len(el)
	switch {
	case el[n-1] == "_catalog":
		return KindCatalog, "", ""
	case n >= 3 && el[n-2] == "manifests":
		return KindManifest, strings.Join(el[:n-2], "/"), el[n-1]
	case n >= 3 && el[n-2] == "blobs" && el[n-1] == "uploads":
		return KindUpload, strings.Join(el[:n-2], "/"), ""
	case n >= 4 && el[n-3] == "blobs" && el[n-2] == "uploads":
		return KindUpload, strings.Join(el[:n-3], "/"), el[n-1]
	case n >= 3 && el[n-2] == "blobs":
		return KindBlob, strings.Join(el[:n-2], "/"), el[n-1]
	case n >= 3 && el[n-2] == "tags":
		return KindTags, strings.Join(el[:n-2], "/"), ""
	}
	return KindOther, "", ""
}

// maxManifestBytes bounds a manifest body kept for the disk journal.
const maxManifestBytes = 4 << 20

// ServeHTTP serves the registry API with the armed faults applied.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind, repo, target := classify(r.URL.Path)
	rec := Request{Time: s.now(), Method: r.Method, Path: r.URL.Path, Kind: kind, Repo: repo, Target: target}
	exempt := r.Header.Get(BuilderHeader) != ""
	pull := (r.Method == http.MethodGet || r.Method == http.MethodHead) && !exempt
	rw := &responseWriter{ResponseWriter: w, s: s, ctx: r.Context(), kind: kind, target: target,
		get: r.Method == http.MethodGet, exempt: exempt}

	defer func() {
		rec.Status, rec.Bytes, rec.Fault = rw.status, rw.bytes, rw.fault
		rec.Done = s.now()
		if rec.Status == 0 {
			rec.Status = http.StatusOK
		}
		s.metrics.Requests.WithLabelValues(string(kind), r.Method, fmt.Sprint(rec.Status)).Inc()
		if rec.Fault != "" {
			s.metrics.Faults.WithLabelValues(rec.Fault).Inc()
		}
		lvl := slog.LevelDebug
		if kind == KindOther {
			lvl = slog.LevelWarn
		}
		s.log.Log(r.Context(), lvl, "registry request", "method", r.Method, "path", r.URL.Path,
			"status", rec.Status, "bytes", rec.Bytes, "fault", rec.Fault)
		s.record(rec)
	}()

	if !s.authorized(r) && r.Method != http.MethodGet && r.Method != http.MethodHead {
		refuse(rw)
		return
	}
	if pull {
		if status, ok := s.takeFailure(kind); ok {
			rw.fault = "fail"
			writeRegError(rw, status, kind)
			return
		}
	}
	if s.journal != nil && kind == KindManifest && (r.Method == http.MethodPut || r.Method == http.MethodDelete) {
		s.serveManifestWrite(rw, r, repo, target)
		return
	}
	if kind == KindUpload {
		s.serveUpload(rw, r, repo, target)
		return
	}
	s.inner.ServeHTTP(rw, r)
}

// authorized reports whether r carries the admin token (always, when none
// is set). Both sides are hashed first, so that the comparison takes the
// same time whatever the token's length.
func (s *Server) authorized(r *http.Request) bool {
	if s.tokenSum == nil {
		return true
	}
	tok := ""
	if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok {
		switch {
		case strings.EqualFold(scheme, "Bearer"):
			tok = strings.TrimSpace(cred)
		case strings.EqualFold(scheme, "Basic"):
			_, tok, _ = r.BasicAuth()
		}
	}
	sum := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}

// refuse answers a request without the admin token: 401 with a Basic
// challenge, so that Docker clients retry with their login.
func refuse(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="depharness fake registry"`)
	writeUploadError(w, http.StatusUnauthorized, "UNAUTHORIZED", "pushes and the control API need the registry's admin token")
}

// requireToken guards h with the admin token, if one is set.
func (s *Server) requireToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			refuse(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveManifestWrite passes a manifest PUT or DELETE to ggcr and journals it
// once it succeeded, under the journal lock so that the journal's order is
// the registry's.
func (s *Server) serveManifestWrite(w *responseWriter, r *http.Request, repo, target string) {
	var body []byte
	if r.Method == http.MethodPut {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxManifestBytes+1))
		if err != nil {
			writeRegError(w, http.StatusBadRequest, KindManifest)
			return
		}
		if len(b) > maxManifestBytes {
			writeRegError(w, http.StatusRequestEntityTooLarge, KindManifest)
			return
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	s.journal.mu.Lock()
	defer s.journal.mu.Unlock()
	s.inner.ServeHTTP(w, r)
	ok := (r.Method == http.MethodPut && w.status == http.StatusCreated) ||
		(r.Method == http.MethodDelete && w.status == http.StatusAccepted)
	if !ok {
		return
	}
	op := "put"
	if r.Method == http.MethodDelete {
		op = "delete"
	}
	e := journalEntry{Op: op, Repo: repo, Target: target, MediaType: r.Header.Get("Content-Type")}
	if err := s.journal.appendLocked(e, body); err != nil {
		// The client already has its answer; the manifest is served until
		// the next restart but will be missing after it.
		s.log.Error("registry: journal manifest write", "repo", repo, "target", target, "err", err)
	}
}

// writeRegError writes an OCI distribution error body with status.
func writeRegError(w http.ResponseWriter, status int, kind Kind) {
	code := "UNAVAILABLE"
	switch {
	case status == http.StatusNotFound && kind == KindManifest:
		code = "MANIFEST_UNKNOWN"
	case status == http.StatusNotFound && kind == KindBlob:
		code = "BLOB_UNKNOWN"
	case status == http.StatusUnauthorized:
		code = "UNAUTHORIZED"
	case status == http.StatusForbidden:
		code = "DENIED"
	case status == http.StatusTooManyRequests:
		code = "TOOMANYREQUESTS"
	case status == http.StatusRequestEntityTooLarge:
		code = "SIZE_INVALID"
	case status == http.StatusBadRequest:
		code = "MANIFEST_INVALID"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"fault injected by the fake registry"}]}`, code)
}

// record appends rec to the request log and wakes waiters.
func (s *Server) record(rec Request) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.requests = append(s.requests, rec)
	if over := len(s.requests) - s.logSize; over > 0 {
		s.requests = append(s.requests[:0:0], s.requests[over:]...)
	}
	s.changed.Notify()
}

// Requests returns the recorded requests, oldest first (at most
// Options.RequestLogSize of them).
func (s *Server) Requests() []Request {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ResetRequests empties the request log.
func (s *Server) ResetRequests() {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.requests = nil
	s.changed.Notify()
}

// Await blocks until pred, called with the recorded requests after each new
// one, returns true, or ctx is done (then it returns ctx's error).
func (s *Server) Await(ctx context.Context, pred func([]Request) bool) error {
	return s.changed.Await(ctx, func() bool { return pred(s.Requests()) })
}
