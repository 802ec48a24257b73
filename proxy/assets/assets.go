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
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/depharness/depharness/internal/atomicfile"
	"github.com/depharness/depharness/internal/defaults"
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
	defaults.Positive(&opts.MaxBytes, DefaultMaxBytes)
	defaults.Positive(&opts.Retry.Attempts, 5)
	defaults.Positive(&opts.Retry.Min, 200*time.Millisecond)
	defaults.Positive(&opts.Retry.Max, 10*time.Second)
	if opts.Retry.Max < opts.Retry.Min {
		opts.Retry.Max = opts.Retry.Min
	}
	defaults.Positive(&opts.BuildTimeout, 30*time.Minute)
	defaults.Positive(&opts.StallTimeout, time.Minute)
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
