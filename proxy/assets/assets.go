// Package assets is the reference proxy's cache of dependent-app assets: it
// pulls a release's image from an OCI registry (go-containerregistry's
// remote), streams the union of its layers restricted to the image's /assets
// folder into a tar on disk (DATA_DIR/assets/<appId>/<commit>.tar), and serves
// that tar over HTTP with Range and ETag support (APP-ASSET-1, -3, -4).
//
// Builds stream: each layer blob is read once, from the top layer down, and
// written straight to a temporary file that is fsynced and renamed into
// place, so memory does not grow with the size of files and a crash never
// leaves a partial tar under its final name. Concurrent requests for the same
// tar share one build.
//
// Decisions beyond the contract:
//   - Member names are relative to /assets ("firmware.bin", "sub/", "sub/x.hex");
//     /assets itself is not a member. Names are cleaned; an entry whose name
//     climbs above the image root or whose cleaned path is not under /assets
//     ("assets/../etc/passwd") is never emitted.
//   - Union semantics are those of layer extraction (OCI image spec, Docker):
//     a later layer's entry replaces the same path; ".wh.name" deletes name
//     and its subtree in lower layers; ".wh..wh..opq" hides a folder's lower
//     contents; a non-directory replaces a lower folder with everything in
//     it, and a folder (even one written only as the parent of a whiteout)
//     replaces a lower file. Entries below a file or symlink of the same
//     layer are dropped.
//   - The tar is safe to extract anywhere (APP-ASSET-5). Links are never
//     followed while flattening. Hard links are kept when they point at a
//     file of the same layer already written, with the target renamed like
//     members; a hard link to a symlink of the same layer becomes that
//     symlink at the link's place (what extraction makes of it). Symlinks
//     come last in the tar, each kept only if no other member is at or
//     below its path and its text (an absolute "/assets/x" rewritten
//     relative, "../x" from sub/l; other absolute texts dropped), resolved
//     from where it stands through the tar's other links, stays inside the
//     tar's root. Devices and fifos are dropped; setuid, setgid and sticky
//     bits are cleared. Dropped entries are counted by reason in
//     depharness_proxy_asset_entries_dropped_total. If /assets itself is a
//     symlink the tar is empty.
//   - The ETag is the tar's SHA-256 ("sha256:<hex>", strong), computed while
//     building and kept in <commit>.tar.sha256. Builds are deterministic, so
//     a rebuild of the same image gives the same bytes and ETag.
//   - References are normally by digest; the manifest must hash to it. Tag
//     references work but are not verified. Index manifests resolve to
//     linux/amd64.
//
// It depends on the standard library, go-containerregistry, Prometheus and
// proxy/violation only; it must not import the store, the HTTP API or
// anything under fakes/ or sim/.
package assets

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/depharness/depharness/internal/atomicfile"
	"github.com/depharness/depharness/proxy/violation"
)

// ContentType is the media type of an asset tar.
const ContentType = "application/x-tar"

// DefaultMaxBytes is the default limit on the size of one asset tar.
const DefaultMaxBytes int64 = 1 << 30

// tmpPrefix starts the names of temporary files; commits never start with ".".
const tmpPrefix = atomicfile.TempPrefix

// Errors returned by the cache.
var (
	// ErrTooLarge: the tar would exceed Options.MaxBytes. It is counted
	// (depharness_proxy_asset_too_large_total) and logged once; later
	// Ensure calls for the same app and commit return it at once, without
	// pulling, and the error has a Permanent method that returns true.
	ErrTooLarge = errors.New("assets: tar exceeds the size limit")
	// ErrInvalidKey: the app id is not positive or the commit is not a safe
	// file name (1 to 128 of [0-9A-Za-z._-], not starting with ".").
	ErrInvalidKey = errors.New("assets: invalid app id or commit")
	// ErrStalled: no byte came from the registry for Options.StallTimeout
	// (the attempt is abandoned and retried).
	ErrStalled = errors.New("assets: registry transfer stalled")
)

// Retry bounds the attempts of one build after registry faults (5xx, 408,
// 429, connection errors) and corrupt transfers (digest or size mismatch,
// truncated blobs). 4xx answers such as 404 are not retried.
type Retry struct {
	// Attempts is the total number of attempts; 0 means 5.
	Attempts int
	// Min is the wait after the first failure, doubled after each further
	// one; 0 means 200ms.
	Min time.Duration
	// Max caps the wait; 0 means 10s.
	Max time.Duration
}

// Options configure a Cache. Zero values mean the documented defaults.
type Options struct {
	// Dir holds the tars (DATA_DIR/assets); required. It is created if needed.
	Dir string
	// MaxBytes limits the size of one tar; 0 means DefaultMaxBytes.
	MaxBytes int64
	// Transport carries registry requests; nil means remote.DefaultTransport.
	Transport http.RoundTripper
	// Insecure, if true, reaches every registry over plain HTTP. Registries on
	// loopback addresses (127.0.0.0/8, ::1, localhost, *.localhost) always
	// are.
	Insecure bool
	// InsecureRegistries are further registries reached over plain HTTP: a
	// "host" entry matches the host on any port, a "host:port" entry that
	// port only.
	InsecureRegistries []string
	// Retry bounds retries of a failing build.
	Retry Retry
	// BuildTimeout bounds one build, retries included; 0 means 30 minutes.
	BuildTimeout time.Duration
	// StallTimeout abandons (and retries) an attempt during which nothing
	// came from the registry for that long; 0 means one minute.
	StallTimeout time.Duration
	// Logger, if nil, discards.
	Logger *slog.Logger
	// Registerer, if nil, leaves the metrics unregistered.
	Registerer prometheus.Registerer
	// Now, if nil, is time.Now.
	Now func() time.Time
	// Violations enables deliberate contract violations (self-check only);
	// nil enables none.
	Violations violation.Set
}

// Cache builds, keeps and serves asset tars. Its methods are safe for
// concurrent use.
type Cache struct {
	opts      Options
	log       *slog.Logger
	now       func() time.Time
	metrics   *Metrics
	transport http.RoundTripper
	flights   singleflight.Group

	// ctx bounds builds; builds outlive the callers that started them (other
	// callers may be waiting for the same tar) until Close.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	builds sync.WaitGroup
	// tooLarge holds the failures of the tars (by flight key) that exceeded
	// MaxBytes: Ensure returns them again without pulling.
	tooLarge map[string]error
}

// New returns a cache on opts.Dir, creating it and removing temporary files
// left by an earlier process.
func New(opts Options) (*Cache, error) {
	if opts.Dir == "" {
		return nil, errors.New("assets: Options.Dir is required")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Retry.Attempts <= 0 {
		opts.Retry.Attempts = 5
	}
	if opts.Retry.Min <= 0 {
		opts.Retry.Min = 200 * time.Millisecond
	}
	if opts.Retry.Max <= 0 {
		opts.Retry.Max = 10 * time.Second
	}
	if opts.Retry.Max < opts.Retry.Min {
		opts.Retry.Max = opts.Retry.Min
	}
	if opts.BuildTimeout <= 0 {
		opts.BuildTimeout = 30 * time.Minute
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = time.Minute
	}
	if opts.Transport == nil {
		opts.Transport = remote.DefaultTransport
	}
	c := &Cache{opts: opts, log: opts.Logger, now: opts.Now, tooLarge: map[string]error{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	var err error
	if c.metrics, err = NewMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("assets: metrics: %w", err)
	}
	c.transport = &countingTransport{inner: opts.Transport, n: c.metrics.pullBytes}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("assets: %w", err)
	}
	if err := c.removeTemps(); err != nil {
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// ErrClosed is returned by Ensure and Serve after Close.
var ErrClosed = errors.New("assets: cache closed")

// Close aborts builds in progress (their callers get an error) and waits for
// them to clean up. Later builds fail with ErrClosed.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.builds.Wait()
	return nil
}

// removeTemps deletes temporary files under the app folders.
func (c *Cache) removeTemps() error {
	apps, err := os.ReadDir(c.opts.Dir)
	if err != nil {
		return fmt.Errorf("assets: %w", err)
	}
	for _, a := range apps {
		if !a.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(c.opts.Dir, a.Name()))
		if err != nil {
			return fmt.Errorf("assets: %w", err)
		}
		for _, f := range files {
			if strings.HasPrefix(f.Name(), tmpPrefix) {
				p := filepath.Join(c.opts.Dir, a.Name(), f.Name())
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("assets: removing leftover: %w", err)
				}
				c.log.Info("removed leftover temporary file", "path", p)
			}
		}
	}
	return nil
}

// validKey checks that appID and commit make a safe cache key.
func validKey(appID int64, commit string) error {
	if appID <= 0 || commit == "" || len(commit) > 128 || commit[0] == '.' {
		return ErrInvalidKey
	}
	for _, r := range commit {
		ok := r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '_' || r == '-'
		if !ok {
			return ErrInvalidKey
		}
	}
	return nil
}

func (c *Cache) appDir(appID int64) string {
	return filepath.Join(c.opts.Dir, strconv.FormatInt(appID, 10))
}

// TarPath is where the tar of appID at commit is kept (it may not exist).
func (c *Cache) TarPath(appID int64, commit string) string {
	return filepath.Join(c.appDir(appID), commit+".tar")
}

func (c *Cache) sumPath(appID int64, commit string) string {
	return filepath.Join(c.appDir(appID), commit+".tar.sha256")
}

// Has reports whether the tar of appID at commit is on disk.
func (c *Cache) Has(appID int64, commit string) bool {
	if validKey(appID, commit) != nil {
		return false
	}
	fi, err := os.Stat(c.TarPath(appID, commit))
	return err == nil && fi.Mode().IsRegular()
}

// Ensure makes sure the tar of appID at commit is on disk, building it from
// image (a registry reference, normally host:port/repo@sha256:…) if it is
// not. Concurrent calls for the same app and commit share one build. If ctx
// ends first Ensure returns its error; the build goes on for the others
// (until Options.BuildTimeout or Close).
func (c *Cache) Ensure(ctx context.Context, appID int64, commit, image string) error {
	if err := validKey(appID, commit); err != nil {
		return err
	}
	if c.Has(appID, commit) {
		c.metrics.hits.Inc()
		return nil
	}
	key := strconv.FormatInt(appID, 10) + "/" + commit
	c.mu.Lock()
	refused := c.tooLarge[key]
	c.mu.Unlock()
	if refused != nil {
		return refused
	}
	c.metrics.misses.Inc()
	ch := c.flights.DoChan(key, func() (any, error) {
		if c.Has(appID, commit) { // finished by a flight that just landed
			return nil, nil
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		c.builds.Add(1)
		c.mu.Unlock()
		defer c.builds.Done()
		err := c.build(appID, commit, image)
		if errors.Is(err, ErrTooLarge) {
			// Pulling it again would give the same tar: remember the
			// failure for the life of the cache (a restarted proxy, maybe
			// with a larger ASSET_MAX_BYTES, tries once more).
			err = notRetried{err}
			c.mu.Lock()
			c.tooLarge[key] = err
			c.mu.Unlock()
			c.metrics.tooLarge.Inc()
			c.log.Error("asset tar over ASSET_MAX_BYTES: this release is not pulled again", "app", appID, "commit", commit,
				"max_bytes", c.opts.MaxBytes)
		}
		return nil, err
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// build pulls image and writes the tar, retrying as opts.Retry allows.
func (c *Cache) build(appID int64, commit, image string) (err error) {
	start := c.now()
	log := c.log.With("app", appID, "commit", commit, "image", image)
	defer func() {
		c.metrics.buildDuration.Observe(c.now().Sub(start).Seconds())
		if err != nil {
			c.metrics.builds.WithLabelValues("failure").Inc()
			log.Error("asset build failed", "err", err)
			return
		}
		c.metrics.builds.WithLabelValues("success").Inc()
	}()
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.BuildTimeout)
	defer cancel()
	ref, err := c.parseRef(image)
	if err != nil {
		return err
	}
	wait := c.opts.Retry.Min
	for attempt := 1; ; attempt++ {
		var st flattenStats
		st, err = c.watchedAttempt(ctx, ref, appID, commit)
		if err == nil {
			for reason, n := range st.DroppedBy {
				c.metrics.dropped.WithLabelValues(reason).Add(float64(n))
			}
			log.Info("assets ready", "entries", st.Entries, "bytes", st.Bytes, "dropped", st.Dropped, "attempts", attempt)
			return nil
		}
		if attempt >= c.opts.Retry.Attempts || !retryable(err) {
			return fmt.Errorf("assets: app %d commit %s: %w", appID, commit, err)
		}
		log.Warn("asset build failed, retrying", "attempt", attempt, "wait", wait, "err", err)
		c.metrics.buildRetries.Inc()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("assets: app %d commit %s: %w (after: %w)", appID, commit, ctx.Err(), err)
		}
		wait = min(2*wait, c.opts.Retry.Max)
	}
}

// parseRef parses image, reaching loopback registries over plain HTTP.
func (c *Cache) parseRef(image string) (name.Reference, error) {
	ref, err := name.ParseReference(image, name.WeakValidation)
	if err != nil {
		return nil, permanent(fmt.Errorf("image reference %q: %w", image, err))
	}
	if c.plainHTTP(ref.Context().RegistryStr()) {
		ref, err = name.ParseReference(image, name.WeakValidation, name.Insecure)
		if err != nil {
			return nil, permanent(fmt.Errorf("image reference %q: %w", image, err))
		}
	}
	return ref, nil
}

// plainHTTP reports whether the registry host[:port] is reached over plain
// HTTP: every registry with Insecure, a loopback one, or one that
// InsecureRegistries names.
func (c *Cache) plainHTTP(hostport string) bool {
	if c.opts.Insecure || isLoopback(hostport) {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	for _, e := range c.opts.InsecureRegistries {
		bare := strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
		if strings.EqualFold(e, hostport) || strings.EqualFold(bare, host) {
			return true
		}
	}
	return false
}

// isLoopback reports whether a registry host[:port] is on this machine.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// progressKey carries an attempt's *progress in request contexts.
type progressKey struct{}

// progress tells whether an attempt is waiting on a silent registry: time
// spent writing or between requests does not count, only time blocked in a
// round trip or a body read.
type progress struct {
	waiting atomic.Int64 // calls blocked on the registry
	last    atomic.Int64 // Unix nanoseconds of the last answer, or of the start of waiting
}

func (p *progress) begin() {
	if p.waiting.Add(1) == 1 {
		p.last.Store(time.Now().UnixNano())
	}
}

func (p *progress) end() {
	p.last.Store(time.Now().UnixNano())
	p.waiting.Add(-1)
}

func (p *progress) stalled(now time.Time, d time.Duration) bool {
	return p.waiting.Load() > 0 && now.Sub(time.Unix(0, p.last.Load())) > d
}

// watchedAttempt runs buildOnce, abandoning it with ErrStalled when it has
// waited opts.StallTimeout for the registry without getting anything.
func (c *Cache) watchedAttempt(ctx context.Context, ref name.Reference, appID int64, commit string) (flattenStats, error) {
	p := &progress{}
	actx, cancel := context.WithCancelCause(context.WithValue(ctx, progressKey{}, p))
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	go func() {
		d := c.opts.StallTimeout
		t := time.NewTicker(max(d/8, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if p.stalled(now, d) {
					cancel(ErrStalled)
					return
				}
			}
		}
	}()
	st, err := c.buildOnce(actx, ref, appID, commit)
	if err != nil && !errors.Is(err, ErrStalled) && errors.Is(context.Cause(actx), ErrStalled) && ctx.Err() == nil {
		return st, fmt.Errorf("%w (%v without data): %w", ErrStalled, c.opts.StallTimeout, err)
	}
	return st, err
}

// buildOnce is one attempt: fetch the manifest, stream the layers into a
// temporary file, then move it and its checksum into place.
func (c *Cache) buildOnce(ctx context.Context, ref name.Reference, appID int64, commit string) (st flattenStats, err error) {
	desc, err := remote.Get(ref,
		remote.WithContext(ctx),
		remote.WithTransport(c.transport),
		// Retries are this package's, around the whole build.
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithRetryStatusCodes(),
	)
	if err != nil {
		return st, err
	}
	if d, ok := ref.(name.Digest); ok && desc.Digest.String() != d.DigestStr() {
		return st, fmt.Errorf("manifest digest %s does not match the reference's %s", desc.Digest, d.DigestStr())
	}
	img, err := desc.Image()
	if err != nil {
		return st, err
	}
	layers, err := img.Layers()
	if err != nil {
		return st, err
	}

	dir := c.appDir(appID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, permanent(err)
	}
	tmp, err := os.CreateTemp(dir, tmpPrefix+commit+"-*.tar")
	if err != nil {
		return st, permanent(err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o644); err != nil {
		return st, permanent(err)
	}
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(&limitWriter{w: tmp, left: c.opts.MaxBytes}, sum), 256<<10)
	st, err = flatten(ctx, layers, bw, flattenOptions{
		keepPrefix:      c.opts.Violations.On("assets-keep-prefix"),
		ignoreWhiteouts: c.opts.Violations.On("assets-ignore-whiteouts"),
		lowerWins:       c.opts.Violations.On("assets-lower-layer-wins"),
		dropDotfiles:    c.opts.Violations.On("assets-drop-dotfiles"),
		rootOpaque:      c.opts.Violations.On("assets-root-opaque-ignored"),
		unsafeLinks:     c.opts.Violations.On("assets-unsafe-links"),
		lexicalLinks:    c.opts.Violations.On("assets-lexical-links"),
		keepSetuid:      c.opts.Violations.On("assets-keep-setuid"),
		keepDevices:     c.opts.Violations.On("assets-keep-devices"),
	})
	if err != nil {
		return st, err
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	if err := tmp.Sync(); err != nil {
		return st, permanent(err)
	}
	if err := tmp.Close(); err != nil {
		return st, permanent(err)
	}
	// The checksum goes first: a tar under its final name always has one
	// (and a checksum left alone by a crash is rewritten by the next build).
	if err := atomicfile.Write(c.sumPath(appID, commit), []byte(hex.EncodeToString(sum.Sum(nil))+"\n")); err != nil {
		return st, permanent(err)
	}
	if err := os.Rename(tmp.Name(), c.TarPath(appID, commit)); err != nil {
		return st, permanent(err)
	}
	if err := syncDir(dir); err != nil {
		return st, permanent(err)
	}
	return st, nil
}

// syncDir fsyncs a directory so that renames in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Serve writes the tar of appID at commit as the response to r, with
// http.ServeContent semantics (Range, If-Range, If-None-Match,
// If-Modified-Since, HEAD), Content-Type application/x-tar and a strong ETag
// made of the tar's SHA-256. A tar missing from disk is built first (through
// Ensure, so concurrent first requests build it once). If it cannot be built
// Serve writes nothing and returns the error; the caller answers 503.
func (c *Cache) Serve(w http.ResponseWriter, r *http.Request, appID int64, commit, image string) error {
	var f *os.File
	for try := 0; ; try++ {
		if err := c.Ensure(r.Context(), appID, commit, image); err != nil {
			return err
		}
		var err error
		f, err = os.Open(c.TarPath(appID, commit))
		if err == nil {
			break
		}
		// Pruned between Ensure and Open: build once more.
		if !errors.Is(err, fs.ErrNotExist) || try > 0 {
			return fmt.Errorf("assets: %w", err)
		}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("assets: %w", err)
	}
	etag, err := c.etag(appID, commit, f)
	if err != nil {
		return err
	}
	ct := ContentType
	if c.opts.Violations.On("assets-wrong-content-type") {
		ct = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("ETag", etag)
	if rg := r.Header.Get("Range"); rg != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Range", unsatisfiableEmptySuffixes(rg, fi.Size()))
	}
	cw := &countingResponseWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", fi.ModTime(), f)
	c.metrics.bytesServed.Add(float64(cw.n))
	return nil
}

// unsatisfiableEmptySuffixes rewrites each suffix range of length zero
// ("-0") of the Range header rg into one past the end of a size-byte body.
// RFC 9110 §14.1.2 makes such a range unsatisfiable (a Range of only those is
// answered 416 with "Content-Range: bytes */size"), but http.ServeContent
// serves it as an empty range "bytes size-(size-1)/size" with 206.
func unsatisfiableEmptySuffixes(rg string, size int64) string {
	specs, ok := strings.CutPrefix(rg, "bytes=")
	if !ok {
		return rg
	}
	parts := strings.Split(specs, ",")
	for i, p := range parts {
		start, end, ok := strings.Cut(strings.TrimSpace(p), "-")
		if !ok || strings.TrimSpace(start) != "" {
			continue
		}
		end = strings.TrimSpace(end)
		if end != "" && strings.Trim(end, "0") == "" {
			parts[i] = strconv.FormatInt(size, 10) + "-"
		}
	}
	return "bytes=" + strings.Join(parts, ",")
}

// etag returns the strong ETag of the open tar f: its SHA-256, read from the
// checksum file written at build time, or computed (and written) if that
// file is missing or damaged. f is left at offset 0.
func (c *Cache) etag(appID int64, commit string, f *os.File) (string, error) {
	if b, err := os.ReadFile(c.sumPath(appID, commit)); err == nil {
		s := strings.TrimSpace(string(b))
		if _, err := hex.DecodeString(s); err == nil && len(s) == 2*sha256.Size {
			return `"sha256:` + s + `"`, nil
		}
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fmt.Errorf("assets: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("assets: %w", err)
	}
	s := hex.EncodeToString(sum.Sum(nil))
	if err := atomicfile.Write(c.sumPath(appID, commit), []byte(s+"\n")); err != nil {
		c.log.Warn("writing asset checksum", "app", appID, "commit", commit, "err", err)
	}
	return `"sha256:` + s + `"`, nil
}

// Prune removes the tars of appID except the one of commit keep ("" keeps
// none, and removes the app's folder when nothing else is in it). Builds in
// progress are not disturbed.
func (c *Cache) Prune(appID int64, keep string) error {
	if appID <= 0 {
		return ErrInvalidKey
	}
	dir := c.appDir(appID)
	files, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("assets: %w", err)
	}
	for _, f := range files {
		n := f.Name()
		if strings.HasPrefix(n, tmpPrefix) {
			continue
		}
		commit, ok := strings.CutSuffix(n, ".tar")
		if !ok {
			commit, ok = strings.CutSuffix(n, ".tar.sha256")
		}
		if !ok || (keep != "" && commit == keep) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("assets: %w", err)
		}
	}
	if keep == "" {
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotEmpty(err) {
			return fmt.Errorf("assets: %w", err)
		}
	}
	return nil
}

func isNotEmpty(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "not empty")
}

// notRetried is a build failure that Ensure returns again, without pulling,
// for the same app and commit (a tar over MaxBytes). Its Permanent method
// tells callers (the target sync) not to ask again until the target
// changes.
type notRetried struct{ err error }

func (e notRetried) Error() string   { return e.err.Error() }
func (e notRetried) Unwrap() error   { return e.err }
func (e notRetried) Permanent() bool { return true }

// permanentError marks an error that a retry cannot cure.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return permanentError{err} }

// retryable reports whether a failed build attempt is worth repeating:
// registry faults and corrupt or cut transfers are; 4xx answers (but 408 and
// 429), the size limit, local file errors and cancellation are not.
func retryable(err error) bool {
	var pe permanentError
	if errors.Is(err, ErrStalled) {
		return true
	}
	if errors.As(err, &pe) || errors.Is(err, ErrTooLarge) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode >= 500 || te.StatusCode == http.StatusRequestTimeout || te.StatusCode == http.StatusTooManyRequests
	}
	return true
}

// limitWriter writes to w until left bytes are used up, then fails with
// ErrTooLarge. Errors of w are permanent.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, ErrTooLarge
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	if err != nil {
		return n, permanent(err)
	}
	return n, nil
}

// countingTransport counts the bytes of response bodies.
type countingTransport struct {
	inner http.RoundTripper
	n     prometheus.Counter
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	p, _ := r.Context().Value(progressKey{}).(*progress)
	if p != nil {
		p.begin()
	}
	resp, err := t.inner.RoundTrip(r)
	if p != nil {
		p.end()
	}
	if err == nil && resp.Body != nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: t.n, p: p}
	}
	return resp, err
}

// countingBody counts bytes read and reports reads to the attempt's progress.
type countingBody struct {
	io.ReadCloser
	n prometheus.Counter
	p *progress // nil outside builds
}

func (b *countingBody) Read(buf []byte) (int, error) {
	if b.p != nil {
		b.p.begin()
		defer b.p.end()
	}
	n, err := b.ReadCloser.Read(buf)
	if n > 0 {
		b.n.Add(float64(n))
	}
	return n, err
}

// countingResponseWriter counts body bytes; it passes ReadFrom through so
// that a file is still sent with sendfile.
type countingResponseWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingResponseWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingResponseWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *countingResponseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
